"""The sandbox entrypoint: install the environment's packages, then serve one work item with the official worker.

Run by the embedded provisioner (a subprocess, bubblewrap when available) and by the Fargate image
(`sandbox_task/Dockerfile`). It imports only the standard library and `anthropic`, so it runs without the
platform's code. Its environment holds nothing but the work item's coordinates and its secret:

    ANTHROPIC_BASE_URL          the platform API
    ANTHROPIC_WORK_ID, ANTHROPIC_ENVIRONMENT_ID, ANTHROPIC_SESSION_ID
    ANTHROPIC_WORK_SECRET       the work item's secret (a session-scoped token that dies with the item)
    MANAGED_AGENTS_SANDBOX_WORKDIR, MANAGED_AGENTS_SANDBOX_IDLE_SECONDS, MANAGED_AGENTS_SANDBOX_PACKAGES (JSON)

The embedded provisioner passes them as one JSON object on stdin instead (`MANAGED_AGENTS_SANDBOX_CONFIG=stdin`),
so they are not in the process's exec-time environment either (`/proc/<pid>/environ`, readable by the tools).
Variables are removed from the process environment before any tool runs, so `env` in the bash tool shows none.
Exit codes: 0 served, 3 package installation failed (the last stderr line says why), 2 bad configuration.

`MANAGED_AGENTS_SANDBOX_SUPERVISE=<server pid>` (an embedded sandbox without bubblewrap, which has no PID namespace
to end its process tree) makes this process a supervisor (Linux): it runs the worker as its child, adopts every
process the tools start (a child subreaper, so daemons that detach with setsid stay its descendants), and kills
them all when the worker ends, when it is stopped, or when the server dies (a parent-death signal).

The Fargate image starts this as root with `MANAGED_AGENTS_SANDBOX_USER=sandbox`: packages are installed as root
(apt included, and the package managers the image lacks: npm, cargo, gem, go come from Debian), then the process
gives the working directory to that user and drops root for good before the worker runs any tool. Started as any
other user (the embedded sandboxes), it installs what needs no root and refuses `apt` with a message that says why.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anthropic.lib.tools import BetaAsyncFunctionTool
    from anthropic.lib.tools.agent_toolset import AgentToolContext

EXIT_CONFIG = 2
EXIT_PACKAGES = 3
PACKED_PACKAGES_PREFIX = "zlib:"  # as the ECS provisioner writes a long list (ecs_sandbox_provisioner.py)
_WORK_VARS = (
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_WORK_ID",
    "ANTHROPIC_ENVIRONMENT_ID",
    "ANTHROPIC_SESSION_ID",
    "ANTHROPIC_WORK_SECRET",
    "MANAGED_AGENTS_SANDBOX_WORKDIR",
    "MANAGED_AGENTS_SANDBOX_IDLE_SECONDS",
    "MANAGED_AGENTS_SANDBOX_PACKAGES",
    "MANAGED_AGENTS_SANDBOX_SUPERVISE",
    "MANAGED_AGENTS_SANDBOX_MEMORY",  # "1": /mnt/memory is writable, the worker mounts the session's memory stores
    "MANAGED_AGENTS_SANDBOX_ROOT",  # where the init container's paths are (Fargate: `/`; tests: a directory)
    "MANAGED_AGENTS_SANDBOX_OUTPUTS",  # set (Fargate): this directory's files are sent to the platform as outputs
    "MANAGED_AGENTS_SANDBOX_INPUTS",  # "1" (Fargate): file resources added while it runs are placed before a tool call
)
OUTPUTS_SYNC_SECONDS = 2.0
LINKS_FILE = "mnt/session/.links.json"  # written by the init container (sandbox/materials.py), relative to the root
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _fail(code: int, message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


# Debian packages that bring a package manager the image lacks (the Fargate image has apt and pip only)
TOOL_PACKAGES = {"npm": ["nodejs", "npm"], "cargo": ["cargo"], "gem": ["ruby"], "go": ["golang-go"]}
SANDBOX_USER_ENV = "MANAGED_AGENTS_SANDBOX_USER"  # set by the Fargate image: who runs the tools after installation


def system_packages(packages: dict[str, object], *, have: Callable[[str], bool]) -> list[str]:
    """The Debian packages to install first: the environment's `apt` list, then the tools its other managers need
    that are missing (`have(tool)`)."""
    names = [str(n) for n in (packages.get("apt") or []) if str(n).strip()]  # type: ignore[attr-defined]
    for manager, debs in TOOL_PACKAGES.items():
        if packages.get(manager) and not have(manager):
            names += [d for d in debs if d not in names]
    return names


def _install_system_packages(names: list[str], *, wanted_apt: bool) -> None:
    """apt-get update + install, as root (the Fargate image starts as root and drops to its user afterwards)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        if wanted_apt:
            _fail(
                EXIT_PACKAGES,
                "installing apt packages failed: apt needs root, and this sandbox runs as "
                f"uid {os.geteuid()} (the Fargate image installs them as root before dropping privileges)",
            )
        return  # a missing tool is reported by the manager's own step
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *names]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=1800)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
            why = " / ".join(lines[-3:])[:800] or f"exit code {proc.returncode}"
            _fail(EXIT_PACKAGES, f"installing apt packages {' '.join(names)!r} failed: {why}")


