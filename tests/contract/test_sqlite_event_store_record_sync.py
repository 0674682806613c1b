"""The SQLite event store writes a record change in the append's own transaction (`EventStore.append(sync=)`), so a
reader never sees the session's log ahead of its record; DynamoDB declares that it does not (the caller writes), but
records the sync's outbox (webhook items) in the append's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore, webhook_entry
from managed_agents.adapters.local.sqlite_store import (
    SqliteDatabase,
    SqliteEventStore,
    SqliteOutbox,
    SqliteResourceStore,
)
from managed_agents.domain.errors import DuplicateEvent
from managed_agents.domain.events import NewEvent, StoredEvent
from managed_agents.ports import OutboxEntry, Record, RecordSync
from tests.contract.conftest import moto_event_store


def _stores(tmp_path: Path) -> tuple[SqliteEventStore, SqliteResourceStore]:
    db = SqliteDatabase(tmp_path / "s.db")
    resources = SqliteResourceStore(db)
    resources.insert(Record("session", "ws", "s1", {"status": "idle"}, datetime.now(UTC), attrs={"status": "idle"}))
    return SqliteEventStore(db), resources


def _count(r: Record, stored: Sequence[StoredEvent]) -> None:
    r.doc["status"] = "running"
    r.attrs["status"] = "running"
    r.doc["seqs"] = [e.seq for e in stored]


def test_the_record_change_is_written_with_the_events(tmp_path: Path) -> None:
    # Given a session record and its empty log
    events, resources = _stores(tmp_path)
    # When two events are appended with a change of the record
    sync = RecordSync("session", "ws", "s1", _count)
    stored = events.append("s1", [NewEvent("e1", "user.message", {}), NewEvent("e2", "x", {})], sync=sync)
    # Then the change saw the stored events and the record holds it at the next revision
    rec = resources.get("session", "ws", "s1")
    assert rec is not None and rec.rev == 2 and rec.doc["seqs"] == [1, 2] == [e.seq for e in stored]
    assert rec.attrs["status"] == "running" and sync.written is not None and sync.written.rev == 2
    assert events.atomic_record_sync


def test_a_change_that_fails_rolls_the_events_back(tmp_path: Path) -> None:
    # Given a change that raises inside the transaction
    events, resources = _stores(tmp_path)

    def broken(r: Record, stored: Sequence[StoredEvent]) -> None:
        raise RuntimeError("boom")

    # When the append runs with it
    with pytest.raises(RuntimeError):
        events.append("s1", [NewEvent("e1", "user.message", {})], sync=RecordSync("session", "ws", "s1", broken))
    # Then neither the events nor the record changed
    assert events.last_seq("s1") == 0
    rec = resources.get("session", "ws", "s1")
    assert rec is not None and rec.rev == 1 and rec.doc == {"status": "idle"}


def test_a_duplicate_batch_changes_nothing(tmp_path: Path) -> None:
    # Given a logged event
    events, resources = _stores(tmp_path)
    events.append("s1", [NewEvent("e1", "user.message", {})])
    # When the same id is appended again with a change
    sync = RecordSync("session", "ws", "s1", _count)
    with pytest.raises(DuplicateEvent):
        events.append("s1", [NewEvent("e1", "user.message", {})], sync=sync)
    # Then the record is untouched
    rec = resources.get("session", "ws", "s1")
    assert rec is not None and rec.rev == 1 and sync.written is None


def test_a_missing_record_is_skipped(tmp_path: Path) -> None:
    events, _ = _stores(tmp_path)
    sync = RecordSync("session", "ws", "gone", _count)
    assert [e.seq for e in events.append("gone", [NewEvent("e1", "x", {})], sync=sync)] == [1]
    assert sync.written is None


def test_dynamodb_says_the_caller_writes_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the DynamoDB adapter, which does not put the record in the append's transaction
    with moto_event_store(monkeypatch) as store:
        sync = RecordSync("session", "ws", "s1", _count)
        # When an append carries a change, the events are logged and the change is not applied
        assert [e.seq for e in store.append("s1", [NewEvent("e1", "x", {})], sync=sync)] == [1]
        assert not store.atomic_record_sync and sync.written is None


def _webhook_items(store: DynamoDbEventStore) -> list[OutboxEntry]:
    items = store.dynamodb.scan(TableName=store.table_name)["Items"]
    return [e for e in (webhook_entry(i) for i in items) if e is not None]


def _created(sid: str) -> OutboxEntry:
    return OutboxEntry("", sid, f"revt_{sid}", "session.created", datetime.now(UTC), "ws")


def test_dynamodb_records_the_outbox_in_the_appends_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    with moto_event_store(monkeypatch) as store:
        assert store.atomic_outbox
        # Given an event already in the log
        store.append("s1", [NewEvent("e1", "user.message", {})])
        # When an append that carries session.created fails (a duplicate id cancels its transaction)
        with pytest.raises(DuplicateEvent):
            store.append(
                "s1",
                [NewEvent("e1", "user.message", {})],
                sync=RecordSync("s", "ws", "s1", _count, outbox=[_created("s1")]),
            )
        # Then no webhook item was written
        assert _webhook_items(store) == []
        # When appends that carry one succeed (one of 2 events, one of 50, whose transaction has no room left)
        for sid, n in (("s2", 2), ("s3", 50)):
            batch = [NewEvent(f"{sid}-{i}", "user.message", {}) for i in range(n)]
            sync = RecordSync("session", "ws", sid, _count, outbox=[_created(sid)])
            assert [e.seq for e in store.append(sid, batch, sync=sync)] == list(range(1, n + 1))
        # Then each session's created event is a webhook item (what the stream carries to the relay), once
        assert sorted((e.type, e.session_id, e.event_id) for e in _webhook_items(store)) == [
            ("session.created", "s2", "revt_s2"),
            ("session.created", "s3", "revt_s3"),
        ]


def test_a_sync_that_says_its_fields_sets_them_in_place_and_keeps_the_rest(tmp_path: Path) -> None:
    # Given a session record with fields the sync does not name (its agent snapshot, metadata), and a webhook entry
    events, resources = _stores(tmp_path)
    rec = resources.get("session", "ws", "s1")
    assert rec is not None
    rec.doc.update(agent={"name": "a", "tools": [{"type": "x"}]}, metadata={"k": "v"}, usage={"input_tokens": 1})
    resources.replace(rec, expected_rev=1)
    seen: list[list[int]] = []

    def fields(stored: Sequence[StoredEvent]) -> tuple[dict[str, object], dict[str, str | int | None]]:
        seen.append([e.seq for e in stored])
        doc: dict[str, object] = {"status": "idle", "usage": {"input_tokens": 7, "nested": [1, "two"]}, "gone": None}
        return doc, {"status": "idle"}

    def whole(r: Record, stored: Sequence[StoredEvent]) -> None:  # pragma: no cover - a patching store never calls it
        raise AssertionError("the whole record was read and rewritten")

    entry = OutboxEntry("k1", "s1", "e1", "session.status_idled", datetime.now(UTC))
    # When events are appended with the sync
    sync = RecordSync("session", "ws", "s1", whole, fields=fields, outbox=[entry])
    stored = events.append("s1", [NewEvent("e1", "session.status_idle", {})], sync=sync)
    # Then the fields were computed from the stored events and set, the rest kept, at the next revision
    after = resources.get("session", "ws", "s1")
    assert after is not None and seen == [[e.seq for e in stored]] and events.patch_record_sync
    assert after.rev == 3 and sync.patched_rev == 3 and sync.written is None
    assert after.doc["usage"] == {"input_tokens": 7, "nested": [1, "two"]} and after.doc["gone"] is None
    assert after.doc["agent"] == {"name": "a", "tools": [{"type": "x"}]} and after.doc["metadata"] == {"k": "v"}
    assert after.doc["status"] == after.attrs["status"] == "idle"
    assert [(e.event_id, e.type) for e in SqliteOutbox(events.db).pending()] == [("e1", "session.status_idled")]


def test_a_patch_of_a_missing_record_is_skipped_and_a_failing_one_rolls_back(tmp_path: Path) -> None:
    events, resources = _stores(tmp_path)
    # Given a sync of a record that is not there: the events are appended, nothing else
    gone = RecordSync("session", "ws", "gone", _count, fields=lambda stored: ({"status": "idle"}, {}))
    assert [e.seq for e in events.append("gone", [NewEvent("e1", "x", {})], sync=gone)] == [1]
    assert gone.patched_rev is None and gone.written is None

    # And a sync whose fields cannot be computed appends nothing and changes nothing
    def broken(stored: Sequence[StoredEvent]) -> tuple[dict[str, object], dict[str, str | int | None]]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        events.append("s1", [NewEvent("e2", "x", {})], sync=RecordSync("session", "ws", "s1", _count, fields=broken))
    rec = resources.get("session", "ws", "s1")
    assert events.last_seq("s1") == 0 and rec is not None and rec.rev == 1 and rec.doc == {"status": "idle"}


def test_a_patch_unless_the_record_already_holds_a_value_sets_nothing_then(tmp_path: Path) -> None:
    # Given an idle session record with an agent snapshot the patch does not name
    events, resources = _stores(tmp_path)
    rec = resources.get("session", "ws", "s1")
    assert rec is not None
    rec.doc["agent"] = {"name": "a"}
    resources.replace(rec, expected_rev=1)
    entry = OutboxEntry("k1", "s1", "e1", "session.status_run_started", datetime.now(UTC))

    def running(stored: Sequence[StoredEvent]) -> tuple[dict[str, object], dict[str, str | int | None]]:
        return {"status": "running"}, {"status": "running"}

    def mark(status: str) -> RecordSync:
        return RecordSync("session", "ws", "s1", _count, fields=running, unless=("status", ("running", status)))

    # When a send marks it running unless it is active
    first = mark("rescheduling")
    events.append("s1", [NewEvent("e1", "user.message", {})], sync=first)
    # Then it is marked in place (the rest kept), and the outbox entry recorded
    after = resources.get("session", "ws", "s1")
    assert after is not None and after.rev == 3 and first.patched_rev == 3
    assert after.doc == {"status": "running", "agent": {"name": "a"}} and after.attrs["status"] == "running"
    # And when the record is active by the time of the next such append (rescheduling: the harness's retry), the
    # status is left as it is, while the revision still moves and the outbox entry is still recorded
    after.doc["status"] = after.attrs["status"] = "rescheduling"
    resources.replace(after, expected_rev=3)
    second = RecordSync(
        "session", "ws", "s1", _count, fields=running, unless=("status", ("running", "rescheduling")), outbox=[entry]
    )
    events.append("s1", [NewEvent("e2", "user.message", {})], sync=second)
    kept = resources.get("session", "ws", "s1")
    assert kept is not None and kept.rev == 5 and second.patched_rev == 5
    assert kept.doc["status"] == kept.attrs["status"] == "rescheduling"
    assert [e.event_id for e in SqliteOutbox(events.db).pending()] == ["e1"]
