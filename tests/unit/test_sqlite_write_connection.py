"""The write transactions of a process share one SQLite connection, whichever thread runs them (its page cache stays
warm: in WAL mode a connection drops its cache when another connection committed since its last transaction), and a
thread's reads inside its transaction still see what the transaction wrote."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id


def _append(store: SqliteEventStore, session_id: str) -> None:
    store.append(session_id, [NewEvent(new_id("event"), "user.message", {})])


def test_writes_from_several_threads_go_through_one_connection(tmp_path: Path) -> None:
    # Given a database with one write done, the writes' connection traced
    db = SqliteDatabase(tmp_path / "db.sqlite")
    store = SqliteEventStore(db)
    _append(store, "sesn_0")
    assert db._writer is not None
    statements: list[str] = []
    db._writer.conn.set_trace_callback(statements.append)
    # When four threads append to their own sessions
    threads = [threading.Thread(target=_append, args=(store, f"sesn_{i}")) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every thread's transaction ran on that connection, and every append is stored
    assert sum(s.startswith("BEGIN IMMEDIATE") for s in statements) == 4
    assert sum(s.startswith("COMMIT") for s in statements) == 4
    assert [store.last_seq(f"sesn_{i}") for i in range(5)] == [1] * 5


def test_reads_inside_a_transaction_see_its_writes_and_other_threads_do_not_until_it_commits(tmp_path: Path) -> None:
    # Given a database
    db = SqliteDatabase(tmp_path / "db.sqlite")
    seen_elsewhere: list[int] = []

    def count_elsewhere() -> None:
        seen_elsewhere.append(db.query("SELECT COUNT(*) FROM events")[0][0])

    # When a transaction writes an event, then reads on its thread and another thread reads before the commit
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO events (session_id, seq, id, type, processed_at, payload) VALUES ('s', 1, 'e', 't', 'x', '{}')"
        )
        inside = db.query("SELECT COUNT(*) FROM events")[0][0]
        other = threading.Thread(target=count_elsewhere)
        other.start()
        other.join()
    # Then the transaction's thread saw its write, the other thread did not, and everyone sees it once committed
    assert (inside, seen_elsewhere) == (1, [0])
    count_elsewhere()
    assert seen_elsewhere[-1] == 1


def test_close_closes_the_writes_connection_and_a_later_write_opens_another(tmp_path: Path) -> None:
    # Given a database that wrote once
    db = SqliteDatabase(tmp_path / "db.sqlite")
    store = SqliteEventStore(db)
    _append(store, "sesn_1")
    first = db._writer
    # When it is closed (a process about to fork), then written again
    db.close()
    assert db._writer is None
    _append(store, "sesn_1")
    # Then the write ran on a new connection
    assert db._writer is not None and db._writer is not first
    assert store.last_seq("sesn_1") == 2


def test_a_commit_that_fails_leaves_the_shared_connection_ready_for_the_next_write(tmp_path: Path) -> None:
    # Given a table with a deferred foreign key, checked on the writes' connection (a COMMIT that fails leaves
    # SQLite's transaction open: here the deferred check refuses it)
    db = SqliteDatabase(tmp_path / "db.sqlite")
    with db.transaction() as conn:
        conn.execute("CREATE TABLE parents (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE children (parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)")
    assert db._writer is not None
    db._writer.conn.execute("PRAGMA foreign_keys = ON")
    # When a write's COMMIT fails
    try:
        with db.transaction() as conn:
            conn.execute("INSERT INTO children VALUES (42)")
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("the COMMIT should have failed on the deferred foreign key")
    # Then nothing of it is stored, and the next write of any thread begins and commits
    done: list[int] = []

    def write() -> None:
        with db.transaction() as conn:
            conn.execute("INSERT INTO parents VALUES (1)")
        done.append(1)

    t = threading.Thread(target=write)
    t.start()
    t.join(10)
    assert done == [1]
    assert [tuple(r) for r in db.query("SELECT count(*) FROM children")] == [(0,)]
    assert [tuple(r) for r in db.query("SELECT id FROM parents")] == [(1,)]
