"""A caller's deadline, visible to what it calls: the API bounds how long a request may wait on a store.

The API's door sets it for the request (api/edge.py) and it travels into the worker thread that runs the service
call (anyio copies the context); a store adapter that can wait (SQLite's write lock) waits at most the time left
and then raises ServiceUnavailable with nothing done. Without a deadline (the harness, the CLI) waits are as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("managed_agents_deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the current deadline (never negative), or None when there is none."""
    at = _DEADLINE.get()
    return None if at is None else max(0.0, at - time.monotonic())


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)
