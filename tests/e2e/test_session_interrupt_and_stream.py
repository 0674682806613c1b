"""Interrupts and the live event stream through the official SDK (plus a raw Last-Event-ID resume)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import anthropic
import httpx2
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, wait_idle, wait_until


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e")
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _msg(text: str) -> dict[str, Any]:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def test_interrupt_cuts_a_hanging_model_request(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    # Given a model request that hangs for 60 s
    sid = _session(client)
    model_server.push({"hang_ms": 60_000})
    client.beta.sessions.events.send(sid, events=[_msg("hi")])
    wait_until(lambda: any(e.type == "span.model_request_start" for e in all_events(client, sid)))
    # When the user interrupts
    started = time.monotonic()
    client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
    events = wait_idle(client, sid, timeout=30)
    # Then the session is idle long before the hang would end (the request was cut, not waited out), without an
    # answer. (The bound is loose on purpose: how soon is a latency, measured by benches; on CI's loaded machine the
    # AWS leg's new execution took up to 4.6 s to start, ~1 s here.)
    assert time.monotonic() - started < 30
    assert [e.type for e in events] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "user.interrupt",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert events[4].model_request_start_id == events[2].id
    assert events[-1].stop_reason.type == "end_turn"
    assert wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle", timeout=30)


def test_an_interrupt_sent_right_after_the_message_stops_the_turn(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given sessions whose turn has just been started (its model request may not be sent yet; on AWS its execution
    # may not have begun evaluating: a StopExecution then hit a moto race that answered 500, see tests/aws/platform.py)
    sids = []
    for i in range(5):
        sid = _session(client)
        # (the reply to the follow-up below goes first: its request's user turn holds "early {i}" too)
        model_server.push({"match": f"later {i}", "content": [{"type": "text", "text": f"ok {i}"}]})
        model_server.push({"hang_ms": 20_000, "content": [{"type": "text", "text": "late"}], "match": f"early {i}"})
        client.beta.sessions.events.send(sid, events=[_msg(f"early {i}")])
        # When the user interrupts at once
        client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
        # Then the session idles without an answer
        events = wait_idle(client, sid, timeout=30)
        assert "user.interrupt" in [e.type for e in events]
        assert "agent.message" not in [e.type for e in events]
        sids.append(sid)
    # And it stays stopped: the interrupted message gets no turn of its own after that idle (it did when the interrupt
    # came before any request took it: the session ran again, and its hanging request held the next message back);
    # the next message gets the one answer, its request holding both messages
    for i, sid in enumerate(sids):
        client.beta.sessions.events.send(sid, events=[_msg(f"later {i}")])
        events = wait_idle(client, sid, timeout=30, count=2)
        assert [e.content[0].text for e in events if e.type == "agent.message"] == [f"ok {i}"], [e.type for e in events]
        assert "session.error" not in [e.type for e in events]
        asked = [json.dumps(r["body"]["messages"]) for r in model_server.requests if f"later {i}" in json.dumps(r)]
        assert len(asked) == 1 and f"early {i}" in asked[0]


def test_message_after_interrupt_in_same_request_runs_a_new_turn(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a model request hanging at the model (not merely logged as started: a request cancelled before it is
    # sent is never sent, and the next turn would then take the hang step)
    sid = _session(client)
    model_server.push({"hang_ms": 5000}, {"content": [{"type": "text", "text": "new answer"}], "match": "instead"})
    client.beta.sessions.events.send(sid, events=[_msg("first")])
    wait_until(lambda: len(model_server.requests) == 1)
    # When interrupt and a new message arrive together
    client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}, _msg("do this instead")])
    events = wait_idle(client, sid, timeout=30, count=2)
    # Then the hung turn is closed and the new message gets an answer
    texts = [e.content[0].text for e in events if e.type == "agent.message"]
    assert texts == ["new answer"]
    assert events[-1].stop_reason.type == "end_turn"
    assert "do this instead" in json.dumps(model_server.requests[-1]["body"]["messages"])
    model_server.assert_complete()
    assert len(model_server.requests) == 2


@pytest.mark.parametrize(
    ("env_type", "result_type"),
    # who logs a sandbox call's result (api-reference §3.1): the user's worker on self_hosted, the agent on cloud
    [("self_hosted", "user.tool_result"), ("cloud", "agent.tool_result")],
)
def test_interrupt_during_a_sandbox_tool_call_stops_the_agent(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, env_type: str, result_type: str
) -> None:
    # Given a bash call still running (cloud) or waiting for a self-hosted sandbox that never answers
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[{"type": "agent_toolset_20260401"}])
    env = client.beta.environments.create(name="e", config={"type": env_type})  # type: ignore[typeddict-item]
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model_server.push({"content": [{"type": "tool_use", "name": "bash", "input": {"command": "sleep 100"}}]})
    client.beta.sessions.events.send(sid, events=[_msg("run it")])
    wait_until(lambda: any(e.type == "agent.tool_use" for e in all_events(client, sid)))
    # When the user interrupts
    client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
    # (a bound for a stuck run, not a timing: on the AWS leg under CI's load the Step Functions hand-over through
    # moto took over 10 s)
    events = wait_idle(client, sid, timeout=30)
    # Then the call gets an error result, logged as the environment's sandbox results are, and the session idles
    # without asking the model again
    (result,) = [e for e in events if e.type in ("user.tool_result", "agent.tool_result")]
    assert result.type == result_type
    assert result.is_error and "interrupted" in result.content[0].text
    assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == "end_turn"
    time.sleep(1.0)  # nothing runs after the idle
    assert len(model_server.requests) == 1
    assert [e.type for e in all_events(client, sid)][-1] == "session.status_idle"
    # And the next message sends the interrupted call's result with it, and the model answers
    model_server.push("ok, stopped")
    client.beta.sessions.events.send(sid, events=[_msg("never mind")])
    events = wait_idle(client, sid, timeout=30, count=2)
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["ok, stopped"]
    last = model_server.requests[-1]["body"]["messages"][-1]["content"]
    assert [b["type"] for b in last] == ["tool_result", "text"]


def _collect(client: anthropic.Anthropic, sid: str, out: list[Any], opened: threading.Event) -> None:
    with client.beta.sessions.events.stream(sid) as stream:
        opened.set()
        for ev in stream:
            out.append(ev)
            if ev.type == "session.status_idle":
                return


def test_stream_matches_history(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    # Given a stream opened before any message
    sid = _session(client)
    model_server.push({"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "streamed"}]})
    got: list[Any] = []
    opened = threading.Event()
    reader = threading.Thread(target=_collect, args=(client, sid, got, opened), daemon=True)
    reader.start()
    assert opened.wait(5)
    # When a message is sent
    client.beta.sessions.events.send(sid, events=[_msg("hi")])
    reader.join(5)
    assert not reader.is_alive()
    # Then the stream delivered exactly the logged events, in order and typed by the SDK
    history = all_events(client, sid)
    assert [e.id for e in got] == [e.id for e in history]
    assert [type(e) for e in got] == [type(e) for e in history]
    assert got[-1].type == "session.status_idle"
    msg = next(e for e in got if e.type == "agent.message")
    assert msg.content[0].text == "streamed"


def test_reconnect_recipe_misses_nothing(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    sid = _session(client)
    model_server.push("one", "two")
    seen: dict[str, Any] = {}
    # Given a stream read up to the first agent.message, then closed
    got: list[Any] = []
    opened = threading.Event()
    first = threading.Thread(target=_collect, args=(client, sid, got, opened), daemon=True)
    first.start()
    assert opened.wait(5)
    client.beta.sessions.events.send(sid, events=[_msg("a")])
    first.join(5)
    seen.update({e.id: e for e in got})
    # When more happens while disconnected
    client.beta.sessions.events.send(sid, events=[_msg("b")])
    wait_idle(client, sid, count=2)
    # And the client re-opens the stream, then re-reads history and de-duplicates by id
    with client.beta.sessions.events.stream(sid) as stream:
        for e in all_events(client, sid):
            seen.setdefault(e.id, e)
        stream.close()
    # Then nothing is missing
    history = all_events(client, sid)
    assert set(seen) == {e.id for e in history}
    assert [e.content[0].text for e in history if e.type == "agent.message"] == ["one", "two"]


def test_last_event_id_replays_later_events(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a finished turn
    sid = _session(client)
    model_server.push("hello")
    client.beta.sessions.events.send(sid, events=[_msg("hi")])
    history = wait_idle(client, sid)
    anchor = history[1]
    expected = [e.id for e in history[2:]]
    # When a raw SSE client resumes after the second event
    headers = {
        "Authorization": f"Bearer {server.admin_key}",
        "anthropic-version": "2026-10-21",
        "anthropic-beta": "managed-agents-2026-04-01",
        "Last-Event-ID": anchor.id,
    }
    messages: list[dict[str, str]] = []
    with httpx2.Client(base_url=server.url, timeout=5) as http:
        with http.stream("GET", f"/v1/sessions/{sid}/events/stream", headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            current: dict[str, str] = {}
            for line in resp.iter_lines():
                if line == "":
                    if current:
                        messages.append(current)
                        current = {}
                    if any(m.get("event") == "session.status_idle" for m in messages):
                        break
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                current[field] = value.removeprefix(" ")
    # Then exactly the later events are replayed, each framed with an event: line naming its type
    data = [m for m in messages if m.get("event") != "ping"]
    assert all("event" in m for m in data)
    payloads = [json.loads(m["data"]) for m in data]
    assert [p["id"] for p in payloads] == expected
    assert [m["event"] for m in data] == [p["type"] for p in payloads]


def test_unknown_last_event_id_is_rejected(server: Server, client: anthropic.Anthropic) -> None:
    sid = _session(client)
    headers = {
        "Authorization": f"Bearer {server.admin_key}",
        "anthropic-beta": "managed-agents-2026-04-01",
        "Last-Event-ID": "sevt_nope",
    }
    with httpx2.Client(base_url=server.url, timeout=5) as http:
        resp = http.get(f"/v1/sessions/{sid}/events/stream", headers=headers)
    assert resp.status_code == 400
    assert "sevt_nope" in resp.json()["error"]["message"]
