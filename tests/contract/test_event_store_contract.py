"""The EventStore contract: every adapter must pass all of it (architecture: "one contract suite run on both")."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest

from managed_agents.api import sse
from managed_agents.domain.errors import DuplicateEvent, LogMoved
from managed_agents.domain.events import NewEvent, TimeRange
from managed_agents.domain.ids import new_id
from managed_agents.ports import EventStore, iter_all, read_wire


def _session() -> str:
    return f"sesn_test_{uuid.uuid4().hex}"


def _ev(type_: str = "user.message", **payload: object) -> NewEvent:
    return NewEvent(id=new_id("event"), type=type_, payload=payload or {"content": [{"type": "text", "text": "hi"}]})


def test_append_assigns_gapless_sequence_from_one(event_store: EventStore) -> None:
    # Given an empty session
    sid = _session()
    # When two batches are appended
    first = event_store.append(sid, [_ev(), _ev()])
    second = event_store.append(sid, [_ev("agent.message", content=[{"type": "text", "text": "yo"}])])
    # Then sequences run 1..3 and reads return exactly what was written
    assert [e.seq for e in first + second] == [1, 2, 3]
    assert event_store.last_seq(sid) == 3
    read = event_store.read(sid)
    assert [e.id for e in read] == [e.id for e in first + second]
    assert read[2].payload == {"content": [{"type": "text", "text": "yo"}]}
    assert read[2].wire()["type"] == "agent.message"
    assert read[0].processed_at.tzinfo is not None


def test_sessions_are_independent(event_store: EventStore) -> None:
    a, b = _session(), _session()
    event_store.append(a, [_ev()])
    event_store.append(b, [_ev(), _ev()])
    assert event_store.last_seq(a) == 1
    assert [e.seq for e in event_store.read(b)] == [1, 2]
    assert event_store.last_seq(_session()) == 0
    assert event_store.read(_session()) == []


def test_duplicate_ids_append_nothing(event_store: EventStore) -> None:
    # Given a batch already in the log (a turn that committed before a crash)
    sid = _session()
    batch = [_ev(), _ev()]
    event_store.append(sid, batch)
    # When the same batch is appended again, alone or mixed with a new event
    with pytest.raises(DuplicateEvent):
        event_store.append(sid, batch)
    with pytest.raises(DuplicateEvent):
        event_store.append(sid, [_ev(), batch[1]])
    # Then nothing was added
    assert event_store.last_seq(sid) == 2


def test_internal_part_round_trips_and_stays_off_the_wire(event_store: EventStore) -> None:
    sid = _session()
    event_store.append(sid, [NewEvent(new_id("event"), "span.model_request_end", {"x": 1}, internal={"raw": [1, 2]})])
    (stored,) = event_store.read(sid)
    assert stored.internal == {"raw": [1, 2]}
    assert "raw" not in stored.wire() and stored.wire()["x"] == 1


def test_get_by_id(event_store: EventStore) -> None:
    sid = _session()
    ev = _ev()
    event_store.append(sid, [_ev(), ev])
    got = event_store.get(sid, ev.id)
    assert got is not None and got.seq == 2
    assert event_store.get(sid, "sevt_missing") is None
    assert event_store.get(_session(), ev.id) is None


def test_positional_slices_in_both_orders(event_store: EventStore) -> None:
    sid = _session()
    event_store.append(sid, [_ev() for _ in range(25)])
    assert [e.seq for e in event_store.read(sid, after_seq=10, limit=5)] == [11, 12, 13, 14, 15]
    assert [e.seq for e in event_store.read(sid, after_seq=20, limit=10)] == [21, 22, 23, 24, 25]
    assert [e.seq for e in event_store.read(sid, order="desc", limit=3)] == [25, 24, 23]
    assert [e.seq for e in event_store.read(sid, order="desc", before_seq=5, limit=10)] == [4, 3, 2, 1]
    assert [e.seq for e in event_store.read(sid, after_seq=3, before_seq=7)] == [4, 5, 6]
    assert [e.seq for e in iter_all(event_store, sid, page=7)] == list(range(1, 26))


def test_type_filter(event_store: EventStore) -> None:
    sid = _session()
    idle = _ev("session.status_idle", stop_reason={})
    event_store.append(sid, [_ev(), _ev("agent.message", content=[]), _ev(), idle])
    got = event_store.read(sid, types=["agent.message", "session.status_idle"])
    assert [e.seq for e in got] == [2, 4]
    assert [e.seq for e in event_store.read(sid, types=["user.message"], after_seq=1)] == [3]
    assert [e.seq for e in event_store.read(sid, types=["user.message"], order="desc", limit=1)] == [3]


def test_processed_at_filter(event_store: EventStore) -> None:
    sid = _session()
    (first,) = event_store.append(sid, [_ev()])
    ts = first.processed_at
    assert len(event_store.read(sid, processed=TimeRange(gte=ts))) == 1
    assert event_store.read(sid, processed=TimeRange(gt=ts)) == []
    assert event_store.read(sid, processed=TimeRange(lt=ts)) == []
    assert len(event_store.read(sid, processed=TimeRange(lte=ts + timedelta(seconds=1)))) == 1


def test_delete_session(event_store: EventStore) -> None:
    sid = _session()
    event_store.append(sid, [_ev() for _ in range(3)])
    event_store.delete_session(sid)
    assert event_store.read(sid) == []
    assert event_store.last_seq(sid) == 0


def test_large_payload_round_trips(event_store: EventStore) -> None:
    # A payload well over DynamoDB's 400 KB item limit must come back intact (S3 spill on AWS).
    sid = _session()
    big = "x" * 600_000
    event_store.append(sid, [_ev(content=[{"type": "text", "text": big}]), _ev()])
    first, second = event_store.read(sid)
    assert first.payload["content"] == [{"type": "text", "text": big}]
    assert second.seq == 2


def test_wire_json_slices_equal_the_wire_form_of_read(event_store: EventStore) -> None:
    sid = "sesn_" + uuid.uuid4().hex
    payloads: list[dict[str, object]] = [
        {},
        {"content": [{"type": "text", "text": 'quote " backslash \\ newline \n é ✓'}]},
        {"stop_reason": {"type": "end_turn"}, "stop_details": None, "n": 1.5, "flag": False},
    ]
    event_store.append(
        sid,
        [NewEvent(new_id("event"), "agent.message", p, {"hidden": True}) for p in payloads],
    )
    for kwargs in ({}, {"order": "desc", "limit": 2}, {"after_seq": 1, "types": ["agent.message"]}):
        expected = event_store.read(sid, **kwargs)  # type: ignore[arg-type]
        got = read_wire(event_store, sid, **kwargs)  # type: ignore[arg-type]
        assert [seq for seq, _ in got] == [e.seq for e in expected]
        assert [json.loads(text) for _, text in got] == [e.wire() for e in expected]
        assert all("hidden" not in text for _, text in got)


def test_the_event_streams_reader_cuts_id_and_type_from_the_wire_text(event_store: EventStore) -> None:
    # Given events whose payloads hold types of their own (content blocks) and text that looks like the head
    sid = "sesn_" + uuid.uuid4().hex
    payloads = [{}, {"content": [{"type": "text", "text": '","type":"x'}], "tool_use_id": "sevt_x"}]
    event_store.append(sid, [NewEvent(new_id("event"), t, p) for t in ("agent.message", "span.x") for p in payloads])
    # When the SSE stream reads them (api/sse.py: the wire text, not decoded)
    got = sse._read(event_store, sid, 1, 500)
    # Then each carries the event's own seq, id and type, and its wire JSON
    expected = event_store.read(sid, after_seq=1)
    assert [(e.seq, e.id, e.type) for e in got] == [(e.seq, e.id, e.type) for e in expected]
    assert [json.loads(e.wire) for e in got] == [e.wire() for e in expected]


def test_a_conditional_append_lands_only_where_its_writer_saw_the_log_end(event_store: EventStore) -> None:
    # Given a log of two events, read by a writer (the harness, as a turn ends)
    sid = _session()
    event_store.append(sid, [_ev(), _ev()])
    seen = event_store.last_seq(sid)
    # When another writer logs an event first (a user.message sent meanwhile)
    event_store.append(sid, [_ev()])
    # Then the writer's append on the end it saw, of one event or of several, appends nothing
    for batch in ([_ev("session.status_idle")], [_ev("agent.message"), _ev("session.status_idle")]):
        with pytest.raises(LogMoved):
            event_store.append(sid, batch, expected_last_seq=seen)
    assert event_store.last_seq(sid) == 3
    # And on the end it sees now, it lands right after it, one event or several
    one = event_store.append(sid, [_ev("agent.message")], expected_last_seq=3)
    two = event_store.append(sid, [_ev("agent.message"), _ev("session.status_idle")], expected_last_seq=4)
    assert [e.seq for e in one + two] == [4, 5, 6]
    assert [e.seq for e in event_store.read(sid)] == [1, 2, 3, 4, 5, 6]
    # And an empty log is expected at 0, not at any other seq
    fresh = _session()
    with pytest.raises(LogMoved):
        event_store.append(fresh, [_ev()], expected_last_seq=1)
    assert [e.seq for e in event_store.append(fresh, [_ev()], expected_last_seq=0)] == [1]


def test_a_conditional_append_of_a_logged_batch_is_a_duplicate(event_store: EventStore) -> None:
    # Given a batch in the log, with more logged after it (a re-run of a step whose batch a crash hid from it)
    sid = _session()
    batch = [_ev("agent.message"), _ev("session.status_idle")]
    event_store.append(sid, batch)
    event_store.append(sid, [_ev()])
    # When it is appended again on the end of the log its first run saw
    # Then it is a duplicate (checked before the end of the log), and nothing is appended
    with pytest.raises(DuplicateEvent):
        event_store.append(sid, batch, expected_last_seq=0)
    assert event_store.last_seq(sid) == 3


def test_racing_conditional_appends_on_one_end_land_once(event_store: EventStore) -> None:
    # Given writers that all saw the log end at seq 1
    sid = _session()
    event_store.append(sid, [_ev()])
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        try:
            event_store.append(sid, [_ev(writer=n), _ev(writer=n)], expected_last_seq=1)
            result = "appended"
        except LogMoved:
            result = "moved"
        with lock:
            outcomes.append(result)

    # When they append on that end at once
    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one batch landed, right after seq 1, and every other writer was told the log moved
    assert sorted(outcomes) == ["appended"] + ["moved"] * 7
    events = event_store.read(sid)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[1].payload["writer"] == events[2].payload["writer"]


@pytest.mark.slow
def test_concurrent_writers_get_a_gapless_sequence(event_store: EventStore, concurrent_load: tuple[int, int]) -> None:
    # Given 20 writers appending 500 events each into one session (the adapter's load: see CONCURRENT_LOAD)
    sid = _session()
    writers, per_writer = concurrent_load
    assert writers >= 20
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(per_writer):
                event_store.append(sid, [_ev(writer=n, i=i)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then the log holds sequence 1..writers*per_writer exactly, every write once, each writer's own order kept
    assert errors == []
    events = list(iter_all(event_store, sid))
    assert [e.seq for e in events] == list(range(1, writers * per_writer + 1))
    assert len({e.id for e in events}) == writers * per_writer
    for n in range(writers):
        mine = [e.payload["i"] for e in events if e.payload["writer"] == n]
        assert mine == list(range(per_writer))
