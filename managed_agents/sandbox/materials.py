"""Session resources put in place for a Fargate sandbox by its init container, before the sandbox container starts.

The sandbox task (stacks/constructs/sandbox.py) has two containers from the same image: `init` (this program,
`essential: false`) and `sandbox` (entrypoint.py), which starts only once `init` exited 0 (`dependsOn: SUCCESS`).
They share two task volumes, mounted at `/mnt/session` and `/workspace` in both. RunTask gives `init` alone a
materialization token (`MANAGED_AGENTS_INIT_TOKEN`): it reads the session's resources through the API
(`GET /v1/environments/{env}/work/{work}/materials`: the manifest, with each repository's token;
`.../materials/files/{resource}`: a file's bytes) and dies once the sandbox's worker sends its first heartbeat. The
sandbox container never sees it, nor any repository token: the clone happens here, the token sent as an
`Authorization: Basic` header through git's environment configuration (`GIT_CONFIG_*`): not in argv, not in
`.git/config`.

What goes where (paths as the sandbox container sees them, under `MANAGED_AGENTS_INIT_ROOT`, `/` in the task):
- `file` resources under `/mnt/session/`: written there, read-only (root-owned, 0444, in root-owned directories);
  elsewhere: written to `/mnt/session/.resources/<resource>/<name>` and linked from their mount path by the sandbox
  entrypoint (as root, before it drops privileges; `LINKS_FILE` lists the links);
- `github_repository` resources under `/workspace/`: cloned there (the entrypoint hands `/workspace` to the sandbox
  user: read-write); elsewhere: cloned to `/workspace/.resources/<resource>` and linked;
- `/mnt/session/outputs`: created, owned by the sandbox user (the agent's outputs, collected by the platform);
- `/mnt/session/uploads`: root's, sticky and writable by all: file resources added while the sandbox runs are put
  there by the sandbox itself (entrypoint.py InputsSync, with its work token), before its next tool call.
A resource that cannot be put in place is reported (`POST .../materials/errors`): the platform logs a readable
`session.error` of the reference's type and the sandbox starts without it. Exit 0 when the manifest was read (whatever
failed per resource), 1 otherwise (the sandbox container then never starts and the work item's lease runs out).

Standard library only (the image has Python and git). The git helpers are also what the embedded server clones with
(services/materialize.py), so both sandbox kinds clone and classify failures alike.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

INIT_TOKEN_ENV = "MANAGED_AGENTS_INIT_TOKEN"
INIT_ROOT_ENV = "MANAGED_AGENTS_INIT_ROOT"
SANDBOX_UID_ENV = "MANAGED_AGENTS_SANDBOX_UID"
SESSION_DIR = "/mnt/session"
UPLOADS = "/mnt/session/uploads"
OUTPUTS = "/mnt/session/outputs"
WORKSPACE = "/workspace"
LINKS_FILE = "/mnt/session/.links.json"  # [{"path": mount path, "target": where it was put}], for entrypoint.py
CLONE_TIMEOUT_SECONDS = 600.0
HTTP_TIMEOUT_SECONDS = 60.0


class CloneError(Exception):
    """A clone or checkout that failed: `kind` is the reference's error type (`repository_*_error`)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def redacted(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname or "").geturl() if parts.username or parts.password else url


