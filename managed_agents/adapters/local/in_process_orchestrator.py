"""The embedded orchestrator: runs `advance()` for each woken session on a worker thread until it parks.

One run per session at a time; a wake during a run marks it dirty so it goes round once more. Retry backoff
waits on the session's cancel token, so an interrupt cuts it short; tool waits get a timer that wakes the
session at the deadline. On start-up `recover()` wakes every session the store says was running, which is how
a turn interrupted by a crash (kill -9) finishes after a restart.

With `leases` (adapters/local/run_lease.py) a run holds the session's run lease, so several server processes on
one data dir (`serve --workers N`) never run one session at once: a wake that finds the lease held elsewhere nudges
that owner instead, `take_over` picks up sessions whose owner died, and a run whose lease was lost stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from managed_agents.adapters.local.run_lease import LeaseLost
from managed_agents.harness.turn import (
    HarnessDeps,
    Outcome,
    Parked,
    RetryAfter,
    RunAgain,
    WaitForTools,
    advance,
)

if TYPE_CHECKING:
    from managed_agents.adapters.local.run_lease import Lease, SqliteRunLeases

log = logging.getLogger("managed_agents.orchestrator")


class StepSlots:
    """How many harness steps of this process run Python at once: a step holds a slot while it runs and gives it back
    around each wait on something outside the process (a model request, an MCP call, a web fetch: `HarnessDeps.waiting`,
    which the orchestrator sets to `released`).

    One process runs Python one thread at a time (the GIL). A hundred sessions' steps running at once mostly took
    turns at the GIL, handing it over at every SQLite call, and the hand-overs cost more than the work. With two
    slots, bench/concurrent_sessions.py (3 alternating pairs): server CPU per turn 5.58 -> 4.85 ms (mean), voluntary
    context switches per turn 87-116 -> 57-71. Two, not one: a step writing to SQLite (the GIL released) leaves the
    other to run. Requests are not steps: they never wait here.

    A slot is waited for at most `wait_seconds`, then the step runs without one: a wait the harness does not mark
    (a blocking call that should give the slot back and does not) costs the other steps that bound, never a stall.
    The bound must exceed the queue a burst makes: at 0.1 s, a hundred sessions' steps mostly ran without a slot
    (context switches 80-93 per turn, no gain)."""

    def __init__(self, slots: int, wait_seconds: float) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._wait = wait_seconds
        self._local = threading.local()

    def holding(self) -> bool:
        """Whether the calling thread holds a slot."""
        return bool(getattr(self._local, "held", False))

    @contextmanager
    def held(self) -> Iterator[None]:
        """A step: a slot taken (or the wait given up) for its duration."""
        got = self._slots.acquire(timeout=self._wait)
        self._local.held = got
        try:
            yield
        finally:
            if self._local.held:
                self._slots.release()
            self._local.held = False

    @contextmanager
    def released(self) -> Iterator[None]:
        """A step's wait outside the process: its slot given back meanwhile (nothing when it holds none)."""
        if not self.holding():
            yield
            return
        self._local.held = False
        self._slots.release()
        try:
            yield
        finally:
            self._local.held = self._slots.acquire(timeout=self._wait)


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
    nudge: bool = True  # when another process holds the lease: ask it to run once more (False: a takeover scan)
    lost: bool = False  # the lease went to another process: stop after the current step
    claimed: Lease | None = None  # the lease the wake's send claimed for this run (run_lease.py `claim`)


