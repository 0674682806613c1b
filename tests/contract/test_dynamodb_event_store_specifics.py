"""What only the DynamoDB event store has: S3 spill, guard items, one Query per page, the seq race and its retry."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from managed_agents.adapters.aws.dynamodb_event_store import (
    GUARD_SEQ,
    MAX_EVENTS_PER_APPEND,
    PK,
    SK,
    DynamoDbEventStore,
    guard_key,
    spill_key,
)
from managed_agents.domain.errors import DuplicateEvent, ServiceUnavailable
from managed_agents.domain.events import NewEvent, StoredEvent
from managed_agents.domain.ids import new_id


def _session() -> str:
    return f"sesn_test_{uuid.uuid4().hex}"


def _ev(**payload: object) -> NewEvent:
    return NewEvent(id=new_id("event"), type="user.message", payload=payload or {"content": []})


def _with_threshold(store: DynamoDbEventStore, threshold: int) -> DynamoDbEventStore:
    return DynamoDbEventStore(
        table_name=store.table_name,
        bucket_name=store.bucket_name,
        dynamodb_client=store.dynamodb,
        s3_client=store.s3,
        spill_threshold_bytes=threshold,
    )


def _rival(store: DynamoDbEventStore) -> DynamoDbEventStore:
    """Another writer on the same table and bucket, with clients of its own (another process, say)."""
    return DynamoDbEventStore(
        table_name=store.table_name,
        bucket_name=store.bucket_name,
        dynamodb_client=boto3.client("dynamodb", region_name="us-east-1"),
        s3_client=boto3.client("s3", region_name="us-east-1"),
    )


def _item(store: DynamoDbEventStore, pk: str, seq: int) -> dict[str, object] | None:
    out = store.dynamodb.get_item(
        TableName=store.table_name, Key={PK: {"S": pk}, SK: {"N": str(seq)}}, ConsistentRead=True
    )
    item: dict[str, object] | None = out.get("Item")  # type: ignore[assignment]
    return item


def _spilled_keys(store: DynamoDbEventStore, session_id: str) -> list[str]:
    listing = store.s3.list_objects_v2(Bucket=store.bucket_name, Prefix=f"events/{session_id}/")
    return [obj["Key"] for obj in listing.get("Contents", [])]


def test_payload_over_the_threshold_is_spilled_to_s3_and_read_back(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given a store that spills payloads over 1 KB
    store = _with_threshold(dynamodb_event_store, 1_000)
    sid = _session()
    big = NewEvent(new_id("event"), "agent.message", {"content": [{"type": "text", "text": "y" * 2_000}]}, {"raw": 1})
    small = _ev()
    # When a large and a small event are appended
    store.append(sid, [big, small])
    # Then the large one lives in S3 and its item only points there; the small one stays inline
    assert _spilled_keys(store, sid) == [spill_key(sid, big.id)]
    item = _item(store, sid, 1)
    assert item is not None
    assert item["s3_key"] == {"S": spill_key(sid, big.id)} and "payload" not in item and "internal" not in item
    inline = _item(store, sid, 2)
    assert inline is not None and "s3_key" not in inline and "payload" in inline
    # And reads, gets and filters bring the payload back transparently
    first, second = store.read(sid)
    assert (first.payload, first.internal) == (big.payload, big.internal)
    assert second.payload == small.payload
    got = store.get(sid, big.id)
    assert got is not None and got.payload == big.payload and got.seq == 1
    assert [e.id for e in store.read(sid, types=["agent.message"])] == [big.id]


def test_default_threshold_keeps_items_under_the_dynamodb_limit(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given the default threshold (350 KB)
    sid = _session()
    just_under = _ev(text="a" * 340_000)
    over = _ev(text="b" * 360_000)
    # When one payload under and one over it are appended
    dynamodb_event_store.append(sid, [just_under, over])
    # Then only the one over the threshold is spilled
    assert _spilled_keys(dynamodb_event_store, sid) == [spill_key(sid, over.id)]
    assert [e.payload["text"] for e in dynamodb_event_store.read(sid)] == [
        just_under.payload["text"],
        over.payload["text"],
    ]


def test_a_duplicate_append_does_not_overwrite_a_spilled_payload(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given a spilled event in the log
    store = _with_threshold(dynamodb_event_store, 100)
    sid = _session()
    original = _ev(text="first run " * 50)
    store.append(sid, [original])
    # When the same id is appended again with a different (also spilled) payload
    with pytest.raises(DuplicateEvent) as raised:
        store.append(sid, [NewEvent(original.id, original.type, {"text": "second run " * 50})])
    # Then the duplicate is reported and the stored payload is still the original one
    assert raised.value.event_ids == [original.id]
    (stored,) = store.read(sid)
    assert stored.payload == original.payload


def test_a_page_at_the_end_of_a_long_session_is_one_query(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given a 1,000-event session (bulk-loaded: moto copies the whole table per transaction item, so 1,000
    # transactional appends would take a minute)
    sid = _session()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    dynamodb_event_store.import_events(
        sid,
        [
            StoredEvent(sid, n, new_id("event"), "user.message", start + timedelta(seconds=n), {"n": n})
            for n in range(1, 1001)
        ],
    )
    assert dynamodb_event_store.last_seq(sid) == 1000
    # When the last page of 100 is read, without filters, in either order
    before = dynamodb_event_store.query_calls
    page = dynamodb_event_store.read(sid, after_seq=900, limit=100)
    asc_calls = dynamodb_event_store.query_calls - before
    before = dynamodb_event_store.query_calls
    newest = dynamodb_event_store.read(sid, order="desc", limit=100)
    desc_calls = dynamodb_event_store.query_calls - before
    # Then each read is exactly one Query and returns the right slice
    assert asc_calls == 1 and desc_calls == 1
    assert [e.seq for e in page] == list(range(901, 1001))
    assert [e.seq for e in newest] == list(range(1000, 900, -1))
    assert page[-1].payload == {"n": 1000}


def test_delete_session_removes_items_guards_and_spilled_objects(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given a session with spilled and inline events, and another session that must survive
    store = _with_threshold(dynamodb_event_store, 500)
    sid, other = _session(), _session()
    events = [_ev(text="z" * 1_000), _ev(), _ev(text="w" * 1_000)] + [_ev(i=i) for i in range(60)]
    for start in range(0, len(events), 20):
        store.append(sid, events[start : start + 20])
    kept = _ev(text="k" * 1_000)
    store.append(other, [kept])
    assert len(_spilled_keys(store, sid)) == 2
    # When the session is deleted
    store.delete_session(sid)
    # Then its event items, guard items and S3 objects are gone
    assert store.read(sid) == [] and store.last_seq(sid) == 0
    assert all(_item(store, guard_key(sid, e.id), GUARD_SEQ) is None for e in events)
    assert _spilled_keys(store, sid) == []
    assert all(store.get(sid, e.id) is None for e in events)
    # And its ids can be appended again (no guard left behind)
    assert [e.seq for e in store.append(sid, [events[0]])] == [1]
    # And the other session is untouched
    assert _spilled_keys(store, other) == [spill_key(other, kept.id)]
    got = store.get(other, kept.id)
    assert got is not None and got.payload == kept.payload
    # And, once both are deleted, the table is empty
    store.delete_session(sid)
    store.delete_session(other)
    assert store.dynamodb.scan(TableName=store.table_name)["Count"] == 0


def test_guard_item_records_the_seq_of_its_event(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given three appended events
    sid = _session()
    events = [_ev(), _ev(), _ev()]
    dynamodb_event_store.append(sid, events)
    # Then each has a guard item in its own partition pointing at its seq, invisible to reads
    for seq, e in enumerate(events, start=1):
        assert _item(dynamodb_event_store, guard_key(sid, e.id), GUARD_SEQ) == {
            PK: {"S": guard_key(sid, e.id)},
            SK: {"N": "0"},
            "event_seq": {"N": str(seq)},
        }
    assert [e.seq for e in dynamodb_event_store.read(sid)] == [1, 2, 3]


def test_a_writer_that_loses_the_seq_race_retries_and_keeps_the_log_gapless(
    dynamodb_event_store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a session with 3 events and two writers on it
    store = dynamodb_event_store
    rival = _rival(store)
    sid = _session()
    store.append(sid, [_ev(), _ev(), _ev()])
    # And the rival commits 2 events right after our writer has read the last seq (a stale read)
    real_last_seq = store.last_seq
    reads: list[int] = []

    def racing_last_seq(session_id: str) -> int:
        seen = real_last_seq(session_id)
        reads.append(seen)
        if len(reads) == 1:
            rival.append(session_id, [_ev(writer="rival"), _ev(writer="rival")])
        return seen

    monkeypatch.setattr(store, "last_seq", racing_last_seq)
    transactions: list[object] = []
    real_transact = store.dynamodb.transact_write_items

    def counting_transact(**kwargs: object) -> object:
        transactions.append(kwargs)
        return real_transact(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.dynamodb, "transact_write_items", counting_transact)
    # When our writer appends 2 events
    mine = store.append(sid, [_ev(writer="me"), _ev(writer="me")])
    # Then its first transaction was cancelled on the seq condition, the retry re-read the last seq
    assert reads == [3, 5]
    assert len(transactions) == 2
    # And the log is gapless, with the rival's events first and nothing lost or overwritten
    assert [e.seq for e in mine] == [6, 7]
    log = store.read(sid)
    assert [e.seq for e in log] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.payload.get("writer") for e in log[3:]] == ["rival", "rival", "me", "me"]


def test_a_stale_last_seq_without_a_rival_also_retries(
    dynamodb_event_store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a session with 5 events and a last-seq lookup that returns a stale value once
    store = dynamodb_event_store
    sid = _session()
    store.append(sid, [_ev() for _ in range(5)])
    real_last_seq = store.last_seq
    calls: list[int] = []

    def stale_once(session_id: str) -> int:
        calls.append(1)
        return 2 if len(calls) == 1 else real_last_seq(session_id)

    monkeypatch.setattr(store, "last_seq", stale_once)
    # When an event is appended
    (stored,) = store.append(sid, [_ev()])
    # Then the conflicting seq 3 was not overwritten and the event went to seq 6
    assert len(calls) == 2 and stored.seq == 6
    assert [e.seq for e in store.read(sid)] == [1, 2, 3, 4, 5, 6]
    assert len({e.id for e in store.read(sid)}) == 6


def test_a_rival_appending_the_same_id_makes_a_duplicate(
    dynamodb_event_store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two writers re-running the same turn (same deterministic event ids) in a race
    store = dynamodb_event_store
    rival = _rival(store)
    sid = _session()
    batch = [_ev(), _ev()]
    real_last_seq = store.last_seq
    raced: list[bool] = []

    def racing_last_seq(session_id: str) -> int:
        seen = real_last_seq(session_id)
        if not raced:
            raced.append(True)
            rival.append(session_id, batch)
        return seen

    monkeypatch.setattr(store, "last_seq", racing_last_seq)
    # When our writer's append comes second
    with pytest.raises(DuplicateEvent) as raised:
        store.append(sid, batch)
    # Then both ids are reported and the log holds the batch once
    assert sorted(raised.value.event_ids) == sorted(e.id for e in batch)
    assert [e.id for e in store.read(sid)] == [e.id for e in batch]


def test_batches_over_the_transaction_limit_are_refused(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given a batch one event over what a transaction holds
    sid = _session()
    too_many = [_ev() for _ in range(MAX_EVENTS_PER_APPEND + 1)]
    # When it is appended, Then it is refused and nothing is written; the maximum itself goes through
    with pytest.raises(ValueError):
        dynamodb_event_store.append(sid, too_many)
    assert dynamodb_event_store.last_seq(sid) == 0
    assert len(dynamodb_event_store.append(sid, too_many[:MAX_EVENTS_PER_APPEND])) == MAX_EVENTS_PER_APPEND


def test_aws_failures_become_service_unavailable(dynamodb_event_store: DynamoDbEventStore) -> None:
    # Given a store whose table does not exist
    store = DynamoDbEventStore(
        table_name="events-missing",
        bucket_name=dynamodb_event_store.bucket_name,
        dynamodb_client=dynamodb_event_store.dynamodb,
        s3_client=dynamodb_event_store.s3,
    )
    sid = _session()
    # When it is used, Then the botocore errors surface as the platform's ServiceUnavailable
    with pytest.raises(ServiceUnavailable):
        store.read(sid)
    with pytest.raises(ServiceUnavailable):
        store.append(sid, [_ev()])
    with pytest.raises(ServiceUnavailable):
        store.get(sid, "sevt_x")


class _Replica:
    """The store's DynamoDB client, with the eventually consistent Queries answered from a replica that `lag` edits
    (drops items it has not seen yet)."""

    def __init__(self, client: object) -> None:
        self.client = client
        self.lag: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = lambda items: items
        self.consistent: list[bool] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def query(self, **kwargs: Any) -> Any:
        out = self.client.query(**kwargs)  # type: ignore[attr-defined]
        self.consistent.append(bool(kwargs.get("ConsistentRead")))
        if not kwargs.get("ConsistentRead"):
            out["Items"] = self.lag(out["Items"])
        return out


def test_a_tail_read_may_lag_behind_the_newest_events_but_never_skips_one(
    dynamodb_event_store: DynamoDbEventStore,
) -> None:
    # Given a log of five events, and a reader whose eventually consistent reads go to a replica
    sid = _session()
    dynamodb_event_store.append(sid, [_ev(n=n) for n in range(1, 6)])
    replica = _Replica(dynamodb_event_store.dynamodb)
    tail = DynamoDbEventStore(
        table_name=dynamodb_event_store.table_name,
        bucket_name=dynamodb_event_store.bucket_name,
        dynamodb_client=replica,  # type: ignore[arg-type]
        s3_client=dynamodb_event_store.s3,
    )

    def seqs_read(after: int) -> tuple[list[int], list[bool]]:
        replica.consistent.clear()
        events = tail.read_tail(sid, after_seq=after)
        assert events == dynamodb_event_store.read(sid, after_seq=after)[: len(events)]
        return [e.seq for e in events], list(replica.consistent)

    def without(*missing: int) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
        return lambda items: [i for i in items if int(i[SK]["N"]) not in missing]

    # When the replica has every event: one eventually consistent Query (half the units of a consistent one)
    assert seqs_read(2) == ([3, 4, 5], [False])
    # When it has not seen the newest yet: what it has, in order (the stream's next poll reads the rest)
    replica.lag = without(5)
    assert seqs_read(2) == ([3, 4], [False])
    replica.lag = without(3, 4, 5)
    assert seqs_read(2) == ([], [False])
    # When it has a later event but not an earlier one (or not the next): the consistent read answers, nothing skipped
    replica.lag = without(4)
    assert seqs_read(2) == ([3, 4, 5], [False, True])
    replica.lag = without(3)
    assert seqs_read(2) == ([3, 4, 5], [False, True])
