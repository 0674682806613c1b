"""Skills: custom skills and their immutable versions (api-reference §2.7, §4.4).

A skill (`skill_…`) holds versions (`skillver_…`); each version is one upload that passed the rules of
wire/skills.py, kept as a zip of exactly the uploaded paths and bytes in the blob store (the download is that
zip). The skill's `name` (the mount folder, `{workdir}/skills/<name>/` in the sandbox) is fixed by its first
upload; every later version must say the same. `latest` addresses the newest version.

Agents reference skills as `{type: "custom", skill_id, version?}`: checked when the agent is created or updated,
resolved to a concrete version when a session starts (the session's snapshot pins it). A session's work token may
read exactly the versions its session pins, nothing else (the official worker downloads them).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import cast

from managed_agents.domain.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_id
from managed_agents.ports import BlobStore, ListQuery, Record, ResourceStore
from managed_agents.services.common import Services
from managed_agents.services.crud import Collection, Kind, Page
from managed_agents.services.keys import Principal
from managed_agents.services.skill_bundles import MAX_DISPLAY_NAME, MAX_SKILL_BYTES, SkillBundle, check_upload

SKILL = Kind("skill", lambda: new_id("skill"), not_found_code="skill_not_found")
SKILL_VERSION = Kind("skill_version", lambda: new_id("skill_version"), noun="skill version")
LATEST = "latest"
SOURCES = ("custom", "anthropic")
# a fixed timestamp in every archive entry: the same upload always gives the same zip
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _without_archived(doc: JsonObject) -> JsonObject:
    doc.pop("archived_at", None)  # skills and their versions are deleted, never archived
    return doc


def archive_bytes(bundle: SkillBundle) -> bytes:
    """The zip of an upload: its paths and bytes as sent, in upload order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in bundle.files:
            info = zipfile.ZipInfo(f.path, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, f.data)
    return buf.getvalue()


def blob_key(ws: str, skill_id: str, version_id: str) -> str:
    return f"skills/{ws}/{skill_id}/{version_id}.zip"


