"""The write transactions of a process share one SQLite connection, whichever thread runs them (its page cache stays
warm: in WAL mode a connection drops its cache when another connection committed since its last transaction), and a
thread's reads inside its transaction still see what the transaction wrote."""

from __future__ import annotations

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