def drop_privileges(workdir: str) -> None:
    """Run the tools as the image's user (`MANAGED_AGENTS_SANDBOX_USER`), not root: hand it the working directory
    (and what was installed there), then give up root for good. Nothing to do when not root or no user is set."""
    name = os.environ.pop(SANDBOX_USER_ENV, "")
    if not name or os.geteuid() != 0:
        return
    import pwd

    try:
        user = pwd.getpwnam(name)
    except KeyError:
        _fail(EXIT_CONFIG, f"{SANDBOX_USER_ENV}={name!r} is not a user of this image")
    for root, dirs, files in os.walk(workdir):
        for entry in (root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)):
            os.lchown(entry, user.pw_uid, user.pw_gid)
    os.initgroups(name, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ.update(HOME=user.pw_dir, USER=name, LOGNAME=name)


def link_resources(root: str) -> None:
    """Link each session resource the init container put in a task volume to its mount path (a path outside
    `/mnt/session` and `/workspace`, the volumes): as root on Fargate, before privileges are dropped, so a link may
    be made anywhere. A path that exists already is left alone (the image's own files win)."""
    try:
        with open(os.path.join(root, LINKS_FILE), encoding="utf-8") as fh:
            links = json.load(fh)
    except (OSError, ValueError):
        return  # no init container, or nothing to link
    for link in links if isinstance(links, list) else []:
        path = os.path.join(root, str(link.get("path", "")).lstrip("/"))
        target = os.path.join(root, str(link.get("target", "")).lstrip("/"))
        if ".." in path.split(os.sep) or os.path.lexists(path):
            continue
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.symlink(target, path)
        except OSError as exc:
            print(f"sandbox: {link.get('path')} could not be linked: {exc}", file=sys.stderr, flush=True)


def decode_packages(raw: str) -> dict[str, object]:
    """MANAGED_AGENTS_SANDBOX_PACKAGES: JSON, or `zlib:` + base64 of it compressed (a long list, from the ECS
    provisioner: RunTask overrides are capped at 8,192 characters)."""
    if raw.startswith(PACKED_PACKAGES_PREFIX):
        raw = zlib.decompress(base64.b64decode(raw[len(PACKED_PACKAGES_PREFIX) :])).decode()
    value = json.loads(raw or "{}")
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _install_commands(packages: dict[str, object], workdir: str) -> list[tuple[str, list[str]]]:
    prefix = os.path.join(workdir, ".packages")
    plan: list[tuple[str, list[str]]] = []
    for manager in ("pip", "npm", "cargo", "gem", "go"):
        names = [str(n) for n in (packages.get(manager) or []) if str(n).strip()]  # type: ignore[attr-defined]
        if not names:
            continue
        if manager == "pip":
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--target", os.path.join(prefix, "pip"), *names]
        elif manager == "npm":
            cmd = ["npm", "install", "--silent", "--prefix", os.path.join(prefix, "npm"), *names]
        elif manager == "cargo":
            cmd = ["cargo", "install", "--root", os.path.join(prefix, "cargo"), *names]
        elif manager == "gem":
            cmd = ["gem", "install", "--install-dir", os.path.join(prefix, "gem"), *names]
        else:
            cmd = ["go", "install", *names]
        plan.append((manager, cmd))
    return plan


def install_packages(packages: dict[str, object], workdir: str) -> None:
    """Install what the environment lists, before the first tool call; any failure ends the sandbox (exit 3). As root
    (the Fargate image), Debian packages first: the `apt` list and the package managers the image lacks."""
    debs = system_packages(packages, have=lambda tool: shutil.which(tool) is not None)
    if debs:
        _install_system_packages(debs, wanted_apt=bool(packages.get("apt")))
    for manager, cmd in _install_commands(packages, workdir):
        if manager == "pip":
            probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=False)
            if probe.returncode != 0:
                _fail(EXIT_PACKAGES, "installing pip packages failed: pip is not available in this sandbox image")
        elif shutil.which(cmd[0]) is None:
            _fail(EXIT_PACKAGES, f"installing {manager} packages failed: {cmd[0]} is not available in this sandbox")
        env = dict(os.environ)
        env["HOME"] = workdir
        if manager == "go":
            env["GOBIN"] = os.path.join(workdir, ".packages", "go", "bin")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, check=False, timeout=1800)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
            why = " / ".join(lines[-3:])[:800] or f"exit code {proc.returncode}"
            _fail(EXIT_PACKAGES, f"installing {manager} packages {cmd[-1]!r} failed: {why}")
    prefix = os.path.join(workdir, ".packages")
    # what the tools' processes (bash) inherit: installed commands and Python packages are found
    paths = [os.path.join(prefix, sub) for sub in ("npm/node_modules/.bin", "cargo/bin", "gem/bin", "go/bin")]
    os.environ["PATH"] = os.pathsep.join([*paths, os.environ.get("PATH", "/usr/bin:/bin")])
    if packages.get("pip"):
        os.environ["PYTHONPATH"] = os.path.join(prefix, "pip")
    if packages.get("gem"):
        os.environ["GEM_PATH"] = os.path.join(prefix, "gem")


