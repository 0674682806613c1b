"""The server and the scripted model as separate processes, so a benchmark measures the server, not itself.

`served()` starts `managed-agents scripted-model` and `managed-agents serve` (each its own Python process, on
free loopback ports), waits for both to answer, and stops them with SIGTERM on exit. The server process can
run under a profiler (`profile="sample"` or `"cprofile"`, see `bench/_profiled_serve.py`; its report is
written when the server stops), or be sampled from outside by py-spy (`profile="py-spy"`: native sampling of every
thread, no instrumentation in the server; the report covers the profile window only).
`ProcessCpu` reads a process's CPU seconds from /proc (Linux).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from _common import wait_until

from managed_agents.testing.loopback import free_port

BENCH_DIR = Path(__file__).resolve().parent
_TICKS = os.sysconf("SC_CLK_TCK")


def _cli() -> list[str]:
    exe = shutil.which("managed-agents") or str(Path(sys.executable).parent / "managed-agents")
    return [exe]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_pids(pid: int) -> list[int]:
    """A process and its live descendants (`serve --workers N`: the supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def context_switches(pid: int) -> dict[str, int]:
    """Context switches so far of a process and its live descendants, summed over their live threads: `voluntary`
    (a thread blocked: a lock, the GIL, I/O) and `involuntary` (preempted). A count, not a timing: GIL hand-overs
    between threads show in it whatever the machine's speed. (A thread that ended took its counts with it.)"""
    total = {"voluntary": 0, "involuntary": 0}
    for current in tree_pids(pid):
        for status in Path(f"/proc/{current}/task").glob("*/status"):
            try:
                text = status.read_text()
            except OSError:  # ended meanwhile
                continue
            for line in text.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total["voluntary"] += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    total["involuntary"] += int(line.split()[1])
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live descendants."""
    total = 0.0
    for current in tree_pids(pid):
        try:
            total += cpu_seconds(current)
        except OSError:
            continue
    return total


@dataclass
class Served:
    url: str
    admin_key: str
    data_dir: Path
    server_pid: int
    model_pid: int
    model_url: str
    profile_out: Path | None
    profile_mode: str | None = None
    _spy: subprocess.Popen[bytes] | None = None

    def profile_window(self, start: bool) -> None:
        """Profiled server only: restart the profile (start) or write its report now (end)."""
        if self.profile_out is None:
            return
        if self.profile_mode == "py-spy":
            self._py_spy(start)
        else:
            os.kill(self.server_pid, signal.SIGUSR1 if start else signal.SIGUSR2)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the server, the scripted model and this (client) process."""
        return {
            "server": tree_cpu_seconds(self.server_pid),
            "model": cpu_seconds(self.model_pid),
            "clients": cpu_seconds(os.getpid()),
        }

    def _py_spy(self, start: bool) -> None:
        assert self.profile_out is not None
        raw = self.profile_out.with_suffix(".raw")
        if start:
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            args = [spy, "record", "--pid", str(self.server_pid), "--rate", "200", "--gil", "--format", "raw"]
            self._spy = subprocess.Popen(
                [*args, "--output", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        elif self._spy is not None:
            self._spy.send_signal(signal.SIGINT)
            self._spy.wait(60)
            self._spy = None
            self.profile_out.write_text(collapsed_report(raw.read_text()))


def collapsed_report(collapsed: str, top: int = 70) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks (`a;b;c count` lines)."""
    self_n: dict[str, int] = {}
    incl_n: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")[1:]] or ["?"]  # the first frame is the thread
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + n
        for f in set(frames):
            incl_n[f] = incl_n.get(f, 0) + n
    lines = [f"py-spy samples={total} (idle threads excluded)", "", "== self, % of samples"]
    for title, table in (("", self_n), ("== inclusive, % of samples", incl_n)):
        if title:
            lines += ["", title]
        lines += [
            f"{v * 100 / max(1, total):6.2f}%  {k}"
            for k, v in sorted(table.items(), key=lambda kv: -kv[1])[: top * (1 if table is self_n else 3)]
        ]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module path after site-packages/ or the repo)`."""
    for marker in ("site-packages/", "/managed_agents/", "python3.11/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            path = tail.split(marker, 1)[1] if marker in tail else tail
            return f"{head}({'managed_agents/' if marker == '/managed_agents/' else ''}{path}"
    return frame


# A server starts in a few seconds on a quiet machine and took ~52 s with --workers 2 at load 25: readiness is its own
# word (below), and this bound only catches a server that hangs without exiting.
START_SECONDS = 900.0
READY_LINE = b"Serving on http://"  # `serve` prints it once it listens, with --workers N once every worker serves


def _ready(log: Path, url: str) -> bool:
    """The server said it serves (every worker of `--workers N`: /health alone answers once the first one does)."""
    try:
        said = READY_LINE in log.read_bytes()
    except OSError:
        return False
    return said and _healthy(f"{url}/health")


def _healthy(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=1).status_code == 200
    except httpx2.HTTPError:
        return False


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextmanager
def served(
    *,
    latency_ms: int,
    profile: str | None = None,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    timing: bool = False,
) -> Iterator[Served]:
    """`workers`: the server's processes (`serve --workers`); 1 unless a bench asks, so figures compare across runs
    and machines (serve's own default is the number of cores). `timing`: the server times each event send itself
    and says so in an `x-bench-timing` response header (`_profiled_serve.py`, BENCH_TIMING)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        model_port, port = free_port(), free_port()
        model_url = f"http://127.0.0.1:{model_port}"
        model = stack.enter_context(
            _process(
                [*_cli(), "scripted-model", "--port", str(model_port), "--latency-ms", str(latency_ms)],
                env,
                root / "model.log",
            )
        )
        wait_until(lambda: _healthy(f"{model_url}/health") or model.poll() is not None, timeout=START_SECONDS)
        data_dir = root / "data"
        server_env = {
            **env,
            "ANTHROPIC_BASE_URL": model_url,
            "ANTHROPIC_API_KEY": "bench",
            "MANAGED_AGENTS_LOG_LEVEL": "WARNING",
        }
        profile_out: Path | None = None
        if timing:
            server_env["BENCH_TIMING"] = "1"
        # BENCH_SERVER_SRC (another checkout's code, for an A/B in one window) is honoured by `_profiled_serve.py`
        # only: the plain `managed-agents` entry point runs whatever package this environment installed
        other_src = bool(os.environ.get("BENCH_SERVER_SRC"))
        in_process_profiler = bool(profile) and profile != "py-spy"  # (py-spy samples from outside: its own file)
        if in_process_profiler:
            profile_out = Path(os.environ.get("BENCH_PROFILE_OUT", BENCH_DIR / f"profile-{profile}.txt"))
            server_env["BENCH_PROFILE"] = str(profile)
            server_env["BENCH_PROFILE_OUT"] = str(profile_out)
        elif timing or other_src:  # `_profiled_serve.py` without a profiler
            server_env.setdefault("BENCH_PROFILE", "none")
            server_env["BENCH_PROFILE_OUT"] = str(root / "profile-none.txt")
        if profile == "py-spy":
            profile_out = Path(os.environ.get("BENCH_PROFILE_OUT", BENCH_DIR / "profile-py-spy.txt"))
        profiled_serve = in_process_profiler or timing or other_src
        args = [sys.executable, str(BENCH_DIR / "_profiled_serve.py")] if profiled_serve else _cli()
        server = stack.enter_context(
            _process(
                [*args, "serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", str(workers)],
                server_env,
                root / "server.log",
            )
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _ready(root / "server.log", url) or server.poll() is not None, timeout=START_SECONDS)
            if server.poll() is not None or model.poll() is not None:
                raise RuntimeError("a benchmark process exited early:\n" + _tail(root))
        except TimeoutError as exc:
            raise RuntimeError("a benchmark process did not start:\n" + _tail(root)) from exc
        admin_key = (data_dir / "admin.key").read_text().strip()
        try:
            yield Served(url, admin_key, data_dir, server.pid, model.pid, model_url, profile_out, profile)
        finally:
            if server.poll() is not None:
                print("the server exited during the benchmark:\n" + _tail(root), file=sys.stderr)


def _tail(root: Path) -> str:
    parts = []
    for name in ("server.log", "model.log"):
        path = root / name
        if path.exists():
            parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
    return "\n".join(parts)
