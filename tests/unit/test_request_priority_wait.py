"""RequestPriority (adapters/local/request_priority.py): background work waits while requests are answered, at most
its bound, on a thread and on the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

from managed_agents.adapters.local.request_priority import RequestPriority
from tests.own_loop import run_on_own_loop


def test_the_wait_is_bounded_and_ends_when_the_last_request_is_answered() -> None:
    priority = RequestPriority(max_wait=0.2)
    t0 = time.monotonic()
    priority.wait()  # nothing pending: no wait
    assert time.monotonic() - t0 < 0.1
    priority.enter()
    priority.enter()
    t0 = time.monotonic()
    priority.wait()
    assert time.monotonic() - t0 >= 0.2  # the bound
    priority.max_wait = 60
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (priority.wait(), done.set()), daemon=True)
    waiter.start()
    priority.leave()
    assert not done.wait(0.2)  # one request is still being answered
    priority.leave()
    assert done.wait(10)


def test_the_loop_wait_is_bounded_and_ends_when_the_last_request_is_answered() -> None:
    async def scenario() -> None:
        priority = RequestPriority(max_wait=0.2)
        await asyncio.wait_for(priority.wait_async(), 1)  # nothing pending
        priority.enter()
        t0 = time.monotonic()
        await priority.wait_async()
        assert time.monotonic() - t0 >= 0.19  # the bound (the loop's timer)
        priority.max_wait = 60
        waiter = asyncio.ensure_future(priority.wait_async())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        threading.Thread(target=priority.leave).start()  # answered on another thread: the loop's waiter wakes
        await asyncio.wait_for(waiter, 10)
        assert not priority._waiters  # nothing left behind

    run_on_own_loop(scenario())


def test_long_polls_do_not_count() -> None:
    assert RequestPriority.counts("/v1/sessions/s/events")
    assert not RequestPriority.counts("/v1/environments/env_1/work/poll")