class SkillService:
    def __init__(self, svc: Services, blobs: BlobStore) -> None:
        self.svc = svc
        self.blobs = blobs
        self.skills = Collection(svc, SKILL, view=_without_archived)
        self.versions = Collection(svc, SKILL_VERSION, view=_without_archived)

    # -- skills ---------------------------------------------------------------------------------------------------

    def create(self, ws: str, files: Sequence[tuple[str, bytes]], display_name: str | None) -> JsonObject:
        bundle = check_upload(files)
        if display_name is not None and not 1 <= len(display_name) <= MAX_DISPLAY_NAME:
            raise InvalidRequest(f"display_name: must be 1 to {MAX_DISPLAY_NAME} characters, got {len(display_name)}")
        if display_name is not None and ("\n" in display_name or "\r" in display_name):
            raise InvalidRequest("display_name: must be a single line")
        taken, _ = self.svc.resources.list_records(SKILL.name, ws, ListQuery(limit=1, equals={"name": bundle.name}))
        if taken:
            raise Conflict(
                f"files: skill {taken[0].id!r} of this workspace is already named {bundle.name!r}; add a version to"
                " it, or give SKILL.md another 'name'",
                error_code="skill_name_taken",
            )
        skill_id = SKILL.new_id()
        version = self._store_version(ws, skill_id, bundle)
        fields: JsonObject = {
            "display_name": display_name or bundle.frontmatter_name or bundle.name,
            "latest_version_id": version.id,
            "source": {"type": "custom"},
            "_name": bundle.name,
        }
        try:
            return self.skills.create(ws, fields, attrs={"name": bundle.name}, id_=skill_id)
        except BaseException:
            self._drop_version(version)
            raise

    def get(self, ws: str, skill_id: str) -> JsonObject:
        return self.skills.get(ws, skill_id)

    def list_skills(self, ws: str, query: ListQuery, source: str | None) -> Page:
        if source is not None and source not in SOURCES:
            raise InvalidRequest(f"source: must be one of {', '.join(SOURCES)}, got {source[:64]!r}")
        if source == "anthropic":
            return [], None  # this server publishes no skills of its own
        return self.skills.list(ws, query)

    def delete(self, ws: str, skill_id: str) -> JsonObject:
        """The skill and every version of it, bytes included."""
        self.skills.record(ws, skill_id)
        for rec in list(self.versions.iterate(ws, include_archived=True, skill_id=skill_id)):
            self._drop_version(rec)
        return self.skills.delete(ws, skill_id)

    # -- versions -------------------------------------------------------------------------------------------------

    def _store_version(self, ws: str, skill_id: str, bundle: SkillBundle) -> Record:
        version_id = SKILL_VERSION.new_id()
        key = blob_key(ws, skill_id, version_id)
        self.blobs.put(
            key, io.BytesIO(archive_bytes(bundle)), max_bytes=2 * MAX_SKILL_BYTES, content_type="application/zip"
        )
        fields: JsonObject = {
            "skill_id": skill_id,
            "name": bundle.name,
            "description": bundle.description,
            "_blob": key,
            "_size": bundle.size,
        }
        try:
            return self.versions.insert(ws, fields, attrs={"skill_id": skill_id}, id_=version_id)
        except BaseException:
            self.blobs.delete(key)
            raise

    def _drop_version(self, rec: Record) -> None:
        self.svc.resources.delete(SKILL_VERSION.name, rec.workspace_id, rec.id)
        self.blobs.delete(str(rec.doc["_blob"]))

    def create_version(self, ws: str, skill_id: str, files: Sequence[tuple[str, bytes]]) -> JsonObject:
        skill = self.skills.record(ws, skill_id)
        bundle = check_upload(files)
        name = str(skill.doc["_name"])
        if bundle.name != name:
            raise InvalidRequest(
                f"files: this upload's skill name is {bundle.name!r}, but skill {skill_id!r} is named {name!r};"
                " a skill's name is fixed by its first version"
            )
        version = self._store_version(ws, skill_id, bundle)

        def point(r: Record) -> None:
            r.doc["latest_version_id"] = version.id
            r.doc["updated_at"] = version.doc["created_at"]

        try:
            self.skills.change(skill, point)
        except BaseException:
            self._drop_version(version)
            raise
        return self.versions.render(version.doc)

    def version_record(self, ws: str, skill_id: str, version: str) -> Record:
        skill = self.skills.record(ws, skill_id)
        version_id = str(skill.doc["latest_version_id"]) if version == LATEST else version
        rec = self.svc.resources.get(SKILL_VERSION.name, ws, version_id)
        if rec is None or rec.doc.get("skill_id") != skill_id:
            raise NotFound(f"skill {skill_id!r} has no version {version[:100]!r}", error_code="skill_version_not_found")
        return rec

    def get_version(self, ws: str, skill_id: str, version: str) -> JsonObject:
        return self.versions.render(self.version_record(ws, skill_id, version).doc)

    def list_versions(self, ws: str, skill_id: str, query: ListQuery) -> Page:
        self.skills.record(ws, skill_id)
        return self.versions.list(ws, replace(query, equals={"skill_id": skill_id}))

    def delete_version(self, ws: str, skill_id: str, version: str) -> JsonObject:
        """Delete one version; the skill's `latest` moves to the newest one left. A skill always holds a version:
        deleting its only one is refused (delete the skill instead)."""
        rec = self.version_record(ws, skill_id, version)
        newest_others = [
            r for r in self.versions.iterate(ws, include_archived=True, skill_id=skill_id) if r.id != rec.id
        ]
        if not newest_others:
            raise InvalidRequest(
                f"version {rec.id!r} is the only version of skill {skill_id!r}; delete the skill instead"
            )
        successor = newest_others[-1].id

        def repoint(r: Record) -> None:
            if r.doc["latest_version_id"] == rec.id:
                r.doc["latest_version_id"] = successor

        self.skills.change(self.skills.record(ws, skill_id), repoint)
        self._drop_version(rec)
        return {"id": rec.id, "type": "skill_version_deleted"}

    def download(self, ws: str, skill_id: str, version: str) -> tuple[str, Iterator[bytes]]:
        """The version's zip: a file name (`<name>.zip`) and its bytes."""
        rec = self.version_record(ws, skill_id, version)
        return f"{rec.doc['name']}.zip", self.blobs.open(str(rec.doc["_blob"]))

    # -- who may read ---------------------------------------------------------------------------------------------

    def check_work_access(self, p: Principal, session: Record, skill_id: str, version: str) -> None:
        """A work token reads exactly the skill versions its session pins (404 for anything else, as if absent)."""
        allowed = {
            str(ref.get("version"))
            for ref in session_skill_refs(cast(JsonObject, session.doc.get("agent") or {}))
            if ref.get("type") == "custom" and ref.get("skill_id") == skill_id
        }
        if not allowed:
            raise NotFound(f"skill {skill_id!r} not found", error_code="skill_not_found")
        skill = self.skills.record(p.workspace_id, skill_id)
        latest = str(skill.doc["latest_version_id"])
        wanted = latest if version == LATEST else version
        if wanted not in allowed and not (LATEST in allowed and wanted == latest):
            raise PermissionDenied(f"the session's work token cannot read version {version[:100]!r} of this skill")