class InProcessOrchestrator:
    def __init__(
        self,
        deps: HarnessDeps,
        *,
        max_workers: int = 256,
        on_error: Callable[[str, BaseException], None],
        leases: SqliteRunLeases | None = None,
        yield_to: Callable[[], object] | None = None,
        step_slots: int = 2,
        step_slot_wait_seconds: float = 1.0,
    ):
        self.deps = deps
        self.leases = leases
        self.slots = StepSlots(step_slots, step_slot_wait_seconds)
        deps.waiting = self.slots.released  # the steps' waits outside the process give their slot back
        # before each step (the lease's acquisition included): the server's requests first (request_priority.py)
        self.yield_to = yield_to or (lambda: None)
        self.interrupt_hooks: list[Callable[[str], object]] = []
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="harness")
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._closed = False
        self._on_error = on_error

    def wake(self, session_id: str, *, nudge: bool = True) -> None:
        # (a claim a run does not take, the session running here already or the process closing, expires unrenewed;
        # this process's run acquires it again as its own)
        claimed = self.leases.take_claim(session_id) if self.leases is not None else None
        with self._lock:
            if self._closed:
                return
            run = self._runs.get(session_id)
            if run is not None:
                run.dirty = True
                return
            run = self._runs[session_id] = _Run(nudge=nudge, claimed=claimed)
        self._executor.submit(self._drive, session_id, run)

    def take_over(self, session_id: str) -> None:
        """Run the session if no live process holds it (a crashed owner's, or one due at a tool deadline)."""
        self.wake(session_id, nudge=False)

    def lease_lost(self, session_id: str) -> None:
        """The heartbeat found the session's lease taken over: cut the run short (its appends are fenced anyway)."""
        with self._lock:
            run = self._runs.get(session_id)
        if run is not None:
            run.lost = True
            run.token.cancel()

    def interrupt(self, session_id: str) -> None:
        self.cut(session_id)
        for hook in self.interrupt_hooks:  # the other processes' runs of the session (serve --workers N)
            hook(session_id)
        self.wake(session_id)

    def cut(self, session_id: str) -> None:
        """Cut this process's run of the session short (its model request, its retry wait), if it has one."""
        with self._lock:
            run = self._runs.get(session_id)
        if run is not None:
            run.token.cancel()

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
        self.yield_to()
        lease = None
        if self.leases is not None and run.claimed is not None:
            lease, run.claimed = run.claimed, None
            self.leases.adopt(lease)
        elif self.leases is not None:
            lease = self._acquire(session_id, run)
            if lease is None:
                return
        try:
            self._loop(session_id, run, lease)
        finally:
            if self.leases is not None:
                self.leases.fence(None)

    def _acquire(self, session_id: str, run: _Run) -> Lease | None:
        """The session's run lease, fenced on this thread; None when another process holds it (the run is
        dropped: that owner was nudged, or, for a takeover scan, is alive and runs it)."""
        assert self.leases is not None
        try:
            lease = self.leases.acquire(session_id, nudge=run.nudge)
        except Exception:
            log.exception("acquiring the run lease failed", extra={"session_id": session_id})
            lease, retry = None, threading.Timer(1.0, self.wake, args=(session_id,))
            retry.daemon = True
            retry.start()
        if lease is None:
            with self._lock:
                self._runs.pop(session_id, None)
                woken = run.dirty and not run.nudge  # input arrived here during a takeover probe: nudge the owner
            if woken:
                self.wake(session_id)
            return None
        self.leases.fence(lease)
        return lease

    def _loop(self, session_id: str, run: _Run, lease: Lease | None) -> None:
        let_go = False  # the last step let go of the lease with its idle (run_lease.py): another step acquires again
        while True:
            if let_go:
                lease, let_go = self._acquire(session_id, run), False
                if lease is None:
                    return
            try:
                self.yield_to()
                with self.slots.held():
                    outcome: Outcome = advance(session_id, self.deps, run.token)
            except Exception as exc:
                log.exception("harness failed", extra={"session_id": session_id})
                try:
                    self._on_error(session_id, exc)
                except LeaseLost:  # (its report is fenced too: the new owner runs the session from the log)
                    run.lost = True
                outcome = Parked("error")
            except LeaseLost:  # a fenced append: another process took the session over
                run.lost = True
                outcome = Parked("lease lost")
            if lease is not None and self.leases is not None:
                let_go = self.leases.let_go_in_step(lease)
            if run.lost:  # another process runs the session now: it is not ours to release
                log.warning("run lease lost: the session runs elsewhere", extra={"session_id": session_id})
                with self._lock:
                    self._runs.pop(session_id, None)
                return
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
                    run.nudge = run.nudge or let_go  # (acquiring again: as after a release)
                    continue
                if lease is None:
                    self._runs.pop(session_id, None)
                    return
            assert self.leases is not None
            # the tool deadline (or, shutting down, at once) is when another process must look at the session
            wake_at = (
                outcome.deadline.timestamp() + 0.05
                if isinstance(outcome, WaitForTools)
                else time.time()
                if self._closed
                else None
            )
            if let_go and wake_at is None:  # let go already, in the step's idle write
                with self._lock:
                    if not run.dirty or self._closed:
                        self._runs.pop(session_id, None)
                        return
                    run.dirty, run.nudge = False, True
                continue
            let_go = False  # (a lease let go is still this process's until another acquires it: released here)
            again = self.leases.release(lease, wake_at=wake_at)
            if again is not None:  # a wake arrived through another process meanwhile: once more
                lease = again
                continue
            with self._lock:
                if not run.dirty or self._closed:
                    self._runs.pop(session_id, None)
                    return
                run.dirty, run.nudge = False, True
            lease = self._acquire(session_id, run)
            if lease is None:
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
