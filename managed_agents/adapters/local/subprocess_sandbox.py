"""The embedded sandbox provisioner: one official-worker subprocess per `cloud` session.

Each sandbox runs `managed_agents/sandbox/entrypoint.py` (the official `EnvironmentWorker` serving one work
item) with the server's own interpreter and SDK, in the session's own working directory,
`DATA_DIR/sandboxes/<session id>/`, which outlives the process (a worker restarted after its idle timeout finds
the session's files) and is removed when the session is deleted. Its environment is built from nothing: PATH,
HOME and LANG; the work item's coordinates and secret arrive on stdin. No `ANTHROPIC_API_KEY`, no AWS variables,
nothing of the server's.

Isolation (`MANAGED_AGENTS_SANDBOX_ISOLATION`, `serve --sandbox-isolation`):

* bubblewrap (`bwrap`, Debian package `bubblewrap`; `auto` picks it when installed): the worker runs in new
  user, PID, IPC and UTS namespaces with a read-only root, a private /tmp and /proc, and empty directories over
  the data dir and the server's home. What the worker needs from under those (the interpreter's prefixes, its
  standard library and site-packages, the entrypoint) is mounted back read-only, so a checkout or a venv under
  /tmp or the home works. It dies with the server (`--die-with-parent`), and its whole process tree with it (the
  PID namespace). It shares the host network so it can reach the API on loopback; the environment's `limited`
  networking is therefore not enforced by the embedded sandbox (the AWS sandbox enforces it with security groups).
* none: only when the operator opts in (`none`): the tools run as the server's user and can read what it reads
  (the data dir, the admin key, the vault key, other processes). A supervisor (the entrypoint's `supervise`) kills
  every process the sandbox started, daemons included, when the worker ends, is stopped or the server dies.
* `auto` without bubblewrap: cloud sandboxes are refused with a message that says how to install it or opt in.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from managed_agents.ports import Materialize, Mount, SandboxExited, SandboxLaunch

log = logging.getLogger("managed_agents.sandbox")
MEMORY_MOUNT = "/mnt/memory"  # services/memory_stores.MEMORY_MOUNT_ROOT
ENTRYPOINT = Path(__file__).resolve().parents[2] / "sandbox" / "entrypoint.py"
TAIL_BYTES = 4000
EXIT_REPORT_SECONDS = 60.0  # how long `stop` waits for the watcher to report the exit it caused
ISOLATIONS = ("auto", "bubblewrap", "none")
REFUSED = (
    "cloud sandboxes are isolated with bubblewrap, which is not installed on this server: install it"
    " (Debian/Ubuntu: apt-get install bubblewrap) and restart the server, or let sandboxes run unisolated as the"
    " server's user, able to read its data dir and keys, by starting it with --sandbox-isolation none"
    " (MANAGED_AGENTS_SANDBOX_ISOLATION=none)"
)
# What the worker reads of its interpreter, as the interpreter itself names it (`-I`, as the worker runs)
_PROBE = (
    "import json, site, sys, sysconfig; paths = sysconfig.get_paths(); print(json.dumps([sys.prefix,"
    " sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages(),"
    " *(paths[k] for k in ('stdlib', 'platstdlib', 'purelib', 'platlib'))]))"
)


@dataclass
class _Sandbox:
    work_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    # Set once its watcher has reported the exit (on_exit: the work item is stopped, its calls answered)
    reported: threading.Event = field(default_factory=threading.Event)
    watcher: int = field(default_factory=threading.get_ident)  # the thread that started it, waits for it, reports


def bubblewrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=16)
def interpreter_paths(python: str) -> tuple[Path, ...]:
    """The directories and files `python -I` runs from: the path it is started by and every symlink on the way to
    the binary, its prefixes, standard library and site-packages (what a sandbox must mount back when they are
    under a hidden directory)."""
    try:
        probe = subprocess.run([python, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise RuntimeError(f"the sandbox interpreter {python} cannot run: {exc}") from exc
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        raise RuntimeError(f"the sandbox interpreter {python} cannot run: {last}")
    paths = [Path(p) for p in json.loads(probe.stdout) if p]
    hop = Path(os.path.abspath(python))
    for _ in range(40):  # venv/bin/python -> ~/.local/share/uv/python/cpython-3.x/bin/python3.x -> ...
        paths.append(hop)
        if not hop.is_symlink():
            break
        hop = Path(os.path.normpath(hop.parent / os.readlink(hop)))
    paths.append(Path(python).resolve())
    return tuple(dict.fromkeys(paths))


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
        if isolation not in ISOLATIONS:
            raise ValueError(f"sandbox isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logs = self.root / ".logs"
        self.logs.mkdir(exist_ok=True, mode=0o700)
        bwrap = bubblewrap_path()
        if isolation == "bubblewrap" and bwrap is None:
            raise RuntimeError(
                "MANAGED_AGENTS_SANDBOX_ISOLATION=bubblewrap but bwrap is not installed"
                " (Debian/Ubuntu: apt-get install bubblewrap)"
            )
        self.mode = isolation
        self.bwrap = bwrap if isolation in ("auto", "bubblewrap") else None
        self.idle_seconds = idle_seconds
        self.start_delay_seconds = start_delay_seconds
        self.python = python or sys.executable  # the server's interpreter, so the worker runs the server's SDK
        self.entrypoint = ENTRYPOINT
        self.hidden = tuple(p.resolve() for p in hidden)
        self._lock = threading.Lock()
        self._running: dict[str, _Sandbox] = {}
        self._launching: dict[str, threading.Lock] = {}  # per session: one launch at a time (stop, start, register)
        self._closing = False
        # Puts a session's resources in its stage before the worker starts (services/materialize.py; set by wiring)
        self.materialize: Materialize | None = None
        self.stopped_hooks: list[Callable[[str], object]] = []  # called with the session id when a sandbox ends

    @property
    def refusal(self) -> str | None:
        """Why cloud sandboxes are refused (no bubblewrap and no explicit opt-in to unisolated ones), or None."""
        return REFUSED if self.bwrap is None and self.mode != "none" else None

    @property
    def isolation(self) -> str:
        if self.bwrap:
            return "bubblewrap (namespaces, read-only root, private /tmp and /proc; network shared)"
        if self.refusal:
            return (
                "unavailable: bubblewrap is not installed, so cloud sandboxes are refused (apt-get install"
                " bubblewrap, or opt in to unisolated sandboxes with --sandbox-isolation none)"
            )
        return (
            "none (--sandbox-isolation none): bash runs unisolated as the server's user and can read the data dir,"
            " the admin key and vault secrets"
        )

    def workdir(self, session_id: str) -> Path:
        return self.root / session_id

    def stage(self, session_id: str) -> Path:
        """Where the platform puts a session's resources and collects its outputs: beside its workdir, out of the
        sandbox's reach (the sandbox sees them only at their mount paths)."""
        return self.root / ".stage" / session_id

    def outputs(self, session_id: str) -> Path:
        """The session's outputs directory (mounted at /mnt/session/outputs)."""
        return self.stage(session_id) / "outputs"

    def _mounts(self, spec: SandboxLaunch, workdir: Path) -> list[Mount]:
        if self.materialize is None:
            return []
        mounts = self.materialize(spec.session_id, self.stage(spec.session_id), spec.work_id)
        if self.bwrap:
            return mounts
        # Unisolated (no mount namespace): each resource appears under the workdir at its mount path instead
        for m in mounts:
            link = workdir / m.target.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                shutil.rmtree(link, ignore_errors=True)
                link.symlink_to(m.source)
        return []

    # -- launch ----------------------------------------------------------------------------------------------

    def launch(self, spec: SandboxLaunch, on_exit: SandboxExited) -> None:
        if self.refusal:
            raise RuntimeError(self.refusal)
        if self.start_delay_seconds:
            time.sleep(self.start_delay_seconds)
        with self._lock:
            launching = self._launching.setdefault(spec.session_id, threading.Lock())
        # One sandbox per session: the previous one is stopped and the new one registered under the session's launch
        # lock, so two launches at once cannot both start one (the one left unregistered would run on, beyond the
        # reach of `stop`, and both would run the session's pending calls).
        with launching:
            self._launch_locked(spec, on_exit)

    def _launch_locked(self, spec: SandboxLaunch, on_exit: SandboxExited) -> None:
        self.stop(spec.session_id, None)
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
        mounts = self._mounts(spec, workdir)
        if any(m.target == MEMORY_MOUNT for m in mounts):  # (only isolated sandboxes have it at its absolute path)
            config["MANAGED_AGENTS_SANDBOX_MEMORY"] = "1"  # the worker mounts and syncs the session's memory stores
        cmd = [self.python, "-I", str(self.entrypoint)]
        if self.bwrap:
            cmd = self._bubblewrap(workdir, mounts) + cmd
        else:  # no PID namespace to end the tree: the entrypoint supervises it, and dies with this server
            config["MANAGED_AGENTS_SANDBOX_SUPERVISE"] = str(os.getpid())
        log_path = self.logs / f"{spec.work_id}.log"
        # The process is started by the thread that then waits for it: bubblewrap's --die-with-parent (and the
        # supervisor's parent-death signal) follow the *thread* that forked it, so a short-lived launching thread
        # would kill the sandbox when it ends.
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

    def _bubblewrap(self, workdir: Path, mounts: Sequence[Mount] = ()) -> list[str]:
        assert self.bwrap is not None
        home = Path(os.path.expanduser("~")).resolve()
        hidden = {p for p in (Path("/tmp"), *self.hidden, self.root, home) if p != Path("/") and p.exists()}
        # mount back, read-only, what the worker runs from under the hidden directories: the interpreter (a venv or
        # a checkout under /tmp or the home, a uv or pyenv Python under the home) and the entrypoint
        needed = {p for p in (*interpreter_paths(self.python), self.entrypoint.parent) if p.exists()}
        needed = {p for p in needed if any(p.is_relative_to(h) for h in hidden)}
        needed = {p for p in needed if not any(p != q and p.is_relative_to(q) for q in needed)}
        # Deeper mounts last: a directory hidden inside a mounted-back one (the data dir in the checkout) stays hidden
        binds = [(p, ["--tmpfs", str(p)]) for p in hidden] + [(p, ["--ro-bind", str(p), str(p)]) for p in needed]
        # The root is a tmpfs holding the host's top-level entries read-only, so that a resource's mount path may
        # name a directory the host does not have (/workspace); a top-level directory that resources are mounted
        # under is the sandbox's own when the host has none, and /mnt always (the host's is not shown); a mount path
        # under another host directory needs its parent to exist there.
        tops = {Path("/", *Path(m.target).parts[1:2]) for m in mounts}
        own = {top for top in tops if top == Path("/mnt") or not top.exists()}
        args = [self.bwrap, "--tmpfs", "/"]
        for entry in sorted(Path("/").iterdir()):
            if entry.name in ("proc", "dev") or entry in own:
                continue
            if entry.is_symlink():
                args += ["--symlink", os.readlink(entry), str(entry)]
            elif entry.exists():
                args += ["--ro-bind", str(entry), str(entry)]
        args += ["--dev", "/dev", "--proc", "/proc"]
        for _, mount in sorted(binds, key=lambda m: (len(m[0].parts), m[1][0] == "--ro-bind")):
            args += mount
        args += ["--bind", str(workdir), str(workdir)]
        for m in sorted(mounts, key=lambda m: len(Path(m.target).parts)):
            args += ["--ro-bind" if m.read_only else "--bind", str(m.source), m.target]
        args += ["--remount-ro", "/", "--chdir", str(workdir)]
        args += ["--unshare-all", "--share-net", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        return args

    def _watch(self, session_id: str, box: _Sandbox, on_exit: SandboxExited) -> None:
        code = box.proc.wait()
        try:
            self._report(session_id, box, code, on_exit)
        finally:
            box.reported.set()

    def _report(self, session_id: str, box: _Sandbox, code: int, on_exit: SandboxExited) -> None:
        with self._lock:
            if self._running.get(session_id) is box:
                del self._running[session_id]
        detail = _last_line(box.log_path) if code != 0 else ""
        log.info("sandbox exited", extra={"session_id": session_id, "work_id": box.work_id, "exit_code": code})
        for hook in self.stopped_hooks:  # (outputs are collected: what the sandbox wrote outlives it)
            try:
                hook(session_id)
            except Exception:
                log.exception("sandbox stop hook failed", extra={"session_id": session_id})
        if self._closing:  # the server is stopping: its next start finds the item and replaces the sandbox
            return
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
        """End the session's sandbox (only if it serves `work_id`, when given) and return once its exit is reported:
        its work item is then stopped and the calls it may have been running are answered, so nothing that reads the
        session afterwards (a new turn's call, a new sandbox) still takes the dead sandbox for a live one."""
        with self._lock:
            box = self._running.get(session_id)
            if box is None or (work_id is not None and box.work_id != work_id):
                return
        if box.proc.poll() is None:
            try:
                os.killpg(box.proc.pid, signal.SIGTERM)
                box.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(box.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if threading.get_ident() != box.watcher and not box.reported.wait(EXIT_REPORT_SECONDS):
            log.warning("sandbox exit not reported in time", extra={"session_id": session_id, "work_id": box.work_id})

    def dispose(self, session_id: str) -> None:
        self.stop(session_id, None)
        with self._lock:
            self._launching.pop(session_id, None)
        shutil.rmtree(self.workdir(session_id), ignore_errors=True)
        shutil.rmtree(self.stage(session_id), ignore_errors=True)

    def pid(self, session_id: str) -> int | None:
        with self._lock:
            box = self._running.get(session_id)
        return box.proc.pid if box is not None and box.proc.poll() is None else None

    def close(self) -> None:
        """The server stops: end every sandbox (their items are left for the next start to replace)."""
        self._closing = True
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
