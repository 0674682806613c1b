"""What crosses between a session's log and a child thread's survives `kill -9` between the two writes (harness/
threads.py): the server is killed at the very append that copies an interrupt, or a user's answer, into the child's
log, or a child's call or status change into the session's (a `sitecustomize` in the first server process SIGKILLs
it there), then restarted on the same data dir; the copy is made after the restart, once, and every thread
finishes."""

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

# Embedded only: kills the `managed-agents serve` process (on AWS a crashed Lambda is retried by its state machine).
KILL_AT_COPY = """
import os, signal
from managed_agents.adapters.local import sqlite_store

_append = sqlite_store.SqliteEventStore.append
_kill_type = os.environ["TEST_KILL_AT_THREAD_COPY"]
_into_thread = os.environ["TEST_KILL_COPY_INTO"] == "thread"


def append(self, session_id, events, **kw):
    if _into_thread and session_id.startswith("sthr_") and any(e.type == _kill_type for e in events):
        os.kill(os.getpid(), signal.SIGKILL)  # after the session's write, before the child's copy
    if not _into_thread and not session_id.startswith("sthr_") and any(
        e.type == _kill_type and "session_thread_id" in e.payload for e in events
    ):
        os.kill(os.getpid(), signal.SIGKILL)  # after the child's write, before the session's copy
    return _append(self, session_id, events, **kw)


sqlite_store.SqliteEventStore.append = append
"""
TICKET = {
    "type": "custom",
    "name": "ticket",
    "description": "Open a ticket",
    "input_schema": {"type": "object", "properties": {"title": {"type": "string"}}},
}


def _msg(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _delegate(agent: str, message: str) -> dict[str, Any]:
    return {"type": "tool_use", "name": f"delegate_to_{agent}", "input": {"message": message}}


class Crash:
    """A server that dies (SIGKILL) when it copies an event of `kill_type` between a session's log and a child
    thread's, then a restarted one on the same data dir."""

    def __init__(self, tmp_path: Path, model: ScriptedModelServer, kill_type: str, into: str = "thread") -> None:
        self.tmp_path, self.model = tmp_path, model
        self.data_dir, self.port = tmp_path / "data", free_port()
        hook = tmp_path / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(KILL_AT_COPY)
        env = {
            "PYTHONPATH": f"{hook}:{Path(__file__).resolve().parents[2]}",
            "TEST_KILL_AT_THREAD_COPY": kill_type,
            "TEST_KILL_COPY_INTO": into,
        }
        self.procs = [self._serve(env)]
        admin_key = (self.data_dir / "admin.key").read_text().strip()
        self.client = anthropic.Anthropic(base_url=self.procs[0].url, api_key=admin_key, max_retries=0)

    def _serve(self, env: dict[str, str] | None = None) -> ServeProcess:
        log = self.tmp_path / "serve.log"
        return ServeProcess(self.data_dir, self.port, self.model.base_url, log, args=("--workers", "1"), env=env)

    def send_and_die(self, sid: str, event: Any) -> None:
        """Send `event`; the server dies copying it (or what it causes) between the logs; restart it."""
        try:
            self.client.beta.sessions.events.send(sid, events=[event])
        except anthropic.APIConnectionError:
            pass  # killed before it answered (the session's write was made: the send had logged it)
        wait_until(lambda: self.procs[0].proc.poll() is not None, timeout=60)
        assert self.procs[0].proc.returncode == -9, "the server was not killed at the copy"
        self.procs.append(self._serve())

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(fallback="error") as s:
        yield s


def _threads(client: anthropic.Anthropic, sid: str) -> tuple[Any, list[Any]]:
    threads = list(client.beta.sessions.threads.list(sid))
    return threads[0], threads[1:]


def _coordinator(client: anthropic.Anthropic, *tools: Any) -> str:
    flights = client.beta.agents.create(name="flights", model="claude-sonnet-4-6", tools=list(tools))
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [flights.id]}
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=lead.id, environment_id=env.id).id


def _child_mid_request(client: anthropic.Anthropic, model: ScriptedModelServer) -> tuple[str, Any]:
    """A coordinator asked to "book it", whose child's model request is on the wire."""
    sid = _coordinator(client)
    client.beta.sessions.events.send(sid, events=[_msg("book it")])
    wait_until(lambda: len([r for r in model.requests if r["path"] == "/v1/messages"]) == 2, 30)
    (child,) = wait_until(lambda: _threads(client, sid)[1], 30)
    return sid, child


