"""A session's outputs: what its sandbox wrote under `/mnt/session/outputs/` becomes Files API files with
`scope: {type: "session", id}` (listable with `files.list(scope_id=<session id>)`, downloadable).

The outputs directory lives on the platform's side (the embedded sandbox mounts it read-write; services/
materialize.py), so nothing written there is lost when a sandbox dies or is replaced. `collect` runs whenever the
session goes idle and whenever its sandbox stops; it is idempotent: one file per output path, replaced (new id, the
old one deleted) when the content at that path changed, left alone when it did not. The sandbox's own files are read
without following any symbolic link (`os.fwalk` and `O_NOFOLLOW`): a link planted in the outputs directory never
makes the platform read a file of its own. At most MAX_OUTPUTS files per session; larger files than the Files API
takes are skipped (logged).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from managed_agents.domain.errors import ApiError, InvalidRequest, NotFound
from managed_agents.ports import Record, ResourceStore
from managed_agents.services.files import FileService

log = logging.getLogger("managed_agents.outputs")
MAX_OUTPUTS = 1000
_FULL = "\x00full"  # _store: the session has MAX_OUTPUTS already


class OutputCollector:
    def __init__(self, resources: ResourceStore, files: FileService) -> None:
        self.resources = resources
        self.files = files
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, session_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(session_id, threading.Lock())

    def collect(self, session_id: str, outputs: Path) -> list[str]:
        """Store new or changed outputs as session-scoped files; returns the ids of the files made."""
        sess = self.resources.get_by_id("session", session_id)
        if sess is None or sess.doc.get("_deleted") or not outputs.is_dir():
            return []
        with self._lock(session_id):
            known = self._known(sess.workspace_id, session_id)
            made: list[str] = []
            for rel, fd in _regular_files(outputs):
                with os.fdopen(fd, "rb") as fh:
                    fid = self._store(sess.workspace_id, session_id, known, rel, fh)
                    if fid == _FULL:
                        break
                if fid:
                    made.append(fid)
            return made

    def put(self, session_id: str, rel: str, fh: BinaryIO) -> str | None:
        """One output sent by the sandbox (Fargate: its entrypoint, with its work token): stored as `collect` stores
        a file it found; the id of the file made, None when that path already holds these bytes."""
        rel = clean_output_path(rel)
        sess = self.resources.get_by_id("session", session_id)
        if sess is None or sess.doc.get("_deleted"):
            raise NotFound(f"session {session_id!r} not found")
        with self._lock(session_id):
            fid = self._store(sess.workspace_id, session_id, self._known(sess.workspace_id, session_id), rel, fh)
        if fid == _FULL:
            raise InvalidRequest(f"this session has {MAX_OUTPUTS} outputs already, the most it may have")
        return fid

    def _known(self, ws: str, session_id: str) -> dict[str, Record]:
        return {
            str(r.doc.get("_output_path")): r
            for r in self.files.files.iterate(ws, include_archived=True, scope_id=session_id)
        }

    def _store(self, ws: str, session_id: str, known: dict[str, Record], rel: str, fh: BinaryIO) -> str | None:
        """Store `fh` as the output at `rel` unless that path holds these bytes already (then None); the file it
        replaces is deleted. `_FULL` when the session has its MAX_OUTPUTS already; None (logged) when refused."""
        digest = _sha256(fh)
        old = known.get(rel)
        if old is not None and old.doc.get("_sha256") == digest:
            return None
        if len(known) >= MAX_OUTPUTS and old is None:
            log.warning("too many outputs", extra={"session_id": session_id, "limit": MAX_OUTPUTS})
            return _FULL
        fh.seek(0)
        try:
            meta = self.files.upload(ws, fh, filename=None, scope_id=session_id, output_path=rel)
        except ApiError as exc:
            log.warning("output not collected", extra={"session_id": session_id, "reason": exc.message})
            return None
        fid = str(meta["id"])
        known[rel] = self.files.files.record(ws, fid)
        if old is not None:
            self.files.delete(ws, old.id)
        return fid


def clean_output_path(rel: str) -> str:
    """A path relative to the outputs directory, as the sandbox names it: no empty, `.` or `..` part."""
    parts = rel.split("/")
    if not rel or len(rel) > 1000 or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        raise InvalidRequest(f"output path {rel[:200]!r}: a relative path without empty, '.' or '..' parts")
    return rel


def _regular_files(root: Path) -> Iterator[tuple[str, int]]:
    """(path relative to root, an open descriptor the caller closes) of each regular file under root, links never
    followed (the directory descriptors of `os.fwalk` keep a swapped-in link from redirecting the walk)."""
    for dirpath, _, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        for name in sorted(filenames):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
            except OSError:  # a link, a file removed meanwhile
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                continue
            yield os.path.relpath(os.path.join(dirpath, name), root), fd


def _sha256(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()