def _config() -> dict[str, str]:
    if os.environ.pop("MANAGED_AGENTS_SANDBOX_CONFIG", "") == "stdin":
        try:
            given = json.loads(sys.stdin.read() or "{}")
        except ValueError:
            _fail(EXIT_CONFIG, "the configuration on stdin is not JSON")
        sys.stdin.close()
        return {name: str(given.get(name) or "") for name in _WORK_VARS}
    return {name: os.environ.pop(name, "") for name in _WORK_VARS}


def main() -> None:
    config = _config()
    missing = [n for n in _WORK_VARS[:5] if not config[n]]
    if missing:
        _fail(EXIT_CONFIG, f"missing configuration: {', '.join(missing)}")
    server_pid = config.pop("MANAGED_AGENTS_SANDBOX_SUPERVISE", "")
    if server_pid:
        supervise(config, int(server_pid))
    workdir = config["MANAGED_AGENTS_SANDBOX_WORKDIR"] or os.getcwd()
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    try:
        packages = decode_packages(config["MANAGED_AGENTS_SANDBOX_PACKAGES"])
    except (ValueError, zlib.error):
        _fail(EXIT_CONFIG, "MANAGED_AGENTS_SANDBOX_PACKAGES is not a JSON object")
    install_packages(packages, workdir)
    link_resources(config.get("MANAGED_AGENTS_SANDBOX_ROOT") or "/")
    drop_privileges(workdir)
    idle = float(config["MANAGED_AGENTS_SANDBOX_IDLE_SECONDS"] or 300)
    asyncio.run(_serve(config, workdir, idle))


