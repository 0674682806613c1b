"""Blob keys, shared by both BlobStore adapters (directory and S3)."""

from __future__ import annotations

import re

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_key(key: str) -> str:
    """Keys are made by the services; a key that could leave the store's root is a bug, not user input."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"not a blob key: {key[:100]!r}")
    return key
