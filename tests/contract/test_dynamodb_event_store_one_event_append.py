"""The DynamoDB event store's one-event append: two conditional PutItem calls instead of a transaction (half the write
units), with the same guarantees: no duplicate id, no lost event, a gapless sequence, idempotent retries. The
writers that stop or lose a race half-way leave a guard that points at a seq without its event; these tests leave
such guards on purpose and check that every writer after them still keeps the guarantees."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from managed_agents.adapters.aws.dynamodb_event_store import GUARD_SEQ, PK, SK, DynamoDbEventStore, guard_key
from managed_agents.domain.errors import DuplicateEvent
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id


def _session() -> str:
    return f"sesn_test_{uuid.uuid4().hex}"


def _ev(**payload: object) -> NewEvent:
    return NewEvent(id=new_id("event"), type="user.message", payload=payload or {"content": []})


def _rival(store: DynamoDbEventStore) -> DynamoDbEventStore:
    return DynamoDbEventStore(
        table_name=store.table_name,
        bucket_name=store.bucket_name,
        dynamodb_client=boto3.client("dynamodb", region_name="us-east-1"),
        s3_client=boto3.client("s3", region_name="us-east-1"),
    )


def _leave_guard(store: DynamoDbEventStore, session_id: str, event_id: str, seq: int) -> None:
    """What a one-event append that stopped after its guard put leaves behind."""
    store.dynamodb.put_item(
        TableName=store.table_name,
        Item={PK: {"S": guard_key(session_id, event_id)}, SK: {"N": str(GUARD_SEQ)}, "event_seq": {"N": str(seq)}},
    )


def _guard_seq(store: DynamoDbEventStore, session_id: str, event_id: str) -> int:
    out = store.dynamodb.get_item(
        TableName=store.table_name,
        Key={PK: {"S": guard_key(session_id, event_id)}, SK: {"N": str(GUARD_SEQ)}},
        ConsistentRead=True,
    )
    return int(out["Item"]["event_seq"]["N"])


def _count_calls(store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("put_item", "transact_write_items", "query", "batch_get_item", "get_item"):
        real = getattr(store.dynamodb, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(store.dynamodb, name, counted)
    return calls


def test_one_event_is_two_conditional_puts_not_a_transaction(
    dynamodb_event_store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a session with events and a store whose DynamoDB calls are counted
    store = dynamodb_event_store
    sid = _session()
    store.append(sid, [_ev(), _ev()])
    calls = _count_calls(store, monkeypatch)
    # When one event is appended
    e = _ev(text="one")
    (stored,) = store.append(sid, [e])
    # Then it took the next seq with a read of the last seq and two PutItems (1 write unit each; a transaction of the
    # same two items costs 4), and its guard points at it
    assert calls == ["query", "put_item", "put_item"]
    assert stored.seq == 3
    assert _guard_seq(store, sid, e.id) == 3
    assert store.get(sid, e.id) is not None and store.get(sid, e.id).payload == {"text": "one"}  # type: ignore[union-attr]
    # And a batch still goes through one transaction (all or nothing)
    calls.clear()
    store.append(sid, [_ev(), _ev()])
    assert calls.count("transact_write_items") == 1 and "put_item" not in calls


def test_a_duplicate_one_event_append_writes_nothing(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given an event in the log
    store = dynamodb_event_store
    sid = _session()
    e = _ev()
    store.append(sid, [_ev(), e])
    # When the same id is appended alone again (a retried step)
    with pytest.raises(DuplicateEvent) as raised:
        store.append(sid, [NewEvent(id=e.id, type=e.type, payload={"again": True})])
    # Then it is reported and the log is unchanged
    assert raised.value.event_ids == [e.id]
    assert [x.seq for x in store.read(sid)] == [1, 2]
    assert _guard_seq(store, sid, e.id) == 2


def test_a_retried_event_put_whose_first_try_went_through_is_not_a_duplicate(
    dynamodb_event_store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given botocore retrying the event's PutItem after a lost response: the first try wrote the item, the retry
    # then fails its condition
    store = dynamodb_event_store
    sid = _session()
    real_put = store.dynamodb.put_item

    def lost_response(**kwargs: Any) -> Any:
        if kwargs["Item"][SK]["N"] != str(GUARD_SEQ):
            real_put(**kwargs)
        return real_put(**kwargs)

    monkeypatch.setattr(store.dynamodb, "put_item", lost_response)
    # When one event is appended
    e = _ev(text="once")
    (stored,) = store.append(sid, [e])
    # Then the append succeeded (its own write, recognised by its token) and the event is there once
    assert stored.seq == 1 and stored.id == e.id
    assert [(x.seq, x.id) for x in store.read(sid)] == [(1, e.id)]


def test_an_event_whose_writer_stopped_after_its_guard_is_written_by_the_retry(
    dynamodb_event_store: DynamoDbEventStore,
) -> None:
    # Given a writer that put the guard of its event at seq 3 and stopped before the event (the log ends at 2)
    store = dynamodb_event_store
    sid = _session()
    store.append(sid, [_ev(), _ev()])
    e = _ev(text="retried")
    _leave_guard(store, sid, e.id, 3)
    # When the step runs again and appends the same event
    (stored,) = store.append(sid, [e])
    # Then it is written (not lost as a false duplicate), once, at the seq its guard points at
    assert stored.seq == 3
    assert [x.id for x in store.read(sid)][2:] == [e.id]
    assert _guard_seq(store, sid, e.id) == 3


def test_an_orphan_guard_whose_seq_another_event_took_is_moved_on(
    dynamodb_event_store: DynamoDbEventStore,
) -> None:
    # Given a writer that put its guard at seq 3, stopped, and another event that then took seq 3 and 4
    store = dynamodb_event_store
    sid = _session()
    store.append(sid, [_ev(), _ev()])
    e = _ev(text="late")
    _leave_guard(store, sid, e.id, 3)
    store.append(sid, [_ev()])
    store.append(sid, [_ev()])
    # When the same event is appended again, alone
    (stored,) = store.append(sid, [e])
    # Then it goes to the end of the gapless log, once, and its guard follows it
    assert stored.seq == 5
    log = store.read(sid)
    assert [x.seq for x in log] == [1, 2, 3, 4, 5]
    assert [x.id for x in log].count(e.id) == 1
    assert _guard_seq(store, sid, e.id) == 5
    assert store.get(sid, e.id) is not None


@pytest.mark.parametrize("orphan_seq", [3, 4], ids=["seq_taken", "seq_empty"])
def test_a_batch_takes_over_an_orphan_guard_of_one_of_its_events(
    dynamodb_event_store: DynamoDbEventStore, orphan_seq: int
) -> None:
    # Given a log of 3 events and an orphan guard of an event (at a taken seq, or at the next, empty one)
    store = dynamodb_event_store
    sid = _session()
    store.append(sid, [_ev(), _ev(), _ev()])
    a, b = _ev(text="a"), _ev(text="b")
    _leave_guard(store, sid, b.id, orphan_seq)
    # When a batch holding that event is appended (a step that ran again with another shape)
    stored = store.append(sid, [a, b])
    # Then the batch is written, each id once, and the guards point at the events
    assert [x.seq for x in stored] == [4, 5]
    assert [x.id for x in store.read(sid)] == [*[x.id for x in store.read(sid)][:3], a.id, b.id]
    assert _guard_seq(store, sid, b.id) == 5
    # And appending either again is a duplicate
    with pytest.raises(DuplicateEvent):
        store.append(sid, [b])
    with pytest.raises(DuplicateEvent):
        store.append(sid, [_ev(), a])


def test_two_writers_of_the_same_event_at_once_write_it_once(
    dynamodb_event_store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given our writer has put its guard and, before it puts the event, a rival appends the same event
    store = dynamodb_event_store
    rival = _rival(store)
    sid = _session()
    store.append(sid, [_ev()])
    e = _ev(text="same")
    real_put_event = store._put_event
    rival_result: list[Any] = []

    def rival_first(*args: Any, **kwargs: Any) -> Any:
        if not rival_result:
            rival_result.append(rival.append(sid, [e]))
        return real_put_event(*args, **kwargs)

    monkeypatch.setattr(store, "_put_event", rival_first)
    # When our writer goes on
    with pytest.raises(DuplicateEvent):
        store.append(sid, [e])
    # Then exactly one of them succeeded (the rival, which found the seq empty and wrote it) and the event is there
    # once
    assert [x.seq for x in rival_result[0]] == [2]
    assert [x.id for x in store.read(sid)].count(e.id) == 1
    assert store.last_seq(sid) == 2


def test_a_writer_that_loses_the_seq_after_its_guard_moves_the_guard(
    dynamodb_event_store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a rival that takes the next seq right after our writer put its guard there
    store = dynamodb_event_store
    rival = _rival(store)
    sid = _session()
    store.append(sid, [_ev()])
    real_put_event = store._put_event
    raced: list[bool] = []

    def rival_takes_the_seq(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            rival.append(sid, [_ev(writer="rival")])
        return real_put_event(*args, **kwargs)

    monkeypatch.setattr(store, "_put_event", rival_takes_the_seq)
    # When our writer goes on
    e = _ev(writer="me")
    (stored,) = store.append(sid, [e])
    # Then its event follows the rival's, the log is gapless and its guard points at it
    assert stored.seq == 3
    assert [x.payload.get("writer") for x in store.read(sid)] == [None, "rival", "me"]
    assert _guard_seq(store, sid, e.id) == 3


def test_racing_writers_of_the_same_events_among_others_keep_each_id_once(
    dynamodb_event_store: DynamoDbEventStore,
) -> None:
    # Given 4 writers that each append the same 5 events (a step run several times at once) and 4 writers of their
    # own events, all one event per append, racing on one session
    import threading

    store = dynamodb_event_store
    sid = _session()
    shared = [_ev(shared=i) for i in range(5)]
    won: list[str] = []
    duplicates: list[str] = []
    errors: list[BaseException] = []

    def same(n: int) -> None:
        writer = _rival(store)
        for e in shared:
            try:
                writer.append(sid, [e])
                won.append(e.id)
            except DuplicateEvent:
                duplicates.append(e.id)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    def own(n: int) -> None:
        writer = _rival(store)
        try:
            for i in range(5):
                writer.append(sid, [_ev(writer=n, i=i)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=same, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=own, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then each shared event was appended by exactly one writer and is in the log once; the others got DuplicateEvent
    assert errors == []
    assert sorted(won) == sorted(e.id for e in shared)
    assert len(duplicates) == 3 * len(shared)
    log = store.read(sid)
    assert [x.seq for x in log] == list(range(1, 5 + 4 * 5 + 1))
    assert len({x.id for x in log}) == len(log)
    for e in shared:
        assert store.get(sid, e.id) is not None
