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

from managed_agents.domain.errors import ApiError
from managed_agents.ports import ResourceStore
from managed_agents.services.files import FileService

log = logging.getLogger("managed_agents.outputs")
MAX_OUTPUTS = 1000


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
        ws = sess.workspace_id
        with self._lock(session_id):
            known = {
                str(r.doc.get("_output_path")): r
                for r in self.files.files.iterate(ws, include_archived=True, scope_id=session_id)
            }
            made: list[str] = []
            for rel, fd in _regular_files(outputs):
                with os.fdopen(fd, "rb") as fh:
                    digest = _sha256(fh)
                    old = known.get(rel)
                    if old is not None and old.doc.get("_sha256") == digest:
                        continue
                    if len(known) + len(made) >= MAX_OUTPUTS and old is None:
                        log.warning("too many outputs", extra={"session_id": session_id, "limit": MAX_OUTPUTS})
                        break
                    fh.seek(0)
                    try:
                        meta = self.files.upload(ws, fh, filename=None, scope_id=session_id, output_path=rel)
                    except ApiError as exc:
                        log.warning("output not collected", extra={"session_id": session_id, "reason": exc.message})
                        continue
                made.append(str(meta["id"]))
                if old is not None:
                    self.files.delete(ws, old.id)
            return made


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
