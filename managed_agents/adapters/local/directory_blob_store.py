"""The embedded BlobStore: one file per key under a directory of the data dir, written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from managed_agents.adapters.blob_keys import check_key
from managed_agents.domain.errors import NotFound, RequestTooLarge
from managed_agents.ports import BlobInfo

CHUNK = 1 << 20


class DirectoryBlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(
        self, key: str, data: BinaryIO, *, max_bytes: int, content_type: str = "application/octet-stream"
    ) -> BlobInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := data.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise RequestTooLarge(f"the content is larger than the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return BlobInfo(size=size, sha256=digest.hexdigest())

    def open(self, key: str) -> Iterator[bytes]:
        try:
            fh = self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key!r} not found") from exc
        return _chunks(fh)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(CHUNK):
            yield chunk
