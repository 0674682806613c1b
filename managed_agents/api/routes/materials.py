"""What a Fargate sandbox's init container reads (services/materials.py): the session's resources, a file
resource's bytes, and the errors it reports. Authenticated by the work item's materialization token only (not an API
key, environment key or work token), so these routes are outside the edge's principal check and not in the public
OpenAPI document: no SDK calls them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import StreamingResponse

from managed_agents.api.deps import call, runtime
from managed_agents.api.edge import credential
from managed_agents.domain.events import JsonObject
from managed_agents.services.materials import MaterialService

router = APIRouter(prefix="/v1/environments/{environment_id}/work/{work_id}/materials", include_in_schema=False)


def _materials(request: Request) -> MaterialService:
    rt = runtime(request)
    return MaterialService(rt.resources, rt.events, rt.files)


@router.get("")
async def manifest(environment_id: str, work_id: str, request: Request) -> JsonObject:
    return await call(_materials(request).manifest, environment_id, work_id, credential(request))


@router.get("/files/{resource_id}", response_class=StreamingResponse)
async def file_content(environment_id: str, work_id: str, resource_id: str, request: Request) -> StreamingResponse:
    meta, chunks = await call(
        _materials(request).file_content, environment_id, work_id, credential(request), resource_id
    )
    headers = {"content-length": str(meta["size_bytes"])}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.post("/errors")
async def report_errors(
    environment_id: str, work_id: str, request: Request, body: Annotated[JsonObject, Body()]
) -> JsonObject:
    return await call(_materials(request).report, environment_id, work_id, credential(request), body)
