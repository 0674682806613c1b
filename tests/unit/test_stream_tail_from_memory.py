"""Event streams take what this process appended from the notifier's tail, not from the store (notifier.py).

Under 400 streams and 400 sends each append woke its session's streams, and each of them went to a thread to read
the same events from SQLite and splice their JSON; an empty pass also read the session record. Now the appender
encodes the events once, a woken stream takes them from memory on the loop, and only a gap (an append of another
process, or one older than the tail) sends it to the store. The store stays the truth: what a stream sends is
byte for byte what `events.list` reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from managed_agents.adapters.aws.polling_notifier import PollingNotifier
from managed_agents.adapters.local.notifier import TAIL_EVENTS, LocalNotifier
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.adapters.local.workers import HubNotifier
from managed_agents.adapters.publishing_event_store import PublishingEventStore
from managed_agents.api.sse import event_stream
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.ports import read_wire
from tests.own_loop import run_on_own_loop


def _run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    run_on_own_loop(coro())


def _events(n: int, text: str = "x") -> list[NewEvent]:
    return [
        NewEvent(new_id("event"), "agent.message", {"content": [{"type": "text", "text": f"{text} é {i}"}]})
        for i in range(n)
    ]


class CountingStore(SqliteEventStore):
    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
        self.wire_reads = 0

    def read_wire_json(self, session_id: str, **kwargs: Any) -> list[tuple[int, str]]:
        self.wire_reads += 1
        return super().read_wire_json(session_id, **kwargs)


def test_a_stream_sends_this_process_appends_from_memory_exactly_as_the_store_holds_them(tmp_path: Path) -> None:
    async def run() -> None:
        # Given a publishing SQLite store with the embedded notifier, and a stream open on a session
        inner = CountingStore(SqliteDatabase(tmp_path / "db"))
        notifier = LocalNotifier()
        store = PublishingEventStore(inner, notifier)
        store.append("sesn_a", _events(2, "before"))
        exists_checks = 0

        async def still_exists() -> bool:
            nonlocal exists_checks
            exists_checks += 1
            return True

        sub = notifier.subscribe("sesn_a")
        stream = event_stream(
            store=store,
            session_id="sesn_a",
            subscription=sub,
            after_seq=1,
            ping_seconds=60,
            max_seconds=0,
            deleted_event=lambda: {},
            still_exists=still_exists,
            error_body=lambda exc: {},
        )
        received = [await anext(stream)]  # the first pass reads the store: event 2
        assert inner.wire_reads == 1
        # When three appends land, one at a time, each read by the stream
        for n in (1, 3, 2):
            await asyncio.to_thread(store.append, "sesn_a", _events(n))
            received.append(await asyncio.wait_for(anext(stream), 5))
        # And a wake brings nothing new (an append the stream had already taken)
        sub.notify()
        pending = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        # Then the stream read the store once, at its start, and checked the session's record only then
        assert inner.wire_reads == 1
        assert exists_checks == 0
        # And it sent what the store holds, byte for byte, in order, each event once
        sent = b"".join(received).decode()
        expected = "".join(
            f"id: {text[7 : text.index(chr(34), 7)]}\nevent: agent.message\ndata: {text}\n\n"
            for _, text in read_wire(inner, "sesn_a", after_seq=1)
        )
        assert sent == expected
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)

    _run(run)


def test_a_gap_in_the_tail_is_read_from_the_store() -> None:
    async def run() -> None:
        notifier = LocalNotifier()
        sub = notifier.subscribe("sesn_a")
        # Nothing known after the stream's position: nothing to read
        assert sub.logged_after(0) == []
        store_events = _stored("sesn_a", 1, 3)
        notifier.publish_appended("sesn_a", store_events[1:])  # 2 and 3 published before 1 (two appenders)
        assert sub.logged_after(0) is None  # 1 is not in memory: the store
        assert [e[0] for e in sub.logged_after(1) or []] == [2, 3]
        notifier.publish_appended("sesn_a", store_events[:1])
        assert [e[0] for e in sub.logged_after(0) or []] == [1, 2, 3]
        assert sub.logged_after(3) == []
        # The tail keeps the latest TAIL_EVENTS events: a stream further behind reads the store
        notifier.publish_appended("sesn_a", _stored("sesn_a", 4, TAIL_EVENTS + 10))
        assert sub.logged_after(3) is None
        assert len(sub.logged_after(10) or []) == TAIL_EVENTS
        # Once the session's last stream closes its tail is dropped
        sub.close()
        assert notifier._tails == {}

    _run(run)


def test_another_workers_append_sends_the_stream_to_the_store() -> None:
    async def run() -> None:
        class Link:
            def __init__(self) -> None:
                self.handlers: dict[str, Callable[[str], object]] = {}

            def send(self, line: str) -> None:
                pass

        link = Link()
        notifier = HubNotifier(link)  # type: ignore[arg-type]
        sub = notifier.subscribe("sesn_a")
        notifier.publish_appended("sesn_a", _stored("sesn_a", 1, 2))
        link.handlers["p"]("sesn_a 3")  # worker 2 appended event 3
        assert sub.logged_after(0) is None
        notifier.publish_appended("sesn_a", _stored("sesn_a", 4, 4))
        assert sub.logged_after(2) is None
        assert [e[0] for e in sub.logged_after(3) or []] == [4]

    _run(run)


def test_the_aws_polling_notifier_never_answers_from_memory() -> None:
    async def run() -> None:
        notifier = PollingNotifier(poll_seconds=0.1)
        sub = notifier.subscribe("sesn_a")
        notifier.publish_appended("sesn_a", _stored("sesn_a", 1, 2))
        assert sub.logged_after(0) is None and sub.logged_after(2) is None  # the harness appends elsewhere

    _run(run)


def _stored(session_id: str, first: int, last: int) -> list[Any]:
    from datetime import UTC, datetime

    from managed_agents.domain.events import StoredEvent

    now = datetime.now(UTC)
    return [
        StoredEvent(session_id, seq, new_id("event"), "agent.message", now, {"n": seq})
        for seq in range(first, last + 1)
    ]


def test_a_stream_waits_on_its_subscription_without_a_task_of_its_own() -> None:
    async def run() -> None:
        notifier = LocalNotifier()
        sub = notifier.subscribe("sesn_a")
        # Given a stream waiting for its session (a long ping interval)
        waiting = asyncio.ensure_future(sub.wait(30))
        await asyncio.sleep(0.05)
        # Then the wait made no task besides the stream's own (asyncio.wait_for made one per wait)
        assert len(asyncio.all_tasks()) == 2  # this test's and the waiting stream's
        # And an append wakes it at once, and a wait with nothing appended ends at its timeout
        notifier.publish_appended("sesn_a", _stored("sesn_a", 1, 1))
        await asyncio.wait_for(waiting, 5)
        started = asyncio.get_running_loop().time()
        await sub.wait(0.1)
        assert 0.05 <= asyncio.get_running_loop().time() - started < 5
        assert not sub.deleted

    _run(run)


def test_an_idle_aws_stream_reads_the_session_record_once_per_check_interval_not_after_each_poll(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        # Given an AWS stream (the polling notifier: every pass reads the store) on a session with nothing new
        inner = CountingStore(SqliteDatabase(tmp_path / "db"))
        inner.append("sesn_a", _events(1))
        exists_checks = 0

        async def still_exists() -> bool:
            nonlocal exists_checks
            exists_checks += 1
            return True

        stream = event_stream(
            store=inner,
            session_id="sesn_a",
            subscription=PollingNotifier(poll_seconds=0.01).subscribe("sesn_a"),
            after_seq=1,
            ping_seconds=60,
            max_seconds=0,
            deleted_event=lambda: {},
            still_exists=still_exists,
            error_body=lambda exc: {},
        )
        pending = asyncio.ensure_future(anext(stream))
        # When it polls the log for 4.5 s, within one DELETED_CHECK_SECONDS (10 s)
        started = time.monotonic()
        while time.monotonic() - started < 4.5 or inner.wire_reads < 30:
            await asyncio.sleep(0.01)
        # Then it looked at the session's record at most once (every 2 s it would have twice; after each poll, 400x)
        assert exists_checks <= 1
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)

    _run(run)


def test_a_session_deleted_under_an_aws_stream_still_ends_it_with_session_deleted(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import managed_agents.api.sse as sse

    async def run() -> None:
        # Given an AWS stream on a session, and the session then deleted (its record gone)
        monkeypatch.setattr(sse, "DELETED_CHECK_SECONDS", 0.05)
        inner = CountingStore(SqliteDatabase(tmp_path / "db"))
        inner.append("sesn_a", _events(1))

        async def still_exists() -> bool:
            return False

        stream = event_stream(
            store=inner,
            session_id="sesn_a",
            subscription=PollingNotifier(poll_seconds=0.01).subscribe("sesn_a"),
            after_seq=1,
            ping_seconds=60,
            max_seconds=0,
            deleted_event=lambda: {"id": "sevt_x", "type": "session.deleted"},
            still_exists=still_exists,
            error_body=lambda exc: {},
        )
        # Then the stream ends with the session.deleted event
        sent = await asyncio.wait_for(anext(stream), 10)
        assert b"event: session.deleted" in sent
        assert [chunk async for chunk in stream] == []

    _run(run)
