"""`managed-agents ...` under a profiler that sees every thread (the harness runs on worker threads).

Used by `_processes.served(profile=...)`; the report goes to $BENCH_PROFILE_OUT when the process exits.

* BENCH_PROFILE=sample: a thread samples `sys._current_frames()` every 5 ms and charges each thread's stack
  with the CPU time that thread used since the previous sample (its per-thread CPU clock), so a thread blocked
  in C (a lock, a socket, SQLite's busy handler) costs nothing. Prints the top functions by self and inclusive
  CPU. Cheap enough to keep the timing honest.
* BENCH_PROFILE=cprofile: a cProfile.Profile per thread (threading.setprofile), merged at exit; exact call
  counts, distorted timings; counts from start-up (imports included), as a running Profile cannot be reset.
* BENCH_PROFILE=none: no profiler (to try BENCH_SWITCH_INTERVAL alone).

BENCH_SERVER_SRC=<dir> serves the `managed_agents` package found in <dir> (a checkout of a baseline commit, e.g.
`git archive <commit> managed_agents | tar -x -C <dir>`) instead of this checkout's, so that a bench can compare
before and after in one time window on a shared machine.

BENCH_SWITCH_INTERVAL sets `sys.setswitchinterval` (seconds) in the server before it starts.

BENCH_TIMING=1 (with any mode, `none` included) times each event send (`POST /v1/sessions/{id}/events`) inside
the server and answers it with an `x-bench-timing` header (`_timing`), so a bench can set the server-side
latency beside the one its client measured, on one worker or several (forked workers inherit the patches).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import cProfile
import io
import itertools
import os
import pstats
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

# BENCH_SERVER_SRC: serve another checkout's code (a baseline, for an A/B run in one time window)
sys.path.insert(0, os.environ.get("BENCH_SERVER_SRC") or str(Path(__file__).resolve().parents[1]))

OUT = Path(os.environ.get("BENCH_PROFILE_OUT", "profile.txt"))
MODE = os.environ.get("BENCH_PROFILE", "sample")
INTERVAL = float(os.environ.get("BENCH_PROFILE_INTERVAL", "0.005"))


def _key(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("site-packages/", "managed_agents/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "managed_agents/":
                path = "managed_agents/" + path
            break
    return f"{path}:{code.co_firstlineno}:{code.co_name}"


class Sampler:
    def __init__(self) -> None:
        self.self_cpu: collections.Counter[str] = collections.Counter()
        self.incl_cpu: collections.Counter[str] = collections.Counter()
        self.by_thread: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _cpu(self, tid: int) -> float | None:
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(tid))
        except (OSError, ProcessLookupError):
            return None

    def _run(self) -> None:
        me = threading.get_ident()
        names: dict[int | None, str] = {}
        while not self._stop.wait(INTERVAL):
            frames = sys._current_frames()
            self.samples += 1
            for tid, frame in frames.items():
                if tid == me:
                    continue
                now = self._cpu(tid)
                if now is None:
                    continue
                used = now - self._last.get(tid, now)
                self._last[tid] = now
                if used <= 0:
                    continue
                if tid not in names:
                    names = {t.ident: t.name for t in threading.enumerate()}
                self.by_thread[names.get(tid, "?").rstrip("0123456789_-() ")] += used
                self.self_cpu[_key(frame)] += used
                seen: set[str] = set()
                f: FrameType | None = frame
                while f is not None:
                    k = _key(f)
                    if k not in seen:
                        seen.add(k)
                        self.incl_cpu[k] += used
                    f = f.f_back

    def reset(self) -> None:
        self.self_cpu.clear()
        self.incl_cpu.clear()
        self.by_thread.clear()
        self.samples = 0

    def report(self) -> str:
        total = max(1e-9, sum(self.by_thread.values()))
        lines = [f"samples={self.samples} interval={INTERVAL} sampled_cpu_s={total:.2f}"]
        lines.append("by thread: " + ", ".join(f"{k}={v * 100 / total:.1f}%" for k, v in self.by_thread.most_common()))
        lines.append("\n== self CPU (innermost frame), % of sampled CPU")
        lines += [f"{v * 100 / total:6.2f}%  {k}" for k, v in self.self_cpu.most_common(60)]
        lines.append("\n== inclusive CPU, % of sampled CPU")
        lines += [f"{v * 100 / total:6.2f}%  {k}" for k, v in self.incl_cpu.most_common(150)]
        return "\n".join(lines) + "\n"


_profiles: list[cProfile.Profile] = []


def _thread_hook(frame: object, event: str, arg: object) -> None:
    sys.setprofile(None)
    prof = cProfile.Profile()
    _profiles.append(prof)
    prof.enable()


def _cprofile_report() -> str:
    out = io.StringIO()
    stats = pstats.Stats(*_profiles, stream=out)
    stats.sort_stats("tottime").print_stats(50)
    stats.sort_stats("cumulative").print_stats(80)
    return out.getvalue()


class _Timing:
    """Where a send's time goes, server side (perf_counter, seconds): `arrived` when the first bytes of its request
    head reached the protocol (data_received; the event loop may have been late to read them, see `lag`), `app`
    when its ASGI task started, `svc_in`/`svc_out` around the service call on its thread (SessionService.send),
    `done` when the response started. `lag`: the worst lateness of a 5 ms loop-lag probe meanwhile."""

    probe = 0.005

    def __init__(self) -> None:
        self.lags: collections.deque[tuple[float, float]] = collections.deque(maxlen=20000)
        self.gcs: collections.deque[tuple[float, float]] = collections.deque(maxlen=20000)  # (end, seconds)
        self._gc_start = 0.0

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            now = time.perf_counter()
            self.gcs.append((now, now - self._gc_start))

    def install(self) -> None:
        import contextvars
        import gc

        gc.callbacks.append(self._gc)

        import managed_agents.api.server as server
        import managed_agents.api.workers as workers
        from managed_agents.services.sessions import SessionService

        current: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("bench_timing", default=None)
        protocol = server.EdgeH11Protocol
        received = protocol.data_received

        def data_received(self: Any, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:
                arrived = time.perf_counter()
                received(self, data)
                if self.cycle is not None and not self.cycle.response_complete:
                    self.cycle.scope["bench.arrived"] = arrived
            else:
                received(self, data)

        protocol.data_received = data_received  # type: ignore[method-assign]
        send = SessionService.send

        def timed_send(self: Any, *args: Any, **kwargs: Any) -> Any:
            marks = current.get()
            if marks is not None:
                marks["svc_in"] = time.perf_counter()
            try:
                return send(self, *args, **kwargs)
            finally:
                if marks is not None:
                    marks["svc_out"] = time.perf_counter()

        SessionService.send = timed_send  # type: ignore[method-assign]
        from managed_agents.adapters.local.sqlite_store import SqliteDatabase

        class TimedLock:
            """The database's write lock, with the send's wait for it added up (`write_lock`)."""

            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def acquire(self, *args: Any, **kwargs: Any) -> bool:
                marks = current.get()
                t0 = time.perf_counter()
                got = bool(self.inner.acquire(*args, **kwargs))
                if marks is not None:
                    marks["write_lock"] = marks.get("write_lock", 0.0) + time.perf_counter() - t0
                return got

            def release(self) -> None:
                self.inner.release()

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

        db_init = SqliteDatabase.__init__

        def timed_db_init(self: Any, *args: Any, **kwargs: Any) -> None:
            db_init(self, *args, **kwargs)
            self._write_lock = TimedLock(self._write_lock)

        SqliteDatabase.__init__ = timed_db_init  # type: ignore[method-assign]
        timing = self

        def wrap(app: Any) -> Any:
            started = False

            async def timed(scope: Any, receive: Any, send_: Any) -> None:
                nonlocal started
                if not started:
                    started = True
                    asyncio.get_running_loop().create_task(timing._probe())
                if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/events"):
                    await app(scope, receive, send_)
                    return
                marks = {"arrived": scope.get("bench.arrived", 0.0), "app": time.perf_counter()}
                current.set(marks)

                async def send_timed(message: Any) -> None:
                    if message["type"] == "http.response.start":
                        marks["done"] = time.perf_counter()
                        header = (b"x-bench-timing", timing.header(marks).encode())
                        message = {**message, "headers": [*message.get("headers", []), header]}
                    await send_(message)

                await app(scope, receive, send_timed)

            return timed

        config = server.uvicorn_config

        def timed_config(app: Any, **kwargs: Any) -> Any:
            return config(wrap(app), **kwargs)

        server.uvicorn_config = timed_config  # type: ignore[assignment]
        workers.uvicorn_config = timed_config  # type: ignore[assignment]

    async def _probe(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.probe)
            now = time.perf_counter()
            self.lags.append((now, now - t - self.probe))

    @staticmethod
    def _since(marks: collections.deque[tuple[float, float]], at: float) -> list[float]:
        """The values recorded since `at`, newest first. A gc callback appends from whichever thread collects, maybe
        while this iterates (a RuntimeError: deque mutated): it just iterates again."""
        while True:
            try:
                return [v for _, v in itertools.takewhile(lambda s: s[0] >= at, reversed(marks))]
            except RuntimeError:
                continue

    def header(self, m: dict[str, float]) -> str:
        arrived = m["arrived"] or m["app"]
        lag = max(self._since(self.lags, arrived), default=0.0)
        gcs = self._since(self.gcs, arrived)
        ms = {
            "total": m["done"] - arrived,
            "queued": m["app"] - arrived,
            "before_svc": m.get("svc_in", m["done"]) - m["app"],
            "svc": m.get("svc_out", 0.0) - m.get("svc_in", 0.0),
            "after_svc": m["done"] - m.get("svc_out", m["done"]),
            "write_lock": m.get("write_lock", 0.0),
            "lag_max": lag,
            "gc": sum(gcs),
            "gc_max": max(gcs, default=0.0),
        }
        return ",".join(f"{k}={v * 1000:.2f}" for k, v in ms.items())


def main() -> None:
    """Profile from start-up; SIGUSR1 restarts the count, SIGUSR2 writes the report (else written at exit)."""
    t0 = time.monotonic()
    written = threading.Event()

    if os.environ.get("BENCH_TIMING") == "1":
        _Timing().install()
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    if MODE == "none":

        def reset() -> None:
            pass

        def report() -> str:
            return f"no profile; switch interval {sys.getswitchinterval()} s\n"
    elif MODE == "cprofile":
        threading.setprofile(_thread_hook)
        main_prof = cProfile.Profile()
        _profiles.append(main_prof)
        main_prof.enable()

        def reset() -> None:  # Profile.clear() on a running profiler loses its data: keep counting from start-up
            pass

        def report() -> str:
            return _cprofile_report()
    else:
        sampler = Sampler()
        sampler.start()
        reset = sampler.reset

        def report() -> str:
            return f"wall={time.monotonic() - t0:.1f}s\n" + sampler.report()

    def write() -> None:
        if not written.is_set():
            written.set()
            OUT.write_text(report())

    def on_reset(signum: int, frame: object) -> None:
        nonlocal t0
        t0 = time.monotonic()
        written.clear()
        reset()

    signal.signal(signal.SIGUSR1, on_reset)
    signal.signal(signal.SIGUSR2, lambda signum, frame: write())
    atexit.register(write)
    # uvicorn re-raises the SIGTERM it handled once it has shut down: exit normally so the report is written
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    from managed_agents.cli import app

    app()


if __name__ == "__main__":
    main()