async def _serve(config: dict[str, str], workdir: str, idle: float) -> None:
    from anthropic import AsyncAnthropic
    from anthropic.lib.environments import EnvironmentWorker

    inputs = None
    if config.get("MANAGED_AGENTS_SANDBOX_INPUTS") == "1":
        inputs = InputsSync(config, config.get("MANAGED_AGENTS_SANDBOX_ROOT") or "/")
    client = AsyncAnthropic(
        base_url=config["ANTHROPIC_BASE_URL"],
        api_key=None,
        auth_token=None,
        max_retries=4,
        http_client=inputs.http_client() if inputs is not None else None,
    )
    # Memory stores are mounted at their absolute mount paths (/mnt/memory/<slug>): only where the sandbox has that
    # directory of its own (bubblewrap, the Fargate image); elsewhere the session runs without them.
    options: dict[str, Any] = {}  # (the worker's defaults otherwise: the official toolset, memory on)
    if config.get("MANAGED_AGENTS_SANDBOX_MEMORY") != "1":
        options["memory_sync_interval"] = None
    outputs = config.get("MANAGED_AGENTS_SANDBOX_OUTPUTS") or ""
    sync = OutputsSync(config, outputs) if outputs else None
    if inputs is not None or sync is not None:
        before = inputs.before_tool if inputs is not None else None
        options["tools"] = hooked_toolset(before=before, after=sync.after_tool if sync is not None else None)
    worker = EnvironmentWorker(client, workdir=workdir, max_idle=idle, **options)
    serving = asyncio.ensure_future(
        worker.handle_item(
            work_id=config["ANTHROPIC_WORK_ID"],
            environment_id=config["ANTHROPIC_ENVIRONMENT_ID"],
            session_id=config["ANTHROPIC_SESSION_ID"],
            work_secret=config["ANTHROPIC_WORK_SECRET"],
        )
    )
    if sync is None:
        await serving
        return
    # ECS stops a task with SIGTERM (StopTask, a Spot reclaim): end the worker, then send the outputs one last time
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, serving.cancel)
    syncing = asyncio.ensure_future(sync.loop())
    try:
        await serving
    except asyncio.CancelledError:
        pass
    finally:
        syncing.cancel()
        await asyncio.to_thread(sync.once)


def hooked_toolset(
    *, before: Callable[[], Awaitable[None]] | None, after: Callable[[], Awaitable[None]] | None
) -> Callable[[AgentToolContext], list[BetaAsyncFunctionTool[Any]]]:
    """The official toolset (the worker's default), each tool's call preceded by `before` (the inputs added while the
    sandbox runs are put in place) and followed by `after` (what the call wrote under the outputs directory is sent
    before its result is: an unclean kill then loses only what a call still running, or a background process, wrote).
    The tools themselves are the SDK's, unchanged."""

    def toolset(ctx: AgentToolContext) -> list[BetaAsyncFunctionTool[Any]]:
        from anthropic.lib.tools.agent_toolset import beta_agent_toolset_20260401

        tools = beta_agent_toolset_20260401(ctx)
        for tool in tools:
            tool.call = _hooked(tool.call, before, after)  # type: ignore[method-assign,assignment]
        return tools

    return toolset


def _hooked(
    call: Callable[[object], Any],
    before: Callable[[], Awaitable[None]] | None,
    after: Callable[[], Awaitable[None]] | None,
) -> Callable[[object], Any]:
    async def hooked(tool_input: object) -> Any:
        if before is not None:
            await before()
        try:
            return await call(tool_input)
        finally:
            if after is not None:
                await after()

    return hooked


