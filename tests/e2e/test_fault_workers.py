"""`serve --workers 2`: two processes on one data dir behave as one server.

A stream on one worker sees what the other logs at once; sends to one session through both workers advance it one
step at a time; `kill -9` of the worker running sessions mid-turn gets them taken over by the other and finished
once; two processes appending to one session keep its sequence gapless. Driven through the official SDK with strict
response validation; which worker served a request is read from the `x-managed-agents-worker` header.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from managed_agents.api.workers import WORKER_HEADER
from managed_agents.testing.loopback import free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import all_events, wait_until
from tests.e2e.serve_process import ServeProcess

# Embedded only: these start `managed-agents serve --workers 2` and kill its processes.
pytestmark = pytest.mark.slow
LEASE_SECONDS = "3"
TURN = [
    "user.message",
    "session.status_running",
    "span.model_request_start",
    "agent.message",
    "span.model_request_end",
    "session.status_idle",
]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    procs: list[ServeProcess] = []

    def start(model: ScriptedModelServer) -> ServeProcess:
        env = {"MANAGED_AGENTS_RUN_LEASE_SECONDS": LEASE_SECONDS}
        procs.append(
            ServeProcess(
                tmp_path / "data", free_port(), model.base_url, tmp_path / "serve.log", args=("--workers", "2"), env=env
            )
        )
        return procs[-1]

    yield start
    for p in procs:
        p.stop()


def admin_key(proc: ServeProcess, tmp_path: Path) -> str:
    return (tmp_path / "data" / "admin.key").read_text().strip()


def pinned(url: str, key: str, worker: str) -> anthropic.Anthropic:
    """A strict client whose (kept-alive) connection landed on `worker`: new connections until one does."""

    def attempt() -> anthropic.Anthropic | None:
        client = anthropic.Anthropic(
            base_url=url, api_key=key, max_retries=0, _strict_response_validation=True, http_client=httpx2.Client()
        )
        if client.beta.agents.with_raw_response.list(limit=1).headers.get(WORKER_HEADER) == worker:
            return client
        client.close()
        return None

    client: anthropic.Anthropic = wait_until(attempt, timeout=60, interval=0.01)
    return client


def send(client: anthropic.Anthropic, session_id: str, text: str) -> str:
    """Send a user message; returns the worker it landed on."""
    raw = client.beta.sessions.events.with_raw_response.send(
        session_id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )
    return str(raw.headers.get(WORKER_HEADER))


def assert_one_step_at_a_time(events: list[Any]) -> None:
    """No event twice, and every model request closed before the next one opened (no interleaved steps)."""
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "an event was logged twice"
    open_request: str | None = None
    for e in events:
        if e.type == "span.model_request_start":
            assert open_request is None, f"a model request started while {open_request} was open"
            open_request = e.id
        elif e.type == "span.model_request_end":
            assert e.model_request_start_id == open_request, "a request ended that was not the open one"
            open_request = None
    assert open_request is None


def new_session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def test_a_stream_on_one_worker_sees_the_other_workers_sends_and_turns_at_once(serve: Any, tmp_path: Path) -> None:
    with ScriptedModelServer(["first answer", "second answer"], fallback="error") as model:
        proc = serve(model)
        key = admin_key(proc, tmp_path)
        # Given a session, a stream open on worker 0 and a client whose connection is on worker 1
        w0, w1 = pinned(proc.url, key, "0"), pinned(proc.url, key, "1")
        sid = new_session(w0)
        streamed: list[Any] = []
        opened = threading.Event()

        def read() -> None:
            with w0.beta.sessions.events.stream(sid) as stream:
                opened.set()
                for event in stream:
                    streamed.append(event)
                    if event.type == "session.status_idle":
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        opened.wait(30)
        # When the message is sent through worker 1 (its turn runs there: the wake is where the send landed)
        assert send(w1, sid, "hi") == "1"
        reader.join(60)
        # Then worker 0's stream got the whole turn, each event once, as the log has it
        assert [e.type for e in streamed] == TURN
        assert [e.id for e in streamed] == [e.id for e in all_events(w0, sid)]
        # And a stream re-opened on worker 1 after the first event (Last-Event-ID) replays the rest, then follows
        # the next turn, sent through worker 0
        again: list[Any] = []
        reopened = threading.Event()

        def reconnect() -> None:
            with w1.beta.sessions.events.stream(sid, extra_headers={"Last-Event-ID": streamed[0].id}) as stream:
                reopened.set()
                for event in stream:
                    again.append(event)
                    if event.type == "session.status_idle" and len(again) > len(TURN):
                        return

        reader = threading.Thread(target=reconnect, daemon=True)
        reader.start()
        reopened.wait(30)
        assert send(pinned(proc.url, key, "0"), sid, "again") == "0"
        reader.join(60)
    events = all_events(w1, sid)
    assert [e.id for e in again] == [e.id for e in events[1:]]
    assert [e.type for e in events] == TURN + TURN
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["first answer", "second answer"]
    assert_one_step_at_a_time(events)


def test_sends_to_one_session_through_both_workers_advance_it_one_step_at_a_time(serve: Any, tmp_path: Path) -> None:
    with ScriptedModelServer(fallback="echo", latency_ms=150) as model:
        proc = serve(model)
        key = admin_key(proc, tmp_path)
        clients = [pinned(proc.url, key, "0"), pinned(proc.url, key, "1")]
        sid = new_session(clients[0])
        # When messages arrive at once through both workers, each of which wakes the session where it landed
        landed: list[str] = []
        threads = [
            threading.Thread(target=lambda i=i: landed.append(send(clients[i % 2], sid, f"m{i}"))) for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(set(landed)) == ["0", "1"]

        # Then every message is answered, by one worker at a time. (Settled: idle after a model request that started
        # once every message was logged. A message logged while a turn ends can see that turn's idle logged after it
        # and the wake it sent start the next turn: an idle alone is not the end, CI once caught one in between.)
        def settled() -> list[Any] | None:
            evs = all_events(clients[1], sid)
            starts = [i for i, e in enumerate(evs) if e.type == "span.model_request_start"]
            users = [i for i, e in enumerate(evs) if e.type == "user.message"]
            if evs[-1].type != "session.status_idle" or not starts or len(users) < 8 or max(users) > starts[-1]:
                return None
            return evs if any(e.type == "agent.message" for e in evs[starts[-1] :]) else None

        events: list[Any] = wait_until(settled, timeout=60, interval=0.1)
    assert_one_step_at_a_time(events)
    users = [e for e in events if e.type == "user.message"]
    assert sorted(e.content[0].text for e in users) == [f"m{i}" for i in range(8)]
    # the last model request saw every message (a turn answers what the log holds when it starts)
    last = max(i for i, e in enumerate(events) if e.type == "span.model_request_start")
    assert all(events.index(u) < last for u in users)


def test_an_interrupt_through_one_worker_cuts_the_model_request_running_on_the_other(
    serve: Any, tmp_path: Path
) -> None:
    with ScriptedModelServer([{"hang_ms": 120_000}], fallback="error") as model:
        proc = serve(model)
        key = admin_key(proc, tmp_path)
        w0, w1 = pinned(proc.url, key, "0"), pinned(proc.url, key, "1")
        sid = new_session(w0)
        # Given a turn running on worker 0 (where its message landed), its model request hanging for two minutes
        assert send(w0, sid, "hi") == "0"
        wait_until(lambda: model.requests, timeout=30, interval=0.01)
        # When the user interrupts through worker 1
        w1.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])

        # Then worker 0's request is cut and the session idles long before the hang would end
        def idle() -> list[Any] | None:
            evs = all_events(w1, sid)
            return evs if evs[-1].type == "session.status_idle" else None

        events: list[Any] = wait_until(idle, timeout=45, interval=0.05)
    assert [e.type for e in events] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "user.interrupt",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert_one_step_at_a_time(events)


def lease_owners(data_dir: Path) -> dict[str, int]:
    """session id -> the pid of the process holding its run lease (read beside the server, as an operator could)."""
    with sqlite3.connect(data_dir / "managed_agents.db", timeout=30) as conn:
        rows = conn.execute("SELECT session_id, owner FROM run_leases WHERE owner IS NOT NULL").fetchall()
    return {sid: int(owner.split(":")[1]) for sid, owner in rows}


def test_kill9_of_one_worker_mid_turn_its_sessions_are_taken_over_and_finish_once(serve: Any, tmp_path: Path) -> None:
    n = 6
    # The first request of each session is slow, so the kill lands mid-flight; a re-run gets the second step.
    steps: list[Any] = []
    for i in range(n):
        steps.append({"match": f"task-{i}", "delay_ms": 4000, "content": [{"type": "text", "text": f"slow-{i}"}]})
        steps.append({"match": f"task-{i}", "content": [{"type": "text", "text": f"rerun-{i}"}]})
    with ScriptedModelServer(steps, fallback="error") as model:
        proc = serve(model)
        key = admin_key(proc, tmp_path)
        clients = [pinned(proc.url, key, "0"), pinned(proc.url, key, "1")]
        # Given six sessions whose turns run on both workers (each runs where its send landed)
        sids = [new_session(clients[0]) for _ in range(n)]
        for i, sid in enumerate(sids):
            send(clients[i % 2], sid, f"task-{i}")
        wait_until(lambda: len(model.requests) >= n, timeout=30, interval=0.01)
        owners = wait_until(lambda: (o := lease_owners(tmp_path / "data")) and len(o) == n and o, timeout=10)
        # When the worker that runs the most of them is killed with SIGKILL mid-request
        victim = max(set(owners.values()), key=list(owners.values()).count)
        killed = [sid for sid, pid in owners.items() if pid == victim]
        os.kill(victim, signal.SIGKILL)

        # Then every session finishes: the killed worker's are taken over (their leases expire) and re-run once
        def all_idle() -> dict[str, list[Any]] | None:
            logs = {sid: all_events(clients[0] if i % 2 else clients[1], sid) for i, sid in enumerate(sids)}
            return logs if all(evs[-1].type == "session.status_idle" for evs in logs.values()) else None

        try:
            logs: dict[str, list[Any]] = wait_until(all_idle, timeout=90, interval=0.1)
        except anthropic.APIConnectionError:  # a kept-alive connection to the killed worker: a fresh client
            fresh = anthropic.Anthropic(base_url=proc.url, api_key=key, max_retries=2)
            logs = wait_until(
                lambda: (
                    (ls := {s: all_events(fresh, s) for s in sids})
                    and all(e[-1].type == "session.status_idle" for e in ls.values())
                    and ls
                ),
                timeout=90,
                interval=0.1,
            )
        # And the supervisor restarted the killed worker
        wait_until(lambda: "exited with -9: restarting it" in proc.log_path.read_text(), timeout=10)
    assert killed
    for i, sid in enumerate(sids):
        events = logs[sid]
        assert [e.type for e in events] == TURN, (sid, [e.type for e in events])
        assert_one_step_at_a_time(events)
        (message,) = [e for e in events if e.type == "agent.message"]
        expected = {f"rerun-{i}"} if sid in killed else {f"slow-{i}", f"rerun-{i}"}
        assert message.content[0].text in expected


def _append_many(db_path: str, sid: str, writer: int, count: int) -> None:
    from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
    from managed_agents.domain.events import NewEvent
    from managed_agents.domain.ids import new_id

    store = SqliteEventStore(SqliteDatabase(db_path))
    for i in range(count):
        store.append(sid, [NewEvent(new_id("event"), "agent.message", {"writer": writer, "i": i})])


def test_two_processes_appending_to_one_session_keep_its_sequence_gapless(tmp_path: Path) -> None:
    from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
    from managed_agents.ports import iter_all

    db_path, sid, per = str(tmp_path / "db.sqlite"), "sesn_concurrent", 300
    SqliteDatabase(db_path)  # the schema, before the writers race to make it
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append_many, args=(db_path, sid, w, per)) for w in range(2)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
    assert [p.exitcode for p in writers] == [0, 0]
    events = list(iter_all(SqliteEventStore(SqliteDatabase(db_path)), sid))
    assert [e.seq for e in events] == list(range(1, 2 * per + 1))
    for w in range(2):
        assert [e.payload["i"] for e in events if e.payload["writer"] == w] == list(range(per))


def test_a_stream_on_one_worker_gets_the_previews_of_a_turn_running_on_the_other(serve: Any, tmp_path: Path) -> None:
    long = "The quick brown fox jumps over the lazy dog, three times over, to make several deltas."
    with ScriptedModelServer([{"content": [{"type": "text", "text": long}], "chunk_delay_ms": 15}]) as model:
        proc = serve(model)
        key = admin_key(proc, tmp_path)
        # Given a stream asking for message previews on worker 0, and a client on worker 1
        w0, w1 = pinned(proc.url, key, "0"), pinned(proc.url, key, "1")
        sid = new_session(w0)
        streamed: list[Any] = []
        opened = threading.Event()

        def read() -> None:
            with w0.beta.sessions.events.stream(sid, event_deltas=["agent.message"]) as stream:  # type: ignore[arg-type]
                opened.set()
                for event in stream:
                    streamed.append(event)
                    if event.type == "session.status_idle":
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        opened.wait(30)
        # When the message is sent through worker 1 (the turn, and its model request, run there)
        wait_until(lambda: send(w1, sid, "hi") == "1", timeout=1)  # (the stream's wish reached worker 1 by now)
        reader.join(60)
    # Then worker 0's stream got the message's preview before its final event, and the whole turn
    message = next(e for e in streamed if e.type == "agent.message")
    starts = [e for e in streamed if e.type == "event_start"]
    assert [s.event.id for s in starts] == [message.id]
    deltas = [e for e in streamed if e.type == "event_delta"]
    assert deltas and all(d.event_id == message.id for d in deltas)
    assert streamed.index(starts[0]) < streamed.index(message)
    assert [e.type for e in streamed if e.type not in ("event_start", "event_delta")] == TURN
