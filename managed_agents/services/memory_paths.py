"""The path rules of memories and the names of memory stores (api-reference §2.5)."""

from __future__ import annotations

import re
import unicodedata

from managed_agents.domain.errors import InvalidRequest
from managed_agents.wire.memory_stores import MAX_PATH_BYTES, MAX_PATH_SEGMENTS


def check_store_name(name: str) -> str:
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidRequest("name: must not contain control characters")
    return name


def mount_slug(name: str) -> str:
    """The store's folder under /mnt/memory/: its name lowercased, each run of other characters one '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "store"


def check_path(path: str, *, field: str = "path") -> str:
    """A memory path as the reference states it (§2.5): starts with '/', 1 to 20 segments, none empty, '.' or '..',
    no control or format characters (U+2028/2029 included), NFC, at most 1024 bytes of UTF-8; case-sensitive."""
    shown = repr(path[:100])
    if not path.startswith("/"):
        raise InvalidRequest(f"{field}: {shown} must start with '/'")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidRequest(f"{field}: must be at most {MAX_PATH_BYTES} bytes of UTF-8")
    for ch in path:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") or _noncharacter(ch):
            raise InvalidRequest(f"{field}: {shown} contains a control, format or non-character (U+{ord(ch):04X})")
    if unicodedata.normalize("NFC", path) != path:
        raise InvalidRequest(f"{field}: {shown} is not in Unicode normalization form C (NFC)")
    segments = path[1:].split("/")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise InvalidRequest(f"{field}: at most {MAX_PATH_SEGMENTS} segments, got {len(segments)}")
    for seg in segments:
        if seg in ("", ".", ".."):
            raise InvalidRequest(f"{field}: {shown} has an empty, '.' or '..' segment")
    return path


def _noncharacter(ch: str) -> bool:
    """U+FDD0..U+FDEF and the last two code points of every plane: never text (the path index sorts by them)."""
    cp = ord(ch)
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def check_prefix(prefix: str) -> str:
    """A list's `path_prefix`: a folder, ending in '/' ('/' alone is the whole store)."""
    if not prefix.endswith("/"):
        raise InvalidRequest(f"path_prefix: {prefix[:100]!r} must end with '/' (it matches whole segments)")
    if prefix != "/":
        check_path(prefix[:-1], field="path_prefix")
    return prefix
