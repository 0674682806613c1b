"""`client.beta.skills` and `client.beta.skills.versions` (api-reference §2.7). No beta header (the SDK sends none).

Uploads are multipart `files[]` parts named with their paths (`my-skill/SKILL.md`); the rules are in
wire/skills.py. A session's work token (the official worker's credential) may retrieve and download the skill
versions its session pins; everything else takes an API key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from managed_agents.api.deps import any_principal, call, principal, runtime
from managed_agents.api.edge import LARGE_UPLOADS, MAX_BODY_EXTRA, REPLAYS_RETRIES_EXTRA, edge_router
from managed_agents.domain.errors import NotFound, PermissionDenied
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.keys import Principal
from managed_agents.services.skill_bundles import MAX_SKILL_BYTES, UPLOAD_OVERHEAD_BYTES
from managed_agents.services.skill_uploads import SkillUploads
from managed_agents.services.skills import SkillService

router = edge_router("/v1/skills", tags=["skills"], beta=None)
Auth = Annotated[Principal, Depends(principal)]
AnyAuth = Annotated[Principal, Depends(any_principal)]
SkillLimit = Annotated[int | None, Query(ge=1, le=1000, description="page size (default 20)")]
LARGER_SKILLS = (
    "Send a larger skill through an upload URL instead: POST /v1/skills/uploads (with skill_id for a new version),"
    " POST a zip of the skill folder to the url it returns, then POST /v1/skills/uploads/{upload_id}/complete"
    " (docs/skills-and-memory.md, 'Large skills')"
)
UPLOAD_EXTRA = {
    **REPLAYS_RETRIES_EXTRA,
    MAX_BODY_EXTRA: MAX_SKILL_BYTES + UPLOAD_OVERHEAD_BYTES,
    LARGE_UPLOADS: LARGER_SKILLS,
}
Files = Annotated[
    list[UploadFile],
    File(alias="files[]", description="the skill folder's files, each part named with its path (my-skill/SKILL.md)"),
]


def service(request: Request) -> SkillService:
    svc = runtime(request).skills
    if svc is None:
        raise NotFound("skills are not configured in this deployment (no blob store)")
    return svc


Skills = Annotated[SkillService, Depends(service)]


async def _parts(files: list[UploadFile]) -> list[tuple[str, bytes]]:
    return [(f.filename or "", await f.read()) for f in files]


async def _reader(request: Request, p: Principal, s: SkillService, skill_id: str, version: str) -> None:
    """API keys read any skill of their workspace; a work token only its session's versions."""
    if p.kind == "api_key":
        return
    if p.kind != "work" or p.session_id is None:
        raise PermissionDenied(f"{p.describe()} cannot read skills; use an API key")
    session = await call(runtime(request).sessions.check_access, p, p.session_id)
    await call(s.check_work_access, p, session, skill_id, version)


@router.post("", openapi_extra=UPLOAD_EXTRA)
async def create_skill(
    request: Request,
    p: Auth,
    s: Skills,
    files: Files,
    display_name: Annotated[str | None, Form(max_length=255)] = None,
) -> JsonObject:
    return await call(s.create, p.workspace_id, await _parts(files), display_name)


@router.post("/uploads")
async def begin_skill_upload(request: Request, p: Auth, s: Skills, body: Annotated[JsonObject, Body()]) -> JsonObject:
    """A presigned S3 POST for a skill larger than one API request carries (services/skill_uploads.py)."""
    return await call(SkillUploads(s).begin, p.workspace_id, body)


@router.post("/uploads/{upload_id}/complete")
async def complete_skill_upload(upload_id: str, request: Request, p: Auth, s: Skills) -> JsonObject:
    """The uploaded zip becomes a skill (or a version of the skill the upload named), under the upload rules."""
    return await call(SkillUploads(s).complete, p.workspace_id, upload_id)


@router.get("")
async def list_skills(
    request: Request, p: Auth, s: Skills, limit: SkillLimit = None, page: str | None = None, source: str | None = None
) -> JsonObject:
    query = page_query(page, limit, max_limit=1000)
    data, nxt = await call(s.list_skills, p.workspace_id, query, source)
    return {"data": data, "next_page": nxt}


@router.get("/{skill_id}")
async def retrieve_skill(skill_id: str, request: Request, p: Auth, s: Skills) -> JsonObject:
    return await call(s.get, p.workspace_id, skill_id)


@router.delete("/{skill_id}")
async def delete_skill(skill_id: str, request: Request, p: Auth, s: Skills) -> JsonObject:
    return await call(s.delete, p.workspace_id, skill_id)


@router.post("/{skill_id}/versions", openapi_extra=UPLOAD_EXTRA)
async def create_skill_version(skill_id: str, request: Request, p: Auth, s: Skills, files: Files) -> JsonObject:
    return await call(s.create_version, p.workspace_id, skill_id, await _parts(files))


@router.get("/{skill_id}/versions")
async def list_skill_versions(
    skill_id: str, request: Request, p: Auth, s: Skills, limit: SkillLimit = None, page: str | None = None
) -> JsonObject:
    query = page_query(page, limit, max_limit=1000)
    data, nxt = await call(s.list_versions, p.workspace_id, skill_id, query)
    return {"data": data, "next_page": nxt}


@router.get("/{skill_id}/versions/{version}")
async def retrieve_skill_version(skill_id: str, version: str, request: Request, p: AnyAuth, s: Skills) -> JsonObject:
    await _reader(request, p, s, skill_id, version)
    return await call(s.get_version, p.workspace_id, skill_id, version)


@router.delete("/{skill_id}/versions/{version}")
async def delete_skill_version(skill_id: str, version: str, request: Request, p: Auth, s: Skills) -> JsonObject:
    return await call(s.delete_version, p.workspace_id, skill_id, version)


@router.get(
    "/{skill_id}/versions/{version}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the version's files as a zip archive"}},
)
async def download_skill_version(
    skill_id: str, version: str, request: Request, p: AnyAuth, s: Skills
) -> StreamingResponse:
    await _reader(request, p, s, skill_id, version)
    filename, chunks = await call(s.download, p.workspace_id, skill_id, version)
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
