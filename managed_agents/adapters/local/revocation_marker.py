"""Credential revocations as the length of one file in the data dir, for every process that serves it.

A revocation appends a byte (an `O_APPEND` write of one byte is atomic), so the length only grows and never repeats:
a process that cached a credential when the length was N knows that a revocation happened since, by any process
on the same data dir (the `keys revoke` CLI beside a running server, another worker of `serve --workers N`), as
soon as it reads a longer file. A read is one `stat`, cheap enough for every request (services/keys.py).

The same file kind, `webhooks.enabled`, is marked before an endpoint is enabled: while it is empty no process needs
to look for enabled endpoints when it logs an event (services/webhooks.py `any_enabled`).
"""

from __future__ import annotations

import os
from pathlib import Path


class FileRevocationMarker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)

    def version(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0
