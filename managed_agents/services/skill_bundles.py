"""Skill uploads (api-reference §2.7; SDK `resources/beta/skills/*`): the rules of a `files[]` upload.

A skill upload is a folder: every part of a multipart `files[]` upload names its path (`my-skill/SKILL.md`,
`my-skill/scripts/run.py`), all under one top folder with `SKILL.md` at its root, whose YAML frontmatter gives the
skill's `name` (immutable kebab-case slug; the folder name when absent) and `description`. These checks are pure:
the service stores what passes them, byte for byte.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from managed_agents.domain.errors import InvalidRequest

MAX_SKILL_BYTES = 8 * 1024 * 1024  # all files of one version together, uncompressed
MAX_SKILL_FILES = 1000
MAX_PATH_BYTES = 1024
MAX_NAME = 64
MAX_DESCRIPTION = 1024
MAX_DISPLAY_NAME = 255
SKILL_FILE = "SKILL.md"
# what a `files[]` upload may carry over the limit of its files (multipart framing, part headers, display_name)
UPLOAD_OVERHEAD_BYTES = 2 * 1024 * 1024
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class SkillFile:
    path: str  # as uploaded: `<top>/<relative path>`
    data: bytes


@dataclass(frozen=True)
class SkillBundle:
    """One upload that passed the rules: its files in upload order and what SKILL.md says."""

    top: str
    name: str
    description: str
    frontmatter_name: str | None
    files: tuple[SkillFile, ...]

    @property
    def size(self) -> int:
        return sum(len(f.data) for f in self.files)


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(f"files: {message}")


def check_path(path: str) -> tuple[str, ...]:
    """The segments of an uploaded file's path; 400 for anything that could land outside the skill's folder."""
    shown = repr(path[:200])
    if not path:
        raise _bad("a file part has no filename; name each part with its path, e.g. 'my-skill/SKILL.md'")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise _bad(f"path {shown} is longer than {MAX_PATH_BYTES} bytes")
    if "\\" in path:
        raise _bad(f"path {shown} contains a backslash; use '/' between folders")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise _bad(f"path {shown} is absolute; paths are relative to the upload, e.g. 'my-skill/SKILL.md'")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in path):
        raise _bad(f"path {shown} contains a control or format character")
    parts = tuple(path.split("/"))
    if any(p == ".." for p in parts):
        raise _bad(f"path {shown} contains a '..' segment (path traversal)")
    if any(p in ("", ".") for p in parts):
        raise _bad(f"path {shown} contains an empty or '.' segment")
    if len(parts) < 2:
        raise _bad(f"path {shown} is not inside a folder; put every file under one top folder, e.g. 'my-skill/'")
    return parts


def parse_frontmatter(text: str) -> dict[str, str]:
    """The top-level string keys of a SKILL.md's YAML frontmatter (`name`, `description`, ...).

    A small reader of the subset skills use: `key: value` (plain, single- or double-quoted) and block scalars
    (`key: |` / `key: >`, indented lines after). Nested mappings and lists are skipped."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise _bad(f"{SKILL_FILE} must begin with YAML frontmatter: a '---' line, 'name:' and 'description:', '---'")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise _bad(f"{SKILL_FILE}: the YAML frontmatter is not closed by a '---' line") from None
    out: dict[str, str] = {}
    body = lines[1:end]
    i = 0
    while i < len(body):
        line = body[i]
        i += 1
        match = re.match(r"^([A-Za-z0-9_-]+):(?:\s+(.*))?$", line.rstrip())
        if not match or line[:1].isspace():
            continue
        key, value = match.group(1), (match.group(2) or "").strip()
        if value[:1] in ("|", ">"):
            block: list[str] = []
            while i < len(body) and (not body[i].strip() or body[i][:1].isspace()):
                block.append(body[i].strip())
                i += 1
            joiner = "\n" if value[0] == "|" else " "
            out[key] = joiner.join(block).strip()
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in ("'", '"'):
            value = value[1:-1].replace("''", "'") if value[0] == "'" else value[1:-1].replace('\\"', '"')
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        if value:
            out[key] = value
    return out


def check_upload(files: Sequence[tuple[str, bytes]]) -> SkillBundle:
    """Apply the upload rules (api-reference §2.7) to `(path, bytes)` parts; 400 naming the first broken rule."""
    if not files:
        raise _bad(f"no files were uploaded; send the skill's folder as `files[]` parts, {SKILL_FILE} included")
    if len(files) > MAX_SKILL_FILES:
        raise _bad(f"at most {MAX_SKILL_FILES} files per skill version, got {len(files)}")
    total = sum(len(data) for _, data in files)
    if total > MAX_SKILL_BYTES:
        raise _bad(f"the files add up to {total} bytes; a skill version holds at most {MAX_SKILL_BYTES} bytes")
    seen: set[str] = set()
    tops: list[str] = []
    for path, _ in files:
        parts = check_path(path)
        if path in seen:
            raise _bad(f"path {path[:200]!r} was uploaded twice")
        seen.add(path)
        if parts[0] not in tops:
            tops.append(parts[0])
    if len(tops) > 1:
        listed = ", ".join(repr(t[:100]) for t in tops[:5])
        raise _bad(f"all files must be under one top folder, got {len(tops)}: {listed}")
    top = tops[0]
    skill_md = next((data for path, data in files if path == f"{top}/{SKILL_FILE}"), None)
    if skill_md is None:
        raise _bad(f"{SKILL_FILE} is missing at the root of the top folder: upload '{top[:100]}/{SKILL_FILE}'")
    try:
        text = skill_md.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"{SKILL_FILE} is not UTF-8 text") from None
    front = parse_frontmatter(text)
    description = front.get("description", "").strip()
    if not description:
        raise _bad(f"{SKILL_FILE}: the frontmatter has no 'description' (what the skill does and when to use it)")
    if len(description) > MAX_DESCRIPTION:
        raise _bad(f"{SKILL_FILE}: 'description' is {len(description)} characters; at most {MAX_DESCRIPTION}")
    fm_name = front.get("name")
    name = fm_name if fm_name is not None else top
    if len(name) > MAX_NAME or not _SLUG.match(name):
        where = "the frontmatter 'name'" if fm_name is not None else "the top folder's name (no frontmatter 'name')"
        raise _bad(
            f"{SKILL_FILE}: {where} {name[:100]!r} is not a skill name: lowercase letters, digits and single"
            f" hyphens, at most {MAX_NAME} characters"
        )
    return SkillBundle(top, name, description, fm_name, tuple(SkillFile(p, d) for p, d in files))
