"""A request's write bounds SQLite's busy wait by its deadline without two `PRAGMA busy_timeout` per write: the
thread's connection keeps a bound that fits the deadlines of the writes that follow, and a write with no deadline
gets the default wait back once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from managed_agents.adapters.local.sqlite_store import BUSY_TIMEOUT_MS, SqliteDatabase, SqliteEventStore
from managed_agents.domain.deadline import deadline
from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id


def _traced(db: SqliteDatabase) -> list[str]:
    statements: list[str] = []
    db._conn().set_trace_callback(statements.append)
    return statements


def _busy_pragmas(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("PRAGMA busy_timeout")]


def _append(store: SqliteEventStore) -> None:
    store.append("sesn_1", [NewEvent(new_id("event"), "user.message", {})])


def test_request_writes_set_the_busy_wait_once_and_background_writes_restore_it_once(tmp_path: Path) -> None:
    # Given a database whose connection's statements are traced
    db = SqliteDatabase(tmp_path / "db.sqlite")
    store = SqliteEventStore(db)
    statements = _traced(db)
    # When ten writes run under request deadlines of 30 s
    for _ in range(10):
        with deadline(30.0):
            _append(store)
    # Then the busy wait was bounded once, below the time left
    (bound,) = _busy_pragmas(statements)
    assert int(bound.split("=")[1]) < 30_000
    # And two writes with no deadline (the harness's) restore the default once
    _append(store)
    _append(store)
    assert _busy_pragmas(statements)[1:] == [f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}"]
    assert store.last_seq("sesn_1") == 12


@pytest.mark.parametrize("seconds", [1.5, 0.3])
def test_a_write_under_a_deadline_still_gives_up_before_it_when_another_process_writes(
    tmp_path: Path, seconds: float
) -> None:
    # Given another connection (another process's) holding the database's write lock
    db = SqliteDatabase(tmp_path / "db.sqlite")
    store = SqliteEventStore(db)
    _append(store)
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        # When a request's write runs with `seconds` left
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable), deadline(seconds):
            _append(store)
        # Then it gave up within its deadline, nothing written
        assert time.monotonic() - started <= seconds + 0.2
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.last_seq("sesn_1") == 1
    # And a nearly spent deadline does not leave the thread's reads and writes a short wait: the default is back
    statements = _traced(db)
    _append(store)
    assert _busy_pragmas(statements) in ([], [f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}"])
    assert db._local.busy_ms == BUSY_TIMEOUT_MS
