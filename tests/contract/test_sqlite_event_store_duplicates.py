"""The SQLite event store finds a duplicate append by the unique index on (session_id, id), not by a read before
every insert: a good append runs no query for duplicates, a batch logged already is still a DuplicateEvent (the
contract's tests), and an id repeated inside one batch is an error of the batch, not a duplicate of the log (which
its caller would take for "logged already")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.domain.errors import DuplicateEvent
from managed_agents.domain.events import NewEvent


def _store(tmp_path: Path) -> tuple[SqliteEventStore, SqliteDatabase]:
    db = SqliteDatabase(tmp_path / "s.db")
    return SqliteEventStore(db), db


def test_a_good_append_reads_nothing_for_duplicates(tmp_path: Path) -> None:
    store, db = _store(tmp_path)
    store.append("s1", [NewEvent("e0", "user.message")])  # (the writer's connection exists from here)
    assert db._writer is not None
    statements: list[str] = []
    db._writer.conn.set_trace_callback(statements.append)
    # When a batch of new events is appended
    store.append("s1", [NewEvent("e1", "user.message"), NewEvent("e2", "session.status_idle")])
    db._writer.conn.set_trace_callback(None)
    # Then no statement looked the ids up first
    assert statements and not [s for s in statements if "id IN" in s]
    assert store.last_seq("s1") == 3


def test_an_id_twice_in_one_batch_is_not_a_duplicate_of_the_log(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.append("s1", [NewEvent("e0", "user.message")])
    # When a batch holds one new id twice
    with pytest.raises(sqlite3.IntegrityError):
        store.append("s1", [NewEvent("e1", "user.message"), NewEvent("e1", "user.message")])
    # Then nothing of it was appended, and a batch with a logged id is still a duplicate
    assert store.last_seq("s1") == 1
    with pytest.raises(DuplicateEvent) as raised:
        store.append("s1", [NewEvent("e2", "user.message"), NewEvent("e0", "user.message")])
    assert raised.value.event_ids == ["e0"]
    assert store.last_seq("s1") == 1
