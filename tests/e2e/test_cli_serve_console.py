"""What `managed-agents serve` tells a newcomer: each line once, true when printed, and one clear line on failure."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from managed_agents.adapters.local.subprocess_sandbox import bubblewrap_path
from managed_agents.settings import ServerSettings
from managed_agents.testing.loopback import free_port
from managed_agents.wiring import DB_FILE, build_local_runtime
from tests.e2e.conftest import wait_until
from tests.e2e.serve_process import CLI, cli_env

# Embedded only: the `serve` command's console and data dir.
ENV = cli_env(ANTHROPIC_BASE_URL="http://127.0.0.1:9")  # set, so no "ANTHROPIC_API_KEY is not set" line


class _Console:
    """`serve` with its stdout and stderr read line by line as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(CLI), "serve", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.reader.join(5)


@pytest.fixture
def console() -> Iterator[list[_Console]]:
    started: list[_Console] = []
    yield started
    for c in started:
        c.stop()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("isolation", [None, "none"])
def test_serving_is_said_when_the_port_accepts_and_the_isolation_once(
    tmp_path: Path, console: list[_Console], isolation: str | None
) -> None:
    # Given a new data dir and a free port
    port = free_port()
    args = ["--data-dir", str(tmp_path / "data"), "--port", str(port)]
    args += ["--sandbox-isolation", isolation] if isolation else []
    # When the server starts
    console.append(_Console(args, ENV))
    lines = console[0].lines
    serving = wait_until(lambda: [ln for ln in lines if ln.startswith("Serving on")], timeout=60)
    # Then by the time it says it is serving, the port accepts connections
    assert _accepts(port)
    url = f"http://127.0.0.1:{port}"
    assert serving == [f"Serving on {url}  (SDK: Anthropic(base_url='{url}', api_key=KEY))"]
    # And the sandbox isolation was said once, as the operator chose it
    said = [ln for ln in lines if "isolation" in ln.lower()]
    assert len(said) == 1, lines
    if isolation == "none":
        expected = "none (--sandbox-isolation none)"
    else:  # without bubblewrap, cloud sandboxes are refused unless the operator opts out of isolation
        expected = "bubblewrap" if bubblewrap_path() else "unavailable: bubblewrap is not installed"
    assert said[0].startswith(f"Cloud sandboxes: isolation {expected}"), said


def test_a_port_in_use_is_one_clear_error_and_never_a_serving_line(tmp_path: Path) -> None:
    # Given a port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When the server is started on it
        done = subprocess.run(
            [str(CLI), "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
    # Then it says so in one line, and never that it serves
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_bubblewrap_required_but_not_installed_is_one_clear_error(tmp_path: Path) -> None:
    # Given a machine where bwrap cannot be found
    env = {**ENV, "PATH": str(tmp_path / "empty")}
    # When the operator requires bubblewrap
    done = subprocess.run(
        [str(CLI), "serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--sandbox-isolation", "bubblewrap"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then the server does not start, and says how to fix it
    assert done.returncode == 1 and "Serving on" not in done.stdout
    assert done.stderr.splitlines() == [
        "error: MANAGED_AGENTS_SANDBOX_ISOLATION=bubblewrap but bwrap is not installed"
        " (Debian/Ubuntu: apt-get install bubblewrap)"
    ]


def test_without_bubblewrap_the_default_says_cloud_sandboxes_are_refused(
    tmp_path: Path, console: list[_Console]
) -> None:
    console.append(_Console(["--data-dir", str(tmp_path / "data"), "--port", "0"], {**ENV, "PATH": str(tmp_path)}))
    lines = console[0].lines
    wait_until(lambda: any(ln.startswith("Serving on") for ln in lines), timeout=60)
    said = [ln for ln in lines if "isolation" in ln.lower()]
    assert len(said) == 1 and said[0].startswith("Cloud sandboxes: isolation unavailable"), lines
    assert "apt-get install bubblewrap" in said[0] and "--sandbox-isolation none" in said[0]


def test_the_data_dir_and_the_database_are_owner_only(tmp_path: Path) -> None:
    # Given a data dir that does not exist yet, and one an older version left readable by others
    fresh, old = tmp_path / "fresh" / "data", tmp_path / "old"
    old.mkdir(mode=0o755)
    (old / DB_FILE).touch(mode=0o644)
    os.chmod(old, 0o755)
    os.chmod(old / DB_FILE, 0o644)
    for data_dir in (fresh, old):
        # When the runtime opens it
        build_local_runtime(ServerSettings(data_dir=str(data_dir)), start_orchestrator=False)
        # Then only the server's user can enter it or read the database (and its WAL files)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        files = [p for p in data_dir.iterdir() if p.name.startswith(DB_FILE)]
        assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), files