def _idle_with(client: anthropic.Anthropic, sid: str, count: int) -> list[Any]:
    def done() -> list[Any] | None:
        evs = all_events(client, sid)
        idles = [e for e in evs if e.type == "session.status_idle"]
        return evs if len(idles) >= count and client.beta.sessions.retrieve(sid).status == "idle" else None

    result: list[Any] = wait_until(done, timeout=60, interval=0.1)
    return result


@pytest.mark.slow
def test_kill9_while_copying_an_interrupt_of_one_child_then_restart_still_interrupts_it(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    # Given a coordinator waiting on a child whose model request is in flight (and whose re-run would answer)
    model.push(
        {"match": "book it", "content": [_delegate("flights", "slow job")]},
        {"match": "slow job", "content": [{"type": "text", "text": "LOST"}], "delay_ms": 30_000},
        {"match": "slow job", "content": [{"type": "text", "text": "too late"}]},
        {"match": "without a message", "content": [{"type": "text", "text": "Stopped the search."}]},
        {"match": "too late", "content": [{"type": "text", "text": "The child was never interrupted."}]},
    )
    crash = Crash(tmp_path, model, "user.interrupt")
    try:
        client = crash.client
        sid, child = _child_mid_request(client, model)
        # When the user interrupts that thread and the server dies copying the interrupt into the thread's log
        crash.send_and_die(sid, {"type": "user.interrupt", "session_thread_id": child.id})
        client = crash.client
        # Then after the restart the thread is interrupted all the same, and the coordinator carries on without it
        events = _idle_with(client, sid, 1)
        own = list(client.beta.sessions.threads.events.list(child.id, session_id=sid))
        statuses = {t.id: t.status for t in client.beta.sessions.threads.list(sid)}
    finally:
        crash.stop()
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Stopped the search."]
    types = [e.type for e in own]
    assert types.count("user.interrupt") == 1 and "agent.message" not in types
    assert types[-2:] == ["session.thread_status_idle", "agent.thread_message_sent"]
    assert set(statuses.values()) == {"idle"}


@pytest.mark.slow
def test_kill9_while_copying_the_sessions_interrupt_to_its_running_child_then_restart_stops_the_child(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    # Given a coordinator waiting on a child whose model request is in flight (and whose re-run would answer)
    model.push(
        {"match": "book it", "content": [_delegate("flights", "slow job")]},
        {"match": "slow job", "content": [{"type": "text", "text": "LOST"}], "delay_ms": 30_000},
        {"match": "slow job", "content": [{"type": "text", "text": "ran on after the interrupt"}]},
    )
    crash = Crash(tmp_path, model, "user.interrupt")
    try:
        client = crash.client
        sid, child = _child_mid_request(client, model)
        # When the user interrupts the session and the server dies copying the interrupt into the child's log
        crash.send_and_die(sid, {"type": "user.interrupt"})
        client = crash.client
        # Then after the restart the session stops its turn and so does the child, which answers nothing more
        events = _idle_with(client, sid, 1)
        child_stopped = wait_until(
            lambda: client.beta.sessions.threads.retrieve(child.id, session_id=sid).status == "idle", timeout=30
        )
        own = [e.type for e in client.beta.sessions.threads.events.list(child.id, session_id=sid)]
    finally:
        crash.stop()
    assert child_stopped and [e.stop_reason.type for e in events if e.type == "session.status_idle"] == ["end_turn"]
    assert own.count("user.interrupt") == 1 and "agent.message" not in own
    assert not [r for r in model.requests if r["path"] == "/v1/messages"][2:], "the child's request was re-run"


@pytest.mark.slow
def test_kill9_while_copying_a_custom_tool_result_into_the_child_then_restart_delivers_it_once(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    # Given a child whose custom tool call waits on the user, answered through the session
    model.push(
        {"match": "clean up", "content": [_delegate("flights", "clean the disk")]},
        {"match": "clean the disk", "content": [{"type": "tool_use", "name": "ticket", "input": {"title": "disk"}}]},
        {"match": "TICKET-7 filed", "content": [{"type": "text", "text": "opened TICKET-7"}]},
        {"match": "opened TICKET-7", "content": [{"type": "text", "text": "Cleanup is TICKET-7."}]},
    )
    crash = Crash(tmp_path, model, "user.custom_tool_result")
    try:
        client = crash.client
        sid = _coordinator(client, TICKET)
        client.beta.sessions.events.send(sid, events=[_msg("clean up")])
        events = _idle_with(client, sid, 1)
        custom = next(e for e in events if e.type == "agent.custom_tool_use")
        _, (child,) = _threads(client, sid)
        # When the result is sent and the server dies copying it into the child's log
        result = {
            "type": "user.custom_tool_result",
            "custom_tool_use_id": custom.id,
            "content": [{"type": "text", "text": "TICKET-7 filed"}],
        }
        crash.send_and_die(sid, result)
        client = crash.client
        # Then after the restart the child gets it once, answers, and the coordinator ends its turn
        events = _idle_with(client, sid, 2)
        own = [e.type for e in client.beta.sessions.threads.events.list(child.id, session_id=sid)]
    finally:
        crash.stop()
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Cleanup is TICKET-7."]
    assert [e.type for e in events].count("user.custom_tool_result") == 1
    assert own.count("user.custom_tool_result") == 1 and own[-1] == "agent.thread_message_sent"
    model.assert_complete()


@pytest.mark.slow
def test_kill9_while_copying_a_childs_custom_tool_call_to_the_session_then_restart_still_asks_the_user(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    # Given a child whose model calls a custom tool (answered by the session's client)
    model.push(
        {"match": "clean up", "content": [_delegate("flights", "clean the disk")]},
        {"match": "clean the disk", "content": [{"type": "tool_use", "name": "ticket", "input": {"title": "disk"}}]},
        {"match": "TICKET-7 filed", "content": [{"type": "text", "text": "opened TICKET-7"}]},
        {"match": "opened TICKET-7", "content": [{"type": "text", "text": "Cleanup is TICKET-7."}]},
    )
    crash = Crash(tmp_path, model, "agent.custom_tool_use", into="session")
    try:
        client = crash.client
        sid = _coordinator(client, TICKET)
        # When the server dies after the child logged the call, before the session's copy of it
        crash.send_and_die(sid, _msg("clean up"))
        client = crash.client
        # Then after the restart the session still asks its user for the call (it was copied once)
        events = _idle_with(client, sid, 1)
        _, (child,) = _threads(client, sid)
        customs = [e for e in events if e.type == "agent.custom_tool_use"]
        assert [(e.session_thread_id, e.name) for e in customs] == [(child.id, "ticket")]
        assert events[-1].stop_reason.type == "requires_action"
        assert events[-1].stop_reason.event_ids == [customs[0].id]
        # And the answer reaches the child, which answers the coordinator
        result = {
            "type": "user.custom_tool_result",
            "custom_tool_use_id": customs[0].id,
            "content": [{"type": "text", "text": "TICKET-7 filed"}],
        }
        client.beta.sessions.events.send(sid, events=[result])  # type: ignore[list-item]
        events = _idle_with(client, sid, 2)
    finally:
        crash.stop()
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Cleanup is TICKET-7."]
    assert [e.type for e in events].count("agent.custom_tool_use") == 1
    model.assert_complete()


@pytest.mark.slow
def test_kill9_while_copying_a_childs_status_change_to_the_session_then_restart_copies_it_once(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    # Given a child that answers at once
    model.push(
        {"match": "book it", "content": [_delegate("flights", "find a flight")]},
        {"match": "find a flight", "content": [{"type": "text", "text": "AF 123"}]},
        {"match": "AF 123", "content": [{"type": "text", "text": "Booked AF 123."}]},
    )
    crash = Crash(tmp_path, model, "session.thread_status_idle", into="session")
    try:
        client = crash.client
        sid = _coordinator(client)
        # When the server dies after the child logged its idle status, before the session's copy of it
        crash.send_and_die(sid, _msg("book it"))
        client = crash.client
        # Then after the restart the session's log has each status change of the child once, in its order
        events = _idle_with(client, sid, 1)
        _, (child,) = _threads(client, sid)
        own = list(client.beta.sessions.threads.events.list(child.id, session_id=sid))
    finally:
        crash.stop()
    copied = [e for e in events if e.type.startswith("session.thread_status_")]
    statuses = [e for e in own if e.type.startswith("session.thread_status_")]
    assert [(e.type, e.session_thread_id) for e in copied] == [(e.type, child.id) for e in statuses]
    assert [e.type for e in statuses] == ["session.thread_status_running", "session.thread_status_idle"]
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Booked AF 123."]
    model.assert_complete()
