"""A request's write bounds SQLite's busy wait by its deadline without two `PRAGMA busy_timeout` per write: the
writes' connection keeps a bound that fits the deadlines of the writes that follow; a write with no deadline keeps a
bound within a second of the default wait (the writes share one connection: no PRAGMA back and forth between
request writes and the harness's), and gets the default back once when the bound is shorter."""

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
    """The statements of the writes' connection from now on (made by an empty write if none ran yet)."""
    with db.transaction():
        pass
    assert db._writer is not None
    statements: list[str] = []
    db._writer.conn.set_trace_callback(statements.append)
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
    # And writes with no deadline (the harness's) between them keep it, and the next request write too
    _append(store)
    _append(store)
    with deadline(30.0):
        _append(store)
    assert len(_busy_pragmas(statements)) == 1
    assert store.last_seq("sesn_1") == 13


def test_a_write_with_no_deadline_restores_the_default_once_after_a_short_bound(tmp_path: Path) -> None:
    # Given a write under a 10 s deadline (a bound well below the default)
    db = SqliteDatabase(tmp_path / "db.sqlite")
    store = SqliteEventStore(db)
    statements = _traced(db)
    with deadline(10.0):
        _append(store)
    # When two writes with no deadline follow
    _append(store)
    _append(store)
    # Then the first restored the default, once
    assert _busy_pragmas(statements)[1:] == [f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}"]


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
    # And a nearly spent deadline does not leave the writes that follow a short wait: the default is back
    assert db._writer is not None
    statements: list[str] = []
    db._writer.conn.set_trace_callback(statements.append)
    _append(store)
    assert _busy_pragmas(statements) in ([], [f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}"])
    assert db._writer.busy_ms == BUSY_TIMEOUT_MS
