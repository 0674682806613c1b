"""Requests first: a server process's background work (harness steps, event-stream fan-out) waits while requests
are being answered, for a bounded time.

One process has one event loop and one GIL. Under a burst (400 event sends at once) every harness thread that a send
woke, and every stream that a send's append woke, competes with the requests still queued for the GIL and the loop:
the last send then waits for most of the turns and fan-out the earlier ones started (bench/mixed_load.py). Here the
embedded server counts the requests it is answering, from the moment a whole request (body included: an upload
still arriving holds nothing back) has arrived until its response starts (`server.EdgeH11Protocol`,
`server.prioritized`); a harness run waits before each step, and a stream before each write, until that count is 0
or `max_wait` passed. The bound keeps turns and streams moving under a steady load, and it breaks any wait of a
request on background work (a request never waits for a stream).

A request whose handler waits by design (a work-queue long poll, `block_ms`) does not count (`counts`), else every
harness step would wait out the bound while a sandbox worker polls. The count is per process: a process's requests
and its background work share that process's GIL, nothing else (`serve --workers N` has one per worker).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress

DEFAULT_MAX_WAIT_SECONDS = 1.0
_LONG_POLLS = ("/work/poll",)


class RequestPriority:
    def __init__(self, max_wait: float = DEFAULT_MAX_WAIT_SECONDS) -> None:
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._pending = 0
        self._quiet = threading.Event()
        self._quiet.set()
        self._waiters: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}

    @staticmethod
    def counts(path: str) -> bool:
        """Whether a request to `path` holds background work back while it is answered (not a long poll)."""
        return not path.endswith(_LONG_POLLS)

    @property
    def pending(self) -> int:
        return self._pending

    def enter(self) -> None:
        with self._lock:
            self._pending += 1
            self._quiet.clear()

    def leave(self) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)
            if self._pending:
                return
            self._quiet.set()
            waiters, self._waiters = self._waiters, {}
        for fut, loop in waiters.items():
            _resolve(loop, fut)

    def wait(self) -> None:
        """On a background thread: until no request is being answered (at most `max_wait`)."""
        if self._pending and self.max_wait > 0:
            self._quiet.wait(self.max_wait)

    async def wait_async(self) -> None:
        """On the event loop: `wait`, without blocking the loop (the requests being waited for run on it)."""
        if not self._pending or self.max_wait <= 0:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._pending:
                return
            self._waiters[fut] = loop
        timer = loop.call_later(self.max_wait, _done, fut)
        try:
            await fut
        finally:
            timer.cancel()
            with self._lock:  # timed out or cancelled: not left behind
                self._waiters.pop(fut, None)


def _done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _resolve(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        _done(fut)
    else:
        with suppress(RuntimeError):  # that loop is closed
            loop.call_soon_threadsafe(_done, fut)


PRIORITY = RequestPriority()  # the process's (module docstring): the server counts requests into it