def git_env(home: str, token: str | None) -> dict[str, str]:
    """git's environment: no prompt, no system config, and the token (if any) as an HTTP header through git's
    environment configuration (never in argv, where the process list shows it, nor in `.git/config`)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "GIT_CONFIG_NOSYSTEM": "1"})
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader"}
            | {"GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}
        )
    return env


def clone(
    url: str,
    token: str | None,
    checkout: Mapping[str, Any] | None,
    dest: Path,
    *,
    git: str = "git",
    timeout: float = CLONE_TIMEOUT_SECONDS,
) -> None:
    """`git clone` of `url` into `dest` (at `checkout`: a branch, or a commit checked out detached); CloneError."""
    env = git_env(str(dest.parent), token)
    args = [git, "clone", "--quiet", "--no-tags"]
    if checkout and checkout.get("type") == "branch":
        args += ["--branch", str(checkout["name"]), "--single-branch"]
    args += ["--", url, str(dest)]
    run_git(args, env, url, token, timeout)
    if checkout and checkout.get("type") == "commit":
        sha = str(checkout["sha"])
        try:
            run_git([git, "-C", str(dest), "checkout", "--quiet", "--detach", sha], env, url, token, timeout)
        except CloneError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise CloneError(
                "repository_checkout_error", f"commit {sha} of {redacted(url)} could not be checked out: {exc.message}"
            ) from exc


def run_git(args: list[str], env: dict[str, str], url: str, token: str | None, timeout: float) -> None:
    try:
        done = subprocess.run(args, env=env, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CloneError("repository_clone_error", f"{redacted(url)} could not be cloned: {exc}") from exc
    if done.returncode == 0:
        return
    detail = done.stderr.decode(errors="replace").strip().splitlines()
    text = (detail[-1] if detail else f"git exited with {done.returncode}")[:500]
    if token:
        text = text.replace(token, "***")
    low = text.lower()
    kind = "repository_clone_error"
    if "authentication" in low or " 401" in low or "could not read username" in low:
        kind = "repository_authentication_error"
    elif " 403" in low:
        kind = "repository_forbidden_error"
    elif "not found" in low or " 404" in low:
        kind = "repository_not_found_error"
    elif "remote branch" in low:
        kind = "repository_checkout_error"
    raise CloneError(kind, f"{redacted(url)} could not be cloned: {text}")


# -- the init container ---------------------------------------------------------------------------------------------


class Init:
    def __init__(
        self, *, api_url: str, environment_id: str, work_id: str, token: str, root: Path, uid: int | None
    ) -> None:
        self.base = (
            f"{api_url.rstrip('/')}/v1/environments/{quote(environment_id, safe='')}/work/{quote(work_id, safe='')}"
            "/materials"
        )
        self.token = token
        self.root = root
        self.uid = uid  # the sandbox user, who owns the outputs directory and the repositories (None: not root)

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _request(self, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(
            self.base + path,
            data=body,
            method="POST" if body is not None else "GET",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        return urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_SECONDS)

    def prepare_dirs(self) -> None:
        # uploads: sticky and writable by all, so that the sandbox user places the files added while it runs
        # (entrypoint.py InputsSync) but cannot remove or replace the ones put here
        for path, owner, mode in ((SESSION_DIR, None, 0o755), (UPLOADS, None, 0o1777), (OUTPUTS, self.uid, 0o755)):
            where = self.at(path)
            where.mkdir(parents=True, exist_ok=True)
            os.chmod(where, mode)
            if owner is not None:
                os.chown(where, owner, owner)

    def run(self) -> int:
        self.prepare_dirs()
        if not self.token:
            return 0  # a session without file or repository resources
        try:
            with self._request("") as resp:
                manifest = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            print(f"init: could not read the session's resources: {exc}", file=sys.stderr, flush=True)
            return 1
        links: list[dict[str, str]] = []
        errors: list[dict[str, str]] = []
        for res in manifest.get("resources") or []:
            try:
                if res.get("type") == "file":
                    self.file(res, links)
                elif res.get("type") == "github_repository":
                    self.repository(res, links)
            except CloneError as exc:
                errors.append({"resource_id": str(res.get("id")), "type": exc.kind, "message": exc.message})
            except (OSError, ValueError) as exc:
                message = f"file resource {res.get('id')}: {exc}; it is not mounted at {res.get('mount_path')}"
                errors.append({"resource_id": str(res.get("id")), "type": "unknown_error", "message": message})
        self.at(LINKS_FILE).write_text(json.dumps(links))
        if errors:
            try:
                self._request("/errors", json.dumps({"errors": errors}).encode()).close()
            except OSError as exc:
                print(f"init: could not report {len(errors)} resource error(s): {exc}", file=sys.stderr, flush=True)
        return 0

    def file(self, res: Mapping[str, Any], links: list[dict[str, str]]) -> None:
        target = str(res["mount_path"])
        where = _placed(target, SESSION_DIR, f"{SESSION_DIR}/.resources/{res['id']}/{target.rsplit('/', 1)[-1]}", links)
        dest = self.at(where)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, self._request(f"/files/{quote(str(res['id']), safe='')}") as resp:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if res.get("sha256") and digest.hexdigest() != res["sha256"]:
                raise ValueError(f"the bytes of file {res.get('file_id')} do not match their hash")
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise ValueError(f"file {res.get('file_id')} could not be read ({exc.code}: {detail})") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)

    def repository(self, res: Mapping[str, Any], links: list[dict[str, str]]) -> None:
        target = str(res["mount_path"])
        where = _placed(target, WORKSPACE, f"{WORKSPACE}/.resources/{res['id']}", links)
        dest = self.at(where)
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        clone(str(res["url"]), res.get("authorization_token"), res.get("checkout"), dest)


def main() -> None:
    env = os.environ
    uid = int(env.get(SANDBOX_UID_ENV) or 1000) if os.geteuid() == 0 else None
    init = Init(
        api_url=env.get("ANTHROPIC_BASE_URL", ""),
        environment_id=env.get("ANTHROPIC_ENVIRONMENT_ID", ""),
        work_id=env.get("ANTHROPIC_WORK_ID", ""),
        token=env.pop(INIT_TOKEN_ENV, ""),
        root=Path(env.get(INIT_ROOT_ENV) or "/"),
        uid=uid,
    )
    raise SystemExit(init.run())


def _placed(target: str, volume: str, fallback: str, links: list[dict[str, str]]) -> str:
    """Where a resource mounted at `target` is written: there when it lies in the shared `volume`, else at `fallback`
    inside it, with a link from `target` for the sandbox entrypoint to make (it runs as root before dropping it)."""
    if target.startswith(volume + "/"):
        return target
    links.append({"path": target, "target": fallback})
    return fallback


if __name__ == "__main__":
    main()
