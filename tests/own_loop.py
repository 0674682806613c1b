"""Run a coroutine to its end on a thread and event loop of its own.

`asyncio.run` refuses to start in a thread whose event loop is marked running, and an xdist worker's main thread can
be left that way by an earlier test in the same worker (Playwright's sync API runs a loop there): a test that calls
`asyncio.run` directly then fails with "asyncio.run() cannot be called from a running event loop", depending only on
which tests ran before it on its worker."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_on_own_loop(coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=timeout)
