"""`managed-agents serve` as a child process, for the tests that kill, restart or read the console of the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import wait_until

CLI = Path(sys.executable).parent / "managed-agents"
REPO = Path(__file__).resolve().parents[2]


def cli_env(**overrides: str) -> dict[str, str]:
    """The environment of the `managed-agents` command in tests: this one, with the checkout importable."""
    # the console script imports the package from the checkout, installed or not
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **overrides}


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has closed its sockets already)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class ServeProcess:
    """`managed-agents serve` on `port`; `kill9()` or `stop()` ends it. Its output goes to `log_path`."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        model_url: str,
        log_path: Path,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        full_env = cli_env(
            ANTHROPIC_BASE_URL=model_url,
            ANTHROPIC_API_KEY="x",
            MANAGED_AGENTS_RETRY_BASE_SECONDS="0.01",
            MANAGED_AGENTS_RETRY_MAX_SECONDS="0.05",
            **(env or {}),
        )
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(CLI), "serve", "--data-dir", str(data_dir), "--port", str(port), *args],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self._ready, timeout=60, interval=0.05)
        except BaseException:  # not ready (or the test is interrupted): the server must not outlive the test
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def kill9(self) -> None:
        """SIGKILL the server; with `--workers N`, the supervisor, whose workers die with it (PR_SET_PDEATHSIG): wait
        until they are gone too, so the port is free for the restart (they hold the listening socket)."""
        workers = self.children()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        wait_until(lambda: not any(_running(pid) for pid in workers), timeout=30)
        wait_until(self._refused, timeout=30)

    def _refused(self) -> bool:
        """Nothing of this server listens on its port any more."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return True
        return False

    def children(self) -> list[int]:
        """The pids of the server's child processes (its workers with `--workers N`)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
