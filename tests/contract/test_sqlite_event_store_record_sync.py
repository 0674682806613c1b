"""The SQLite event store writes a record change in the append's own transaction (`EventStore.append(sync=)`), so a
reader never sees the session's log ahead of its record; DynamoDB declares that it does not (the caller writes), but
records the sync's outbox (webhook items) in the append's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore, webhook_entry
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore, SqliteResourceStore
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
