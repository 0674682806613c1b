"""Crash recovery of a fan-out: `kill -9` the server while three child threads wait on the model, restart it on the
same data dir, and every thread finishes once: nothing lost, nothing duplicated (harness/threads.py)."""

from __future__ import annotations

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
JOBS = ("alpha", "beta", "gamma")


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    calls = [{"type": "tool_use", "name": f"delegate_to_{j}", "input": {"message": f"{j} job"}} for j in JOBS]
    steps: list[Any] = [{"match": "three jobs", "content": calls}]
    for j in JOBS:  # each child's first request is in flight when the server dies; its re-run gets the second step
        steps.append({"match": f"{j} job", "delay_ms": 3000, "content": [{"type": "text", "text": f"{j} LOST"}]})
        steps.append({"match": f"{j} job", "content": [{"type": "text", "text": f"{j} done"}]})
    steps.append({"match": "alpha done", "content": [{"type": "text", "text": "all three done"}]})
    with ScriptedModelServer(steps, fallback="error") as s:
        yield s


def _messages(model: ScriptedModelServer) -> list[dict[str, Any]]:
    return [r for r in model.requests if r["path"] == "/v1/messages"]


@pytest.mark.slow
def test_kill9_during_a_fan_out_of_three_threads_then_restart_finishes_every_thread_once(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    procs: list[ServeProcess] = []
    try:
        # Given a coordinator whose turn delegated to three subagents, each child's model request on the wire
        procs.append(ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log"))
        admin_key = (data_dir / "admin.key").read_text().strip()
        client = anthropic.Anthropic(base_url=procs[0].url, api_key=admin_key, max_retries=0)
        subagents = [client.beta.agents.create(name=j, model="claude-sonnet-4-6") for j in JOBS]
        lead = client.beta.agents.create(
            name="lead",
            model="claude-sonnet-4-6",
            multiagent={"type": "coordinator", "agents": [a.id for a in subagents]},
        )
        env = client.beta.environments.create(name="e", config={"type": "cloud"})
        sid = client.beta.sessions.create(agent=lead.id, environment_id=env.id).id
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "do three jobs"}]}]
        )
        wait_until(lambda: len(_messages(model)) == 4, timeout=20, interval=0.01)
        # When the server is killed with SIGKILL and restarted on the same data dir
        procs[0].kill9()
        procs.append(ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log"))

        # Then the session finishes its turn with the coordinator's answer
        def idle_events() -> list[Any] | None:
            evs = all_events(client, sid)
            return evs if evs and evs[-1].type == "session.status_idle" else None

        events: list[Any] = wait_until(idle_events, timeout=60, interval=0.1)
        threads = list(client.beta.sessions.threads.list(sid))
        own = {
            t.id: list(client.beta.sessions.threads.events.list(t.id, session_id=sid))
            for t in threads
            if t.parent_thread_id
        }
        statuses = {t.id: t.status for t in threads}
    finally:
        for p in procs:
            p.stop()
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["all three done"]
    types = [e.type for e in events]
    for t in ("agent.thread_message_sent", "session.thread_created", "agent.thread_message_received"):
        assert types.count(t) == 3, t
    assert types.count("session.thread_status_running") == 3 and types.count("session.thread_status_idle") == 3
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))
    # And every thread ran once: three children, each idle, each log with every event once
    assert len(own) == 3 and all(statuses[tid] == "idle" for tid in own)
    for tid, evs in own.items():
        assert [e.type for e in evs] == [
            "agent.thread_message_received",
            "session.thread_status_running",
            "span.model_request_start",
            "agent.message",
            "span.model_request_end",
            "session.thread_status_idle",
            "agent.thread_message_sent",
        ], tid
        assert evs[3].content[0].text.endswith(" done")  # the re-run's answer, not the lost one
    received = sorted(e.content[0].text for e in events if e.type == "agent.thread_message_received")
    assert received == ["alpha done", "beta done", "gamma done"]
    # And the model saw each child's request twice (cut by the kill, re-run), the coordinator's once per turn
    assert len(_messages(model)) == 1 + 2 * 3 + 1
