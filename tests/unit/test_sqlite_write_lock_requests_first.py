"""This process's SQLite writers take turns with the writes of requests first (sqlite_store.WriteLock).

Under 400 sends beside 400 running turns a send waited ~280 ms for the write lock behind the turns' appends, and
the sends queued behind it for a write thread waited for all of that. A writer under a request's deadline now goes
before every background writer waiting (a harness step, a lease heartbeat)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, WriteLock
from managed_agents.domain.deadline import deadline


def _until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Bounded polling for a thread to reach its wait (a fixed sleep raced a loaded machine's scheduler)."""
    ends = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < ends, "the threads did not reach their waits"
        time.sleep(0.005)


def test_a_requests_write_goes_before_background_writes_already_waiting(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite")
    order: list[str] = []
    release = threading.Event()

    def holder() -> None:
        with db.transaction():
            release.wait(10)

    def writer(name: str, request: bool) -> None:
        if request:
            with deadline(10), db.transaction():
                order.append(name)
        else:
            with db.transaction():
                order.append(name)

    # Given a background write in progress and two more background writes waiting behind it
    lock = db._write_lock
    threads = [threading.Thread(target=holder)]
    threads[0].start()
    _until(lambda: lock._held)
    for n, name in enumerate(("harness 1", "harness 2"), start=1):
        threads.append(threading.Thread(target=writer, args=(name, False)))
        threads[-1].start()
        _until(lambda n=n: len(lock._background_turn._waiters) == n)  # (waiting, in this order)
    # When a request's write arrives, then the write in progress ends
    threads.append(threading.Thread(target=writer, args=("send", True)))
    threads[-1].start()
    _until(lambda: len(lock._urgent_turn._waiters) == 1)
    release.set()
    for t in threads:
        t.join(10)
    # Then the request's write went first, and the background writes after it, in their order
    assert order == ["send", "harness 1", "harness 2"]


def test_a_request_that_gives_up_passes_its_turn_on() -> None:
    lock = WriteLock()
    assert lock.acquire()
    got: list[str] = []

    def background() -> None:
        assert lock.acquire()
        got.append("background")
        lock.release()

    # Given a background writer waiting behind the holder, and a request's writer that waits 0.2 s at most
    waiter = threading.Thread(target=background)
    waiter.start()
    _until(lambda: len(lock._background_turn._waiters) == 1)
    assert not lock.acquire(timeout=0.2, urgent=True)  # it gave up: the holder kept the lock
    # When the holder lets go
    lock.release()
    waiter.join(5)
    # Then the background writer got its turn (no wake-up was lost with the request that left)
    assert got == ["background"]
    assert lock.acquire(timeout=1, urgent=True)
