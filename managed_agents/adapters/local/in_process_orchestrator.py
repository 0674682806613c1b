"""The embedded orchestrator: runs `advance()` for each woken session on a worker thread until it parks.

One run per session at a time; a wake during a run marks it dirty so it goes round once more. Retry backoff
waits on the session's cancel token, so an interrupt cuts it short; tool waits get a timer that wakes the
session at the deadline. On start-up `recover()` wakes every session the store says was running, which is how
a turn interrupted by a crash (kill -9) finishes after a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from managed_agents.harness.turn import (
    HarnessDeps,
    Outcome,
    Parked,
    RetryAfter,
    RunAgain,
    WaitForTools,
    advance,
)

log = logging.getLogger("managed_agents.orchestrator")


class ThreadCancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # closing an already closed stream, etc.
                log.debug("cancel callback failed", exc_info=True)

    def on_cancel(self, callback: object) -> None:
        assert callable(callback)
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@dataclass
class _Run:
    token: ThreadCancelToken = field(default_factory=ThreadCancelToken)
    dirty: bool = False


class InProcessOrchestrator:
    def __init__(self, deps: HarnessDeps, *, max_workers: int = 256, on_error: Callable[[str, BaseException], None]):
        self.deps = deps
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="harness")
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._closed = False
        self._on_error = on_error

    def wake(self, session_id: str) -> None:
        with self._lock:
            if self._closed:
                return
            run = self._runs.get(session_id)
            if run is not None:
                run.dirty = True
                return
            run = self._runs[session_id] = _Run()
        self._executor.submit(self._drive, session_id, run)

    def interrupt(self, session_id: str) -> None:
        with self._lock:
            run = self._runs.get(session_id)
        if run is not None:
            run.token.cancel()
        self.wake(session_id)

    def forget(self, session_id: str) -> None:
        with self._lock:
            run = self._runs.get(session_id)
            timer = self._timers.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        if run is not None:
            run.token.cancel()

    def idle(self) -> bool:
        with self._lock:
            return not self._runs

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
            timers = list(self._timers.values())
        for t in timers:
            t.cancel()
        for r in runs:
            r.token.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _drive(self, session_id: str, run: _Run) -> None:
        while True:
            try:
                outcome: Outcome = advance(session_id, self.deps, run.token)
            except Exception as exc:
                log.exception("harness failed", extra={"session_id": session_id})
                self._on_error(session_id, exc)
                outcome = Parked("error")
            if run.token.cancelled:
                run.token = ThreadCancelToken()
            if self._closed:
                outcome = Parked("shutdown")
            if isinstance(outcome, RunAgain):
                continue
            if isinstance(outcome, RetryAfter):
                run.token.wait(outcome.seconds)
                continue
            if isinstance(outcome, WaitForTools):
                self._schedule(session_id, outcome)
            with self._lock:
                if run.dirty and not self._closed:
                    run.dirty = False
                    continue
                self._runs.pop(session_id, None)
                return

    def _schedule(self, session_id: str, outcome: WaitForTools) -> None:
        delay = max(0.0, (outcome.deadline - self.deps.clock.now()).total_seconds()) + 0.05
        timer = threading.Timer(delay, self.wake, args=(session_id,))
        timer.daemon = True
        with self._lock:
            old = self._timers.pop(session_id, None)
            if self._closed:
                return
            self._timers[session_id] = timer
        if old is not None:
            old.cancel()
        timer.start()
