"""Writers in several processes on one database file (`serve --workers N`, the `keys` CLI beside a server) hand the
write over through `FileWriteLock` (an flock beside the database), not through SQLite's polling busy handler: a
write waits for another process's transaction and goes on when it ends; under a request's deadline it gives up with
ServiceUnavailable and nothing written; a forked process has a lock of its own, not its parent's."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from managed_agents.adapters.local.sqlite_store import FileWriteLock, SqliteDatabase, SqliteEventStore
from managed_agents.domain.deadline import deadline
from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id

# another process takes the lock the way a server's writer does, says so, and holds it until its stdin closes
_HOLDER = """
import sys
from managed_agents.adapters.local.sqlite_store import FileWriteLock
lock = FileWriteLock(sys.argv[1])
assert lock.acquire()
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


def _append(store: SqliteEventStore) -> None:
    store.append("sesn_1", [NewEvent(new_id("event"), "user.message", {})])


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A process holding the write lock of tmp_path/db.sqlite until the test lets go (`.stdin.close()`)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "db.sqlite")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    proc.wait(timeout=10)


def test_a_write_waits_for_another_processes_transaction_and_goes_on_when_it_ends(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    # Given a database whose write lock another process holds
    store = SqliteEventStore(SqliteDatabase(tmp_path / "db.sqlite"))
    # When a write with no deadline (the harness's) starts
    done = threading.Event()
    writer = threading.Thread(target=lambda: (_append(store), done.set()), daemon=True)
    writer.start()
    # Then it waits while the other process holds the lock
    assert not done.wait(0.5)
    assert store.last_seq("sesn_1") == 0
    # And it commits once the other process lets go
    assert holder.stdin is not None
    holder.stdin.close()
    assert done.wait(10)
    assert store.last_seq("sesn_1") == 1


def test_a_request_write_gives_up_at_its_deadline_with_nothing_written(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    # Given a database whose write lock another process holds
    store = SqliteEventStore(SqliteDatabase(tmp_path / "db.sqlite"))
    # When a request's write runs under a short deadline
    with pytest.raises(ServiceUnavailable, match="busy with another write"), deadline(0.3):
        _append(store)
    # Then nothing was written, and this process's lock is free again: the next write goes through once the other
    # process is done
    assert store.last_seq("sesn_1") == 0
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=10)
    _append(store)
    assert store.last_seq("sesn_1") == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_process_has_a_lock_of_its_own(tmp_path: Path) -> None:
    # Given a lock this process opened and holds
    lock = FileWriteLock(str(tmp_path / "db.sqlite"))
    assert lock.acquire()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the same object, inherited; it must not take its parent's lock as its own
        try:
            os.write(write, b"1" if lock.acquire(timeout=0.3) else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
        lock.release()
    # Then the child waited for it and gave up at its timeout
    assert answer == b"0"
    # And once free, another process takes it at once
    assert lock.acquire(timeout=0)
    lock.release()
