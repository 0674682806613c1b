"""A caller's deadline, visible to what it calls: the API bounds how long a request may wait on a store.

The API's door sets it for the request (api/edge.py) and it travels into the worker thread that runs the service
call (anyio copies the context); a store adapter that can wait (SQLite's write lock) waits at most the time left
and then raises ServiceUnavailable with nothing done. Without a deadline (the harness, the CLI) waits are as before.

`on_loop(brief)` marks a call made on the event loop itself (api/edge.py `call_on_loop`): before its first write
commits, a store waits at most `brief` seconds for this process's other writers (short transactions) and not at all
for another process's or a foreign writer's lock; what would wait longer raises WouldWait, nothing done, and the
caller runs the call again on a thread. Once a write of the call committed, the call is past the point of no
return: its later writes wait (within the deadline) as usual.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

_DEADLINE: ContextVar[float | None] = ContextVar("managed_agents_deadline", default=None)


class WouldWait(Exception):
    """Under `on_loop`: the call's first write would have waited longer than it may. Nothing was written."""


@dataclass
class _OnLoop:
    brief: float  # how long a write may wait for this process's other writers
    wrote: bool = False


_ON_LOOP: ContextVar[_OnLoop | None] = ContextVar("managed_agents_on_loop", default=None)


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


@contextmanager
def on_loop(brief: float) -> Iterator[None]:
    """The calls within run on the event loop: their first write waits `brief` seconds at most (module docstring)."""
    token = _ON_LOOP.set(_OnLoop(brief))
    try:
        yield
    finally:
        _ON_LOOP.reset(token)


def loop_bound() -> float | None:
    """How long a write here may wait for this process's other writers (and none for anything else), or None when it
    may wait as usual: outside `on_loop`, or after a write within it committed."""
    state = _ON_LOOP.get()
    return None if state is None or state.wrote else state.brief


def wrote() -> None:
    """A write committed (a store's transaction): within `on_loop`, the later writes may wait as usual."""
    state = _ON_LOOP.get()
    if state is not None:
        state.wrote = True
