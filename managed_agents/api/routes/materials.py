"""What a Fargate sandbox's init container reads (services/materials.py): the session's resources, a file
resource's bytes, and the errors it reports. Authenticated by the work item's materialization token only (not an API
key, environment key or work token), so these routes are outside the edge's principal check and not in the public
OpenAPI document: no SDK calls them.

Beside them, what the running Fargate sandbox's entrypoint calls with its work token (no other credential): the
session's file resources (`/v1/sessions/{id}/inputs`: the ones added since the task started are put in place before
the next tool call) and the outputs it sends (`/v1/sessions/{id}/outputs/{path}`).
"""

from __future__ import annotations

import tempfile
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from managed_agents.api.deps import call, runtime
from managed_agents.api.edge import credential
from managed_agents.domain.errors import PermissionDenied, RequestTooLarge, ServiceUnavailable
from managed_agents.domain.events import JsonObject
from managed_agents.ports import Record
from managed_agents.services.materials import MaterialService, live_files_etag
from managed_agents.services.outputs import OutputCollector

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


# -- outputs a Fargate sandbox sends (its volumes end with its task) ----------------------------------------------

outputs_router = APIRouter(prefix="/v1/sessions/{session_id}/outputs", include_in_schema=False)


@outputs_router.put("/{path:path}")
async def put_output(session_id: str, path: str, request: Request) -> JsonObject:
    """One file of the sandbox's `/mnt/session/outputs`, sent by its entrypoint with the work token of that session's
    work item (no other credential): stored as a session-scoped file, replacing the one at that path."""
    rt = runtime(request)
    p = await call(rt.keys.authenticate, credential(request))
    if p.kind != "work" or p.session_id != session_id:
        raise PermissionDenied(f"{p.describe()} cannot write the outputs of session {session_id!r}")
    if rt.files is None:
        raise ServiceUnavailable("this deployment has no Files API")
    cap = rt.settings.max_file_bytes
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
    try:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise RequestTooLarge(f"an output is at most {cap:,} bytes (max_file_bytes)")
            spool.write(chunk)
        spool.seek(0)
        fid = await call(OutputCollector(rt.resources, rt.files).put, session_id, path, spool)
    finally:
        spool.close()
    return {"path": path, "file_id": fid}


# -- file resources added while a Fargate sandbox runs (its init container has exited) --------------------------

inputs_router = APIRouter(prefix="/v1/sessions/{session_id}/inputs", include_in_schema=False)


async def _work_session(request: Request, session_id: str) -> Record:
    """The session, for the work token of a live work item of it; 403 for any other credential."""
    rt = runtime(request)
    p = await call(rt.keys.authenticate, credential(request))
    if p.kind != "work" or p.session_id != session_id:
        raise PermissionDenied(f"{p.describe()} cannot read the inputs of session {session_id!r}")
    return await call(rt.sessions.check_access, p, session_id)


@inputs_router.get("", response_model=None)
async def live_files(session_id: str, request: Request) -> JsonObject | Response:
    """The session's file resources; 304 when they are the ones the sandbox saw last (`If-None-Match`), so the pass
    before each tool call costs no file lookups when nothing was added."""
    sess = await _work_session(request, session_id)
    etag = live_files_etag(sess)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"etag": etag})
    body = await call(_materials(request).live_files, sess)
    return JSONResponse(body, headers={"etag": etag})


@inputs_router.get("/{resource_id}", response_class=StreamingResponse)
async def live_file_content(session_id: str, resource_id: str, request: Request) -> StreamingResponse:
    sess = await _work_session(request, session_id)
    meta, chunks = await call(_materials(request).live_file_content, sess, resource_id)
    headers = {"content-length": str(meta["size_bytes"])}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@inputs_router.post("/errors")
async def report_live_errors(session_id: str, request: Request, body: Annotated[JsonObject, Body()]) -> JsonObject:
    sess = await _work_session(request, session_id)
    return await call(_materials(request).report_live, sess, body)
