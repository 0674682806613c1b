"""The server and the scripted model as separate processes, so a benchmark measures the server, not itself.

`served()` starts `managed-agents scripted-model` and `managed-agents serve` (each its own Python process, on
free loopback ports), waits for both to answer, and stops them with SIGTERM on exit. The server process can
run under a profiler (`profile="sample"` or `"cprofile"`, see `bench/_profiled_serve.py`); its report is
written when the server stops. `ProcessCpu` reads a process's CPU seconds from /proc (Linux).
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


@dataclass
class Served:
    url: str
    admin_key: str
    data_dir: Path
    server_pid: int
    model_pid: int
    model_url: str
    profile_out: Path | None

    def profile_window(self, start: bool) -> None:
        """Profiled server only: restart the profile (start) or write its report now (end)."""
        if self.profile_out is not None:
            os.kill(self.server_pid, signal.SIGUSR1 if start else signal.SIGUSR2)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the server, the scripted model and this (client) process."""
        return {
            "server": cpu_seconds(self.server_pid),
            "model": cpu_seconds(self.model_pid),
            "clients": cpu_seconds(os.getpid()),
        }


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
def served(*, latency_ms: int, profile: str | None = None, extra_env: dict[str, str] | None = None) -> Iterator[Served]:
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
        wait_until(lambda: _healthy(f"{model_url}/health") or model.poll() is not None, timeout=60)
        data_dir = root / "data"
        server_env = {
            **env,
            "ANTHROPIC_BASE_URL": model_url,
            "ANTHROPIC_API_KEY": "bench",
            "MANAGED_AGENTS_LOG_LEVEL": "WARNING",
        }
        profile_out: Path | None = None
        if profile:
            profile_out = Path(os.environ.get("BENCH_PROFILE_OUT", BENCH_DIR / f"profile-{profile}.txt"))
            server_env["BENCH_PROFILE"] = profile
            server_env["BENCH_PROFILE_OUT"] = str(profile_out)
            args = [sys.executable, str(BENCH_DIR / "_profiled_serve.py")]
        else:
            args = _cli()
        server = stack.enter_context(
            _process(
                [*args, "serve", "--port", str(port), "--data-dir", str(data_dir)], server_env, root / "server.log"
            )
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _healthy(f"{url}/health") or server.poll() is not None, timeout=60)
            if server.poll() is not None or model.poll() is not None:
                raise RuntimeError("a benchmark process exited early:\n" + _tail(root))
        except TimeoutError as exc:
            raise RuntimeError("a benchmark process did not start:\n" + _tail(root)) from exc
        admin_key = (data_dir / "admin.key").read_text().strip()
        try:
            yield Served(url, admin_key, data_dir, server.pid, model.pid, model_url, profile_out)
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