class OutputsSync:
    """Fargate: the task's volumes end with it, so the sandbox sends what the agent wrote under the outputs directory
    to the platform itself (`PUT /v1/sessions/{id}/outputs/{path}`, with its work token: the platform stores each as
    a session-scoped file, replacing the previous one at that path): after each tool call, before its result is
    posted (`hooked_toolset`), every OUTPUTS_SYNC_SECONDS (what background processes write; so within that time of
    the session going idle) and once more when the worker ends (idle timeout, or SIGTERM from StopTask). Only regular
    files whose size or modification time changed since they were last sent; links are not followed. One pass at a
    time."""

    def __init__(self, config: dict[str, str], root: str) -> None:
        self.root = root
        self.base = f"{config['ANTHROPIC_BASE_URL'].rstrip('/')}/v1/sessions/{config['ANTHROPIC_SESSION_ID']}/outputs/"
        self.token = sessions_token(config)
        self.sent: dict[str, tuple[int, int]] = {}
        self._pass = threading.Lock()

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(OUTPUTS_SYNC_SECONDS)
            await asyncio.to_thread(self.once)

    async def after_tool(self) -> None:
        await asyncio.to_thread(self.once)

    def once(self) -> None:
        with self._pass:
            self._once()

    def _once(self) -> None:
        import urllib.error
        import urllib.parse
        import urllib.request

        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                rel = os.path.relpath(path, self.root)
                seen = (st.st_size, st.st_mtime_ns)
                if not stat.S_ISREG(st.st_mode) or self.sent.get(rel) == seen:
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                    with os.fdopen(fd, "rb") as fh:
                        req = urllib.request.Request(
                            self.base + urllib.parse.quote(rel.replace(os.sep, "/")),
                            data=fh,
                            method="PUT",
                            headers={
                                "Authorization": f"Bearer {self.token}",
                                "Content-Type": "application/octet-stream",
                                "Content-Length": str(st.st_size),
                            },
                        )
                        urllib.request.urlopen(req, timeout=120).close()
                    self.sent[rel] = seen
                except urllib.error.HTTPError as exc:
                    if 400 <= exc.code < 500:  # refused (too large, too many outputs): not sent again as it is
                        self.sent[rel] = seen
                    print(f"sandbox: output {rel!r} not stored: {exc.code} {exc.read()[:300]!r}", file=sys.stderr)
                except OSError as exc:  # retried at the next pass
                    print(f"sandbox: output {rel!r} not sent yet: {exc}", file=sys.stderr, flush=True)


def sessions_token(config: dict[str, str]) -> str:
    """The work token inside the work item's secret (what the worker authenticates its session's calls with)."""
    raw = config["ANTHROPIC_WORK_SECRET"]
    return str(json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))["sessions_token"])


