"""Session resources put in place for a sandbox, by the platform, before its worker starts (architecture: "Inputs
and outputs").

`Materializer.prepare(session_id, stage)` writes a session's resources into `stage`, a directory *outside* the
sandbox's reach, and returns the mounts that put them at their mount paths:
- a `file` resource: its bytes copied from the blob store (checked against the stored SHA-256), mounted read-only;
  files at the default `/mnt/session/uploads/<file_id>` go into one read-only directory mounted there, so a file
  added while the sandbox runs appears at once (`add_live`);
- a `github_repository`: `git clone` run here, with the token in an `http.extraHeader` passed through git's
  environment configuration (`GIT_CONFIG_*`): never in argv, never in `.git/config`, never in the sandbox; cloned
  once per session and kept across sandbox restarts (the agent's edits survive); mounted read-write;
- `/mnt/session/outputs`: the session's outputs directory, mounted read-write (collected by the outputs step);
- `/mnt/memory`, when the session has memory stores: an empty writable directory the worker mounts them in.
A resource that cannot be put in place (a deleted or expired file, a clone that fails) is a `session.error` of the
reference's type (`repository_*_error`, else `unknown_error`), with `retry_status: retrying`: the sandbox starts
without it, as the hosted API does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import cast

from managed_agents.domain.errors import ApiError, DuplicateEvent
from managed_agents.domain.events import JsonObject, NewEvent
from managed_agents.domain.ids import deterministic_event_id
from managed_agents.ports import EventStore, Mount, ResourceStore
from managed_agents.sandbox.materials import CloneError, clone
from managed_agents.services.files import FileService, blob_key
from managed_agents.services.memory_stores import MEMORY_MOUNT_ROOT
from managed_agents.services.session_resources import OUTPUTS_DIR, UPLOADS_DIR, repository_token, resources_of

log = logging.getLogger("managed_agents.materialize")
CLONE_TIMEOUT_SECONDS = 600.0


class MaterializeError(Exception):
    def __init__(self, error_type: str, message: str, *, repository_url: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.repository_url = repository_url

    def event_error(self) -> JsonObject:
        error: JsonObject = {"type": self.error_type, "message": self.message, "retry_status": {"type": "retrying"}}
        if self.error_type.startswith("repository_"):
            error["repository_url"] = self.repository_url
        return error


class Materializer:
    def __init__(
        self,
        resources: ResourceStore,
        events: EventStore,
        files: FileService | None,
        *,
        git: str = "git",
        clone_timeout: float = CLONE_TIMEOUT_SECONDS,
    ) -> None:
        self.resources = resources
        self.events = events
        self.files = files
        self.git = git
        self.clone_timeout = clone_timeout
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, session_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(session_id, threading.Lock())

    def prefetch(self, session_id: str, stage: Path) -> None:
        """At session create: put a cloud session's resources in place ahead of its first sandbox, in a thread (the
        clone then overlaps the first model turn instead of delaying the first tool call)."""
        sess = self.resources.get_by_id("session", session_id)
        if sess is None or sess.doc.get("_environment_type") != "cloud" or not resources_of(sess.doc):
            return
        threading.Thread(
            target=self.prepare, args=(session_id, stage, "create"), name=f"prefetch-{session_id}", daemon=True
        ).start()

    def prepare(self, session_id: str, stage: Path, attempt: str = "") -> list[Mount]:
        """Put the session's resources into `stage` and return their mounts (outputs and uploads directories
        first); one call per session at a time. A failure is a `session.error` (once per resource and version of
        it: a token rotation tries again), never raised. `attempt` names the caller in logs."""
        with self._lock(session_id):
            return self._prepare(session_id, stage, attempt)

    def _prepare(self, session_id: str, stage: Path, attempt: str) -> list[Mount]:
        sess = self.resources.get_by_id("session", session_id)
        stage.mkdir(parents=True, exist_ok=True, mode=0o700)
        uploads, outputs = stage / "uploads", stage / "outputs"
        uploads.mkdir(exist_ok=True)
        outputs.mkdir(exist_ok=True)
        mounts = [Mount(uploads, UPLOADS_DIR, True), Mount(outputs, OUTPUTS_DIR, False)]
        if sess is None:
            return mounts
        errors: list[tuple[str, MaterializeError]] = []
        for res in resources_of(sess.doc):
            rid = str(res.get("id") or "")
            try:
                if res.get("type") == "file":
                    mount = self._file(sess.workspace_id, res, stage)
                elif res.get("type") == "github_repository":
                    mount = self._repository(res, repository_token(sess.doc, rid), stage)
                else:
                    continue  # memory stores: one mount for all (memory_mount below), filled by the worker
                if mount is not None:
                    mounts.append(mount)
            except MaterializeError as exc:
                errors.append((f"{rid}@{res.get('updated_at')}", exc))
        if any(res.get("type") == "memory_store" for res in resources_of(sess.doc)):
            mounts.append(memory_mount(stage))
        self._report(session_id, errors, attempt)
        return mounts

    def add_live(self, session_id: str, stage: Path, resource: JsonObject) -> None:
        """A file resource added while a sandbox runs: copied now when its mount path is in the uploads directory
        (mounted as a whole); elsewhere it is mounted by the next sandbox."""
        sess = self.resources.get_by_id("session", session_id)
        if sess is None or resource.get("type") != "file" or not stage.exists():
            return
        try:
            with self._lock(session_id):
                self._file(sess.workspace_id, resource, stage)
        except MaterializeError as exc:
            self._report(session_id, [(f"{resource.get('id')}@{resource.get('updated_at')}", exc)], "live")

    # -- files ------------------------------------------------------------------------------------------------

    def _file(self, ws: str, res: JsonObject, stage: Path) -> Mount | None:
        file_id, target = str(res["file_id"]), str(res["mount_path"])
        if self.files is None:
            raise MaterializeError("unknown_error", f"file {file_id}: this deployment has no Files API")
        in_uploads = target.startswith(UPLOADS_DIR + "/") and "/" not in target[len(UPLOADS_DIR) + 1 :]
        dest = stage / "uploads" / target.rsplit("/", 1)[-1] if in_uploads else stage / "files" / str(res["id"])
        try:
            rec = self.files.record(ws, file_id)
        except ApiError as exc:
            dest.unlink(missing_ok=True)  # a copy made while the file lived (a prefetch) goes with it
            raise MaterializeError(
                "unknown_error", f"file resource {res.get('id')}: {exc.message}; it is not mounted at {target}"
            ) from exc
        expected = self.files.sha256(rec)
        if dest.exists() and (not expected or _sha256(dest) == expected):
            return None if in_uploads else Mount(dest, target, True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.files.blobs.open(blob_key(ws, file_id)):
                    digest.update(chunk)
                    out.write(chunk)
            if expected and digest.hexdigest() != expected:
                raise MaterializeError(
                    "unknown_error", f"file {file_id}: its stored bytes do not match their hash; not mounted"
                )
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        except ApiError as exc:
            raise MaterializeError("unknown_error", f"file {file_id}: {exc.message}; not mounted at {target}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)
        return None if in_uploads else Mount(dest, target, True)

    # -- repositories -----------------------------------------------------------------------------------------

    def _repository(self, res: JsonObject, token: str | None, stage: Path) -> Mount:
        url, target = str(res["url"]), str(res["mount_path"])
        dest = stage / "repos" / str(res["id"])
        if not (dest / ".git").exists():
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._clone(url, token, cast(JsonObject | None, res.get("checkout")), dest)
        return Mount(dest, target, False)

    def _clone(self, url: str, token: str | None, checkout: JsonObject | None, dest: Path) -> None:
        try:
            clone(url, token, checkout, dest, git=self.git, timeout=self.clone_timeout)
        except CloneError as exc:
            raise MaterializeError(exc.kind, exc.message, repository_url=url) from exc

    # -- errors -----------------------------------------------------------------------------------------------

    def _report(self, session_id: str, errors: list[tuple[str, MaterializeError]], attempt: str) -> None:
        report_errors(self.events, session_id, errors, attempt)


def report_errors(events: EventStore, session_id: str, errors: list[tuple[str, MaterializeError]], by: str) -> None:
    """One `session.error` per resource and version of it (`key`: `<resource id>@<updated_at>`): an error already
    reported is skipped, a token rotation (a new version) tries again."""
    for key, exc in errors:
        log.warning("resource not materialized", extra={"session_id": session_id, "resource": key, "by": by})
        event = NewEvent(
            deterministic_event_id(session_id, f"materialize@{key}"), "session.error", {"error": exc.event_error()}
        )
        try:
            events.append(session_id, [event])
        except DuplicateEvent:
            pass


def memory_mount(stage: Path) -> Mount:
    """Where the official worker mounts the session's memory stores (`/mnt/memory/<slug>`, through the memory API
    with its work token): one writable directory, empty at every sandbox start, since the worker refuses a store
    folder that already exists (a dead run's leftovers it could upload). What a run wrote is in the store already:
    the worker saves a `write`/`edit` at once and syncs other changes while it runs and when it ends."""
    memory = stage / "memory"
    shutil.rmtree(memory, ignore_errors=True)
    memory.mkdir(mode=0o700)
    return Mount(memory, MEMORY_MOUNT_ROOT, False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
