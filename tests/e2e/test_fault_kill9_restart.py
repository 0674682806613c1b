"""Crash recovery: `kill -9` the server mid-turn, restart it on the same data dir, and the turn finishes once.

Also for a turn that compacts its context: killed during the compaction request and again during the request that
continues from the summary, the restarted server re-runs each once and replays the compacted log cleanly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from managed_agents.testing.loopback import free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import all_events, wait_until
from tests.e2e.serve_process import ServeProcess

# Embedded only: kills the `managed-agents serve` process; on AWS a crashed Lambda is retried by the state machine.


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    # The first request is slow so the kill lands mid-flight; the re-run after the restart gets the second step.
    step = {"delay_ms": 1500, "content": [{"type": "text", "text": "survived"}]}
    with ScriptedModelServer([step, "survived"], fallback="error") as s:
        yield s


@pytest.mark.slow
def test_kill9_mid_turn_then_restart_finishes_the_turn_once(tmp_path: Path, model: ScriptedModelServer) -> None:
    data_dir, port = tmp_path / "data", free_port()
    procs: list[ServeProcess] = []
    try:
        # Given a server with a session whose turn is waiting on the (slow) model
        procs.append(ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log"))
        admin_key = (data_dir / "admin.key").read_text().strip()
        client = anthropic.Anthropic(base_url=procs[0].url, api_key=admin_key, max_retries=0)
        agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
        env = client.beta.environments.create(name="e", config={"type": "cloud"})
        session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
        client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]
        )
        wait_until(
            lambda: any(e.type == "span.model_request_start" for e in all_events(client, session.id)), timeout=10
        )
        wait_until(lambda: model.requests, timeout=10, interval=0.01)  # the request is on the wire
        # When the server is killed with SIGKILL mid-request and restarted on the same data dir
        procs[0].kill9()
        procs.append(ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log"))

        # Then the recovered turn finishes, and the log holds each event once
        def idle_events() -> list[Any] | None:
            evs = all_events(client, session.id)
            return evs if evs and evs[-1].type == "session.status_idle" else None

        events: list[Any] = wait_until(idle_events, timeout=20, interval=0.05)
        # the record follows the log right after the append: polled, bounded (a session stuck `running` still fails)
        status = wait_until(lambda: (s := client.beta.sessions.retrieve(session.id).status) == "idle" and s, timeout=30)
    finally:
        for p in procs:
            p.stop()
    types = [e.type for e in events]
    assert types.count("user.message") == 1
    messages = [e for e in events if e.type == "agent.message"]
    assert [m.content[0].text for m in messages] == ["survived"]
    assert types.count("span.model_request_start") == 1
    assert types.count("span.model_request_end") == 1
    assert types == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    start = next(e for e in events if e.type == "span.model_request_start")
    end = next(e for e in events if e.type == "span.model_request_end")
    assert end.model_request_start_id == start.id and end.is_error is False
    assert events[-1].stop_reason.type == "end_turn"
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))
    # And the model saw the request twice: the one cut short by the kill, and the re-run after recovery
    assert len([r for r in model.requests if r["path"] == "/v1/messages"]) == 2
    assert status == "idle"


COMPACTING = "about to be compacted"  # in the compaction request's instruction (harness/compaction.py)


@pytest.fixture
def compacting_model() -> Iterator[ScriptedModelServer]:
    steps: list[Any] = [
        {"content": [{"type": "text", "text": "first answer"}], "usage": {"input_tokens": 5000}},
        # killed in flight, then re-run after each restart
        {"match": COMPACTING, "delay_ms": 1500, "content": [{"type": "text", "text": "SUMMARY-LOST"}]},
        {"match": COMPACTING, "content": [{"type": "text", "text": "SUMMARY-KEPT"}]},
        {"match": "second question", "delay_ms": 1500, "content": [{"type": "text", "text": "lost answer"}]},
        {"match": "second question", "content": [{"type": "text", "text": "second answer"}]},
    ]
    with ScriptedModelServer(steps, fallback="error") as s:
        yield s


@pytest.mark.slow
def test_kill9_during_compaction_and_its_continuation_restarts_cleanly(
    tmp_path: Path, compacting_model: ScriptedModelServer
) -> None:
    model = compacting_model
    data_dir, port = tmp_path / "data", free_port()
    # no periodic session.usage snapshot: kills and restarts on a loaded machine can outlast its default minute,
    # and the order asserted below is the turn's own
    env = {"MANAGED_AGENTS_COMPACTION_THRESHOLD_TOKENS": "1000", "MANAGED_AGENTS_USAGE_EVENT_SECONDS": "86400"}
    procs: list[ServeProcess] = []

    def serve() -> ServeProcess:
        procs.append(ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log", env=env))
        return procs[-1]

    def messages() -> int:
        return len([r for r in model.requests if r["path"] == "/v1/messages"])

    try:
        # Given a session whose first turn left a context over the compaction threshold
        serve()
        admin_key = (data_dir / "admin.key").read_text().strip()
        client = anthropic.Anthropic(base_url=procs[0].url, api_key=admin_key, max_retries=0)
        agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
        environment = client.beta.environments.create(name="e", config={"type": "cloud"})
        sid = client.beta.sessions.create(agent=agent.id, environment_id=environment.id).id
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "first question"}]}]
        )
        wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle" and messages() == 1, timeout=10)
        # When the next turn's compaction request is in flight and the server is killed, then restarted
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "second question"}]}]
        )
        wait_until(lambda: messages() == 2, timeout=10, interval=0.01)
        procs[-1].kill9()
        serve()
        # And killed again while the request that continues from the summary is in flight, then restarted
        wait_until(lambda: messages() == 4, timeout=20, interval=0.01)
        procs[-1].kill9()
        serve()

        # Then the turn finishes once, from the summary the re-run compaction wrote
        def idle_events() -> list[Any] | None:
            evs = all_events(client, sid)
            return evs if evs[-1].type == "session.status_idle" and len(evs) > 6 else None

        events: list[Any] = wait_until(idle_events, timeout=30, interval=0.05)
        # the record follows the log right after the append: polled, bounded (a session stuck `running` still fails)
        status = wait_until(lambda: (s := client.beta.sessions.retrieve(sid).status) == "idle" and s, timeout=30)
    finally:
        for p in procs:
            p.stop()
    assert [e.type for e in events][6:] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "span.model_request_end",
        "agent.thread_context_compacted",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["first answer", "second answer"]
    assert events[-1].stop_reason.type == "end_turn" and status == "idle"
    starts = [e.id for e in events if e.type == "span.model_request_start"]
    assert [e.model_request_start_id for e in events if e.type == "span.model_request_end"] == starts
    assert len({e.id for e in events}) == len(events)
    # And the model was asked five times: each killed request once more, nothing else, no compaction loop
    bodies = [r["body"] for r in model.requests if r["path"] == "/v1/messages"]
    assert len(bodies) == 5
    assert bodies[2] == bodies[1] and bodies[4] == bodies[3]
    assert "SUMMARY-KEPT" in json.dumps(bodies[4]) and "first question" not in json.dumps(bodies[4])