class InputsSync:
    """Fargate: a file resource added while the sandbox runs (`sessions.resources.add`) is in place before the next
    tool call. The init container, which put the others in place, has exited; a file needs no secret but the work
    token, so the sandbox fetches it itself: each tool call of the official toolset first asks the platform for the
    session's file resources (`GET /v1/sessions/{id}/inputs`) and downloads the ones not in place yet
    (`GET .../inputs/{resource}`, checked against their SHA-256) to their mount paths (under `root`), read-only. It
    writes as the sandbox user: the default mount paths (`/mnt/session/uploads`, sticky: what the init container put
    there stays) and `/workspace` take them; a mount path it cannot write is reported (`POST .../inputs/errors`: a
    readable `session.error`) and is in place from the next task on (its init container puts it there). A failed
    request is tried again at the next tool call; concurrent calls wait for one pass (`hooked_toolset`).

    The request is skipped when the worker's event stream said nothing was added: the worker's client
    (`http_client()`) asks its stream to announce the inputs' ETag in each `agent.tool_use` frame (an SSE comment
    line, which the SDK ignores; api/sse.py), and a call whose tool use came with the ETag of the files already placed
    needs no request. A tool use without one (read from the history when the stream reconnected, or a server that does
    not announce) is checked as before."""

    def __init__(self, config: dict[str, str], root: str) -> None:
        self.root = root
        self.base = f"{config['ANTHROPIC_BASE_URL'].rstrip('/')}/v1/sessions/{config['ANTHROPIC_SESSION_ID']}/inputs"
        self.token = sessions_token(config)
        self.placed: set[str] = set()  # resource ids in place (or reported)
        self.etag = ""  # of the last list whose files are all placed or reported: unchanged → 304, nothing to do
        self.announced: str | None = None  # the ETag the stream gave with the latest tool use (None: not known)
        self._lock: asyncio.Lock | None = None

    async def before_tool(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.etag and self.announced == self.etag:
                return  # nothing added since the files were placed, as of the tool use being run
            await asyncio.to_thread(self.once)

    def http_client(self) -> Any:
        """The worker's HTTP client (the SDK's defaults): its event streams ask for the inputs' ETag and are read
        through `announcements` before the SDK parses them."""
        from anthropic import DefaultAsyncHttpxClient
        from httpx2 import AsyncByteStream

        inputs = self

        class Announced(AsyncByteStream):  # (the type the SDK's HTTP library requires of a response stream)
            def __init__(self, stream: Any) -> None:
                self.stream = stream

            def __aiter__(self) -> AsyncIterator[bytes]:
                return read_announcements(self.stream, inputs)

            async def aclose(self) -> None:
                await self.stream.aclose()

        async def on_request(request: Any) -> None:
            if request.url.path.endswith("/events/stream"):
                request.headers[INPUTS_HEADER] = "announce"

        async def on_response(response: Any) -> None:
            if response.request.url.path.endswith("/events/stream") and "content-encoding" not in response.headers:
                self.announced = None  # a new stream: what the worker reads from the history was announced by none
                response.stream = Announced(response.stream)

        return DefaultAsyncHttpxClient(event_hooks={"request": [on_request], "response": [on_response]})

    def announcements(self, line: bytes, pending: str | None) -> str | None:
        """One line of the worker's event stream: returns the ETag announced in the frame so far."""
        if line.startswith(INPUTS_COMMENT):
            return line[len(INPUTS_COMMENT) :].decode(errors="replace").strip() or None
        if line == b"event: agent.tool_use":
            self.announced = pending  # (None: this tool use came without one)
        elif not line:
            return None  # the frame ended
        return pending

    def _open(self, path: str, body: bytes | None = None, etag: str = "") -> Any:
        import urllib.request

        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        if etag:
            headers["If-None-Match"] = etag
        req = urllib.request.Request(
            self.base + path, data=body, method="POST" if body is not None else "GET", headers=headers
        )
        return urllib.request.urlopen(req, timeout=120)

    def once(self) -> None:
        import urllib.error

        try:
            with self._open("", etag=self.etag) as resp:
                etag = resp.headers.get("etag") or ""
                files = json.loads(resp.read()).get("files") or []
        except urllib.error.HTTPError as exc:
            if exc.code != 304:  # (304: the files are the ones placed last time)
                print(f"sandbox: could not read the session's file resources: {exc}", file=sys.stderr, flush=True)
            return
        except (OSError, ValueError) as exc:
            print(f"sandbox: could not read the session's file resources: {exc}", file=sys.stderr, flush=True)
            return
        errors: list[dict[str, str]] = []
        for f in files:
            rid, mount_path = str(f.get("id")), str(f.get("mount_path") or "")
            dest = os.path.join(self.root, mount_path.lstrip("/"))
            if rid in self.placed:
                continue
            if ".." in mount_path.split("/") or not mount_path.startswith("/"):
                self.placed.add(rid)  # (the platform checks mount paths; never placed outside the root)
                continue
            if os.path.lexists(dest):  # put in place by the init container (or a link to where it put it)
                self.placed.add(rid)
                continue
            try:
                self._download(rid, str(f.get("sha256") or ""), dest)
            except OSError as exc:
                if isinstance(exc, (PermissionError, FileExistsError, NotADirectoryError, IsADirectoryError)):
                    self.placed.add(rid)  # not a passing failure: say so once, the next task places it
                    errors.append(
                        {
                            "resource_id": rid,
                            "type": "unknown_error",
                            "message": f"file resource {rid} was added while the sandbox ran, and the sandbox cannot"
                            f" write its mount path {mount_path} ({exc.strerror or exc}); it is in place from the"
                            " session's next sandbox",
                        }
                    )
                else:
                    print(f"sandbox: file resource {rid} not placed yet: {exc}", file=sys.stderr, flush=True)
            except ValueError as exc:
                print(f"sandbox: file resource {rid} not placed: {exc}", file=sys.stderr, flush=True)
        if errors:
            try:
                self._open("/errors", json.dumps({"errors": errors}).encode()).close()
            except OSError as exc:
                print(f"sandbox: could not report {len(errors)} file error(s): {exc}", file=sys.stderr, flush=True)
        if all(str(f.get("id")) in self.placed for f in files):
            self.etag = etag

    def _download(self, rid: str, sha256: str, dest: str) -> None:
        import hashlib
        import tempfile
        import urllib.parse

        os.makedirs(os.path.dirname(dest), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".part-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, self._open("/" + urllib.parse.quote(rid, safe="")) as resp:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if sha256 and digest.hexdigest() != sha256:
                raise ValueError(f"the bytes of file resource {rid} do not match their hash")
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
            self.placed.add(rid)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)


INPUTS_HEADER = "x-managed-agents-inputs"  # as api/sse.py (this module imports nothing of the platform)
INPUTS_COMMENT = b": managed-agents-inputs "
_LONGEST_LINE = 512  # the lines looked for are short; a longer one (event data) is not kept


async def read_announcements(chunks: AsyncIterator[bytes], inputs: InputsSync) -> AsyncIterator[bytes]:
    """The worker's event stream, read line by line for the inputs' announcements before the SDK parses it."""
    partial, pending = b"", None
    async for chunk in chunks:
        *lines, partial = (partial + chunk).split(b"\n")
        for line in lines:
            pending = inputs.announcements(line.rstrip(b"\r"), pending)
        if len(partial) > _LONGEST_LINE:
            partial = b"\0"  # (matches nothing: the rest of a long line)
        yield chunk


# -- the supervisor of an unisolated sandbox ---------------------------------------------------------------------


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


_stopping: list[int] = []  # the first stop signal; later ones are ignored, so the tree is always killed


def _on_signal(signum: int, _frame: object) -> None:
    if not _stopping:
        _stopping.append(signum)
        raise _Stopped(signum)


def _prctl(option: int, value: int) -> bool:
    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # not Linux
        return False


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def kill_tree(timeout: float = 10.0) -> None:
    """SIGKILL every descendant until none is left (killed parents hand their children to us, the subreaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.005)


def supervise(config: dict[str, str], server_pid: int) -> None:
    """Run the worker as a child and end its whole process tree with it; exit as the worker did."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    status: int | None = None
    stopped: int | None = None
    try:
        if not (_prctl(PR_SET_CHILD_SUBREAPER, 1) and _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)):
            _fail(EXIT_CONFIG, "supervising an unisolated sandbox needs Linux (prctl)")
        if os.getppid() != server_pid:  # the server died before the parent-death signal was armed
            raise _Stopped(signal.SIGTERM)
        child = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            env={**os.environ, "MANAGED_AGENTS_SANDBOX_CONFIG": "stdin"},
        )
        assert child.stdin is not None
        try:
            child.stdin.write(json.dumps(config).encode())
            child.stdin.close()
        except OSError:  # the worker died at once; its status says how
            pass
        while status is None:  # reap every adopted orphan until the worker itself ends
            pid, raw = os.wait()
            if pid == child.pid:
                status = os.waitstatus_to_exitcode(raw)
    except _Stopped as stop:
        stopped = stop.signum
    _stopping.append(0)
    kill_tree()
    code = -stopped if stopped is not None else status if status is not None else 1
    if code < 0:  # die as the worker did, so the provisioner reports the same signal
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
