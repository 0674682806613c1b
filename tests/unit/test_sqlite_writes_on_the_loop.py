"""A write made on the event loop (domain/deadline.py `on_loop`) waits there only briefly, and only for this process's
own writers, before its first write: otherwise SQLite's store raises WouldWait with nothing written, whoever holds the
database (this process's writer for longer, another process's, a writer that takes neither lock), and the caller
runs it again on a thread (api/edge.py call_on_loop)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from managed_agents.adapters.local.sqlite_store import FileWriteLock, SqliteDatabase
from managed_agents.domain.deadline import WouldWait, deadline, on_loop

BRIEF = 0.05


@pytest.fixture
def db(tmp_path: Path) -> SqliteDatabase:
    d = SqliteDatabase(tmp_path / "db.sqlite")
    with d.transaction() as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
    return d


def _rows(d: SqliteDatabase) -> list[str]:
    return [str(r[0]) for r in d.query("SELECT v FROM t ORDER BY rowid")]


def _write(d: SqliteDatabase, value: str) -> None:
    with d.transaction() as conn:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))


def _refused_on_loop(d: SqliteDatabase) -> float:
    """A write on the loop under a request's deadline, refused (WouldWait): how long it took."""
    started = time.monotonic()
    with pytest.raises(WouldWait), deadline(10), on_loop(BRIEF):
        _write(d, "loop")
    return time.monotonic() - started


def _hold(db: SqliteDatabase) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """(held, release, thread): another thread of this process in a write transaction until `release` is set."""
    release, held = threading.Event(), threading.Event()

    def holder() -> None:
        with db.transaction():
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    return held, release, t


@pytest.fixture
def holding(db: SqliteDatabase) -> Iterator[tuple[threading.Event, threading.Event]]:
    held, release, t = _hold(db)
    yield held, release
    release.set()
    t.join(10)


def test_this_processs_writer_holding_on_makes_it_would_wait_after_the_brief_bound(
    db: SqliteDatabase, holding: tuple[threading.Event, threading.Event]
) -> None:
    # Given another thread in a write transaction for longer than the bound
    held, release = holding
    assert held.wait(10)
    # When a write comes on the loop, then it is refused after about the bound, and nothing was written
    took = _refused_on_loop(db)
    release.set()
    assert BRIEF * 0.9 <= took < 1.0
    assert _rows(db) == []


def test_this_processs_writer_ending_within_the_bound_lets_it_through(
    db: SqliteDatabase, holding: tuple[threading.Event, threading.Event]
) -> None:
    # Given another thread in a write transaction that ends well within the bound
    held, release = holding
    assert held.wait(10)
    threading.Timer(BRIEF / 5, release.set).start()
    # When a write comes on the loop, then it waits for it and goes through
    with deadline(10), on_loop(BRIEF * 4):
        _write(db, "loop")
    assert _rows(db) == ["loop"]


def test_another_processs_writer_makes_it_would_wait_at_once(db: SqliteDatabase, tmp_path: Path) -> None:
    # Given another holder of the processes' lock (its own open file: to flock, another process)
    other = FileWriteLock(str(tmp_path / "db.sqlite"))
    assert other.acquire()
    try:
        took = _refused_on_loop(db)
    finally:
        other.release()
        other.close()
    assert took < BRIEF
    assert _rows(db) == []
    # and once it let go, the same write goes through (this process's lock was given back)
    with deadline(10), on_loop(BRIEF):
        _write(db, "loop")
    assert _rows(db) == ["loop"]


def test_a_writer_that_takes_neither_lock_makes_it_would_wait_without_a_busy_wait(
    db: SqliteDatabase, tmp_path: Path
) -> None:
    # Given a writer that takes no lock of ours (a backup, the sqlite3 shell) holding the database
    foreign = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None, timeout=1)
    foreign.execute("BEGIN IMMEDIATE")
    try:
        # When a write comes on the loop, then SQLite's busy handler does not make it wait out the deadline
        took = _refused_on_loop(db)
    finally:
        foreign.execute("ROLLBACK")
        foreign.close()
    assert took < BRIEF
    assert _rows(db) == []
    # and the connection's busy timeout is back for the writes that may wait
    assert db._writer is not None and db._writer.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 29_000


def test_after_its_first_write_a_call_on_the_loop_waits_as_usual(db: SqliteDatabase) -> None:
    # Given a call on the loop whose first write committed
    with deadline(10), on_loop(BRIEF):
        _write(db, "first")
        # When another thread holds the lock at its second write, for longer than the bound
        held, release, t = _hold(db)
        assert held.wait(10)
        threading.Timer(BRIEF * 4, release.set).start()
        _write(db, "second")  # (WouldWait here would leave the call half done)
    t.join(10)
    # Then the second write waited for it and went through
    assert _rows(db) == ["first", "second"]
