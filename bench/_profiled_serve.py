"""`managed-agents ...` under a profiler that sees every thread (the harness runs on worker threads).

Used by `_processes.served(profile=...)`; the report goes to $BENCH_PROFILE_OUT when the process exits.

* BENCH_PROFILE=sample: a thread samples `sys._current_frames()` every 5 ms and charges each thread's stack
  with the CPU time that thread used since the previous sample (its per-thread CPU clock), so a thread blocked
  in C (a lock, a socket, SQLite's busy handler) costs nothing. Prints the top functions by self and inclusive
  CPU. Cheap enough to keep the timing honest.
* BENCH_PROFILE=cprofile: a cProfile.Profile per thread (threading.setprofile), merged at exit; exact call
  counts, distorted timings; counts from start-up (imports included), as a running Profile cannot be reset.
* BENCH_PROFILE=none: no profiler (to try BENCH_SWITCH_INTERVAL alone).

BENCH_SWITCH_INTERVAL sets `sys.setswitchinterval` (seconds) in the server before it starts.
"""

from __future__ import annotations

import atexit
import collections
import cProfile
import io
import os
import pstats
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main() -> None:
    """Profile from start-up; SIGUSR1 restarts the count, SIGUSR2 writes the report (else written at exit)."""
    t0 = time.monotonic()
    written = threading.Event()

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
