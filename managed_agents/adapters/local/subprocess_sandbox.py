"""The embedded sandbox provisioner: one official-worker subprocess per `cloud` session.

Each sandbox runs `managed_agents/sandbox/entrypoint.py` (the official `EnvironmentWorker` serving one work
item) in the session's own working directory, `DATA_DIR/sandboxes/<session id>/`, which outlives the process
(a worker restarted after its idle timeout finds the session's files) and is removed when the session is
deleted. Its environment is built from nothing: PATH, HOME and LANG; the work item's coordinates and secret arrive on
stdin. No `ANTHROPIC_API_KEY`, no AWS variables, nothing of the server's.

With bubblewrap (`bwrap`, Debian package `bubblewrap`) the worker also runs in new user, PID, IPC and UTS
namespaces with a read-only root, a private /tmp and /proc, and empty directories over the data dir and the
server's home (only the session's working directory and the Python runtime are mounted back). It shares the
host network so it can reach the API on loopback; the environment's `limited` networking is therefore not
enforced by the embedded sandbox (the AWS sandbox enforces it with security groups). Without bubblewrap
`bash` runs unisolated as the server's user: start-up logs a warning and the README says so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from managed_agents.ports import SandboxExited, SandboxLaunch

log = logging.getLogger("managed_agents.sandbox")
ENTRYPOINT = Path(__file__).resolve().parents[2] / "sandbox" / "entrypoint.py"
TAIL_BYTES = 4000


@dataclass
class _Sandbox:
    work_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def bubblewrap_path() -> str | None:
    return shutil.which("bwrap")


class SubprocessSandboxProvisioner:
    def __init__(
        self,
        root: Path,
        *,
        isolation: str = "auto",
        idle_seconds: float = 300.0,
        start_delay_seconds: float = 0.0,
        python: str | None = None,
        hidden: tuple[Path, ...] = (),
    ) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs = self.root / ".logs"
        self.logs.mkdir(exist_ok=True)
        bwrap = bubblewrap_path()
        if isolation == "bubblewrap" and bwrap is None:
            raise RuntimeError("MANAGED_AGENTS_SANDBOX_ISOLATION=bubblewrap but bwrap is not installed")
        self.bwrap = bwrap if isolation in ("auto", "bubblewrap") else None
        self.idle_seconds = idle_seconds
        self.start_delay_seconds = start_delay_seconds
        self.python = python or sys.executable
        self.hidden = tuple(p.resolve() for p in hidden)
        self._lock = threading.Lock()
        self._running: dict[str, _Sandbox] = {}

    @property
    def isolation(self) -> str:
        if self.bwrap:
            return "bubblewrap (namespaces, read-only root, private /tmp and /proc; network shared)"
        return "none: bash runs unisolated as the server's user (install bubblewrap to isolate sandboxes)"

    def workdir(self, session_id: str) -> Path:
        return self.root / session_id

    # -- launch ----------------------------------------------------------------------------------------------

    def launch(self, spec: SandboxLaunch, on_exit: SandboxExited) -> None:
        if self.start_delay_seconds:
            time.sleep(self.start_delay_seconds)
        self.stop(spec.session_id, None)  # one sandbox per session
        workdir = self.workdir(spec.session_id)
        workdir.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "MANAGED_AGENTS_SANDBOX_CONFIG": "stdin",
        }
        config = {  # on stdin, not in the environment: /proc/<pid>/environ is readable by the tools
            "ANTHROPIC_BASE_URL": spec.api_url,
            "ANTHROPIC_WORK_ID": spec.work_id,
            "ANTHROPIC_ENVIRONMENT_ID": spec.environment_id,
            "ANTHROPIC_SESSION_ID": spec.session_id,
            "ANTHROPIC_WORK_SECRET": spec.secret,
            "MANAGED_AGENTS_SANDBOX_WORKDIR": str(workdir),
            "MANAGED_AGENTS_SANDBOX_IDLE_SECONDS": f"{self.idle_seconds:g}",
            "MANAGED_AGENTS_SANDBOX_PACKAGES": json.dumps(spec.packages),
        }
        cmd = [self.python, "-I", str(ENTRYPOINT)]
        if self.bwrap:
            cmd = self._bubblewrap(workdir) + cmd
        log_path = self.logs / f"{spec.work_id}.log"
        # The process is started by the thread that then waits for it: bubblewrap's --die-with-parent follows
        # the *thread* that forked it, so a short-lived launching thread would kill the sandbox when it ends.
        started = threading.Event()
        outcome: list[_Sandbox | BaseException] = []

        def run() -> None:
            try:
                with open(log_path, "wb") as out:
                    proc = subprocess.Popen(
                        cmd,
                        env=env,
                        cwd=workdir,
                        stdin=subprocess.PIPE,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        close_fds=True,
                    )
            except BaseException as exc:
                outcome.append(exc)
                started.set()
                return
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps(config).encode())
                proc.stdin.close()
            except OSError:  # the process died at once; _watch reports how
                pass
            box = _Sandbox(spec.work_id, proc, log_path)
            with self._lock:
                self._running[spec.session_id] = box
            outcome.append(box)
            started.set()
            self._watch(spec.session_id, box, on_exit)

        threading.Thread(target=run, name=f"sandbox-{spec.session_id}", daemon=True).start()
        started.wait()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        log.info(
            "sandbox started",
            extra={"session_id": spec.session_id, "work_id": spec.work_id, "pid": outcome[0].proc.pid},
        )

    def _bubblewrap(self, workdir: Path) -> list[str]:
        assert self.bwrap is not None
        args = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        home = Path(os.path.expanduser("~")).resolve()
        hidden = [p for p in (*self.hidden, self.root, home) if p != Path("/") and p.exists()]
        for path in sorted(set(hidden), key=lambda p: len(p.parts)):
            args += ["--tmpfs", str(path)]
        # mount back what the worker needs from under the hidden directories: the Python runtime and packages
        needed = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), ENTRYPOINT.parent, Path(self.python)}
        for path in sorted(needed, key=lambda p: len(p.parts)):
            if any(path.is_relative_to(h) for h in hidden) and path.exists():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir)]
        args += ["--unshare-all", "--share-net", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        return args

    def _watch(self, session_id: str, box: _Sandbox, on_exit: SandboxExited) -> None:
        code = box.proc.wait()
        with self._lock:
            if self._running.get(session_id) is box:
                del self._running[session_id]
        detail = _last_line(box.log_path) if code != 0 else ""
        log.info("sandbox exited", extra={"session_id": session_id, "work_id": box.work_id, "exit_code": code})
        try:
            if code == 3 and detail:
                detail = f"installing the environment's packages failed: {detail.removeprefix('sandbox: ')}"
            elif code < 0:
                detail = f"killed by signal {-code}" + (f"; last output: {detail}" if detail else "")
            elif code != 0:
                detail = f"exit code {code}" + (f"; last output: {detail}" if detail else "")
            on_exit(box.work_id, code, detail)
        except Exception:
            log.exception("sandbox exit handler failed", extra={"session_id": session_id})

    # -- stop ------------------------------------------------------------------------------------------------

    def stop(self, session_id: str, work_id: str | None) -> None:
        with self._lock:
            box = self._running.get(session_id)
            if box is None or (work_id is not None and box.work_id != work_id):
                return
        if box.proc.poll() is not None:
            return
        try:
            os.killpg(box.proc.pid, signal.SIGTERM)
            box.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(box.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def dispose(self, session_id: str) -> None:
        self.stop(session_id, None)
        shutil.rmtree(self.workdir(session_id), ignore_errors=True)

    def pid(self, session_id: str) -> int | None:
        with self._lock:
            box = self._running.get(session_id)
        return box.proc.pid if box is not None and box.proc.poll() is None else None

    def close(self) -> None:
        with self._lock:
            sessions = list(self._running)
        for sid in sessions:
            self.stop(sid, None)


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    sandbox_lines = [ln for ln in lines if ln.startswith("sandbox:")]
    return (sandbox_lines or lines or [""])[-1][:800]