def session_skill_refs(agent: JsonObject) -> Iterator[JsonObject]:
    """The skill references of a session's agent and of every agent definition nested in it (subagents)."""
    yield from cast(list[JsonObject], agent.get("skills") or [])
    stack: list[object] = [agent.get("multiagent")]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("skills"), list) and item is not agent:
                yield from cast(list[JsonObject], item["skills"])
            stack.extend(v for k, v in item.items() if k != "skills")
        elif isinstance(item, list):
            stack.extend(item)


def check_skill_refs(resources: ResourceStore, ws: str, skills: list[JsonObject], *, field: str = "skills") -> None:
    """An agent's custom skill references name skills (and versions) of the workspace (400 otherwise)."""
    seen: set[str] = set()
    for i, ref in enumerate(skills):
        if ref.get("type") != "custom":
            continue
        skill_id = str(ref["skill_id"])
        if skill_id in seen:
            raise InvalidRequest(f"{field}[{i}]: skill {skill_id!r} is listed twice")
        seen.add(skill_id)
        _resolve(resources, ws, skill_id, str(ref.get("version") or LATEST), f"{field}[{i}]")


def resolve_skill_refs(resources: ResourceStore, ws: str, skills: list[JsonObject]) -> list[JsonObject]:
    """The references with each custom `latest` replaced by the version it names now (a session pins them)."""
    out: list[JsonObject] = []
    for i, ref in enumerate(skills):
        if ref.get("type") != "custom":
            out.append(ref)
            continue
        version = _resolve(resources, ws, str(ref["skill_id"]), str(ref.get("version") or LATEST), f"skills[{i}]")
        out.append({**ref, "version": version})
    return out


def _resolve(resources: ResourceStore, ws: str, skill_id: str, version: str, where: str) -> str:
    skill = resources.get(SKILL.name, ws, skill_id)
    if skill is None:
        raise InvalidRequest(f"{where}: skill {skill_id!r} not found in this workspace", error_code="skill_not_found")
    if version == LATEST:
        return str(skill.doc["latest_version_id"])
    rec = resources.get(SKILL_VERSION.name, ws, version)
    if rec is None or rec.doc.get("skill_id") != skill_id:
        raise InvalidRequest(f"{where}: skill {skill_id!r} has no version {version[:100]!r}")
    return version


def skill_summaries(resources: ResourceStore, ws: str, pinned: list[JsonObject]) -> list[JsonObject]:
    """Name and description of each pinned custom skill version: what the system prompt tells the model."""
    out: list[JsonObject] = []
    for ref in pinned:
        if ref.get("type") != "custom":
            continue
        rec = resources.get(SKILL_VERSION.name, ws, str(ref.get("version")))
        if rec is not None:
            out.append({"name": rec.doc["name"], "description": rec.doc["description"]})
    return out
