"""Skill uploads larger than the API takes in one request (AWS: the Lambda request cap, 6,000,000 bytes), through a
presigned S3 POST, as files have (services/file_uploads.py):

1. `POST /v1/skills/uploads` `{skill_id?, display_name?}` → `{type: "skill_upload", upload_id, url, fields,
   expires_at, max_bytes}`: a POST policy for one zip archive (`application/zip`, 1 to `max_bytes` bytes), valid one
   hour. Without `skill_id` the upload becomes a new skill (`display_name` as `skills.create` takes it); with one, a
   new version of that skill (as `skills.versions.create`).
2. The client posts `fields` + the archive (the last form part) to `url`. The archive holds the skill folder's files
   under their upload paths (`my-skill/SKILL.md`, `my-skill/scripts/run.py`): exactly what a version's download is,
   so a downloaded version uploads again unchanged.
3. `POST /v1/skills/uploads/{upload_id}/complete` → the `skill` (or `skill_version`) that `skills.create` (or
   `versions.create`) would have answered: the archive's entries pass the same rules (wire paths, one top folder,
   SKILL.md, 8 MiB uncompressed, 1000 files) before anything is stored; the staged object is deleted either way
   (a refused archive is uploaded again with a new upload). An upload completes once (then 404).

The embedded server has no request cap below the skill limit and answers 400 here (its blob store cannot presign):
`skills.create` takes every skill directly there.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

from managed_agents.domain.errors import InvalidRequest, RequestTooLarge
from managed_agents.domain.events import JsonObject
from managed_agents.services.file_uploads import Staging
from managed_agents.services.skill_bundles import MAX_DISPLAY_NAME, MAX_SKILL_BYTES, MAX_SKILL_FILES
from managed_agents.services.skills import SkillService

SKILL_UPLOAD_PREFIX = "skupl_"
ARCHIVE_TYPE = "application/zip"
# the archive's size cap: the files (stored or deflated) plus zip headers and directory for up to 1000 entries
MAX_ARCHIVE_BYTES = MAX_SKILL_BYTES + 1024 * 1024


class SkillUploads:
    def __init__(self, skills: SkillService) -> None:
        self.skills = skills
        self.staging = Staging(skills.blobs, skills.svc.clock, prefix=SKILL_UPLOAD_PREFIX, noun="skill upload")

    def begin(self, ws: str, body: JsonObject) -> JsonObject:
        what = "skills.create and skills.versions.create take every skill directly"
        self.staging.presigner(what)
        unknown = sorted(set(body) - {"skill_id", "display_name"})
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: unknown field (fields: skill_id, display_name)")
        skill_id, display_name = body.get("skill_id"), body.get("display_name")
        if skill_id is not None:
            if not isinstance(skill_id, str):
                raise InvalidRequest("skill_id: a string")
            if display_name is not None:
                raise InvalidRequest("display_name: a new version takes none (the skill keeps its display_name)")
            self.skills.skills.record(ws, skill_id)  # 404 now rather than after the upload
        if display_name is not None and (
            not isinstance(display_name, str) or not 1 <= len(display_name) <= MAX_DISPLAY_NAME
        ):
            raise InvalidRequest(f"display_name: a string of 1 to {MAX_DISPLAY_NAME} characters")
        meta: JsonObject = {"skill_id": skill_id, "display_name": display_name}
        out = self.staging.begin(ws, meta, max_bytes=MAX_ARCHIVE_BYTES, content_type=ARCHIVE_TYPE, what=what)
        return {"type": "skill_upload", **out}

    def complete(self, ws: str, upload_id: str) -> JsonObject:
        key, meta, chunks = self.staging.staged(ws, upload_id)
        try:
            files = archive_files(_read(chunks, MAX_ARCHIVE_BYTES))
            skill_id = meta.get("skill_id")
            if skill_id is not None:
                return self.skills.create_version(ws, str(skill_id), files)
            display_name = meta.get("display_name")
            return self.skills.create(ws, files, str(display_name) if display_name is not None else None)
        finally:
            self.staging.discard(key)


def _read(chunks: Iterator[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the skill archive is more than {limit:,} bytes, the most a skill upload takes")
        parts.append(chunk)
    return b"".join(parts)


def archive_files(data: bytes) -> list[tuple[str, bytes]]:
    """The (path, bytes) of a skill archive's files, in archive order, for the upload rules (check_upload). Directory
    entries are skipped; sizes are counted as entries are inflated, so an archive cannot claim less than it holds."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InvalidRequest(f"files: the uploaded object is not a zip archive ({exc})") from None
    entries = [i for i in archive.infolist() if not i.is_dir()]
    if len(entries) > MAX_SKILL_FILES:
        raise InvalidRequest(f"files: at most {MAX_SKILL_FILES} files per skill version, got {len(entries)}")
    out: list[tuple[str, bytes]] = []
    left = MAX_SKILL_BYTES
    for info in entries:
        if info.flag_bits & 0x1:
            raise InvalidRequest(f"files: {info.filename[:200]!r} is encrypted; upload the files as they are")
        try:
            with archive.open(info) as fh:
                content = fh.read(left + 1)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
            raise InvalidRequest(f"files: {info.filename[:200]!r} cannot be read from the archive ({exc})") from None
        left -= len(content)
        if left < 0:
            raise InvalidRequest(
                f"files: the files add up to more than {MAX_SKILL_BYTES} bytes; a skill version holds at most"
                f" {MAX_SKILL_BYTES} bytes"
            )
        out.append((info.filename, content))
    return out
