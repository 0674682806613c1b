"""`client.beta.files` (api-reference §2.6): upload (multipart, streamed to the blob store), list, retrieve, download,
delete. The SDK sends no beta header for files; none is required. See services/files.py for the rules."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Body, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from managed_agents.api.deps import call, multi, principal, runtime
from managed_agents.api.edge import STREAMS_BODY, edge_router
from managed_agents.api.multipart import read_form
from managed_agents.domain.errors import InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.file_uploads import LargeUploads
from managed_agents.services.files import MAX_EXPIRES_SECONDS, MAX_IDS, MIN_EXPIRES_SECONDS, FileService
from managed_agents.services.keys import Principal

router = edge_router("/v1/files", tags=["files"], beta=None)
Auth = Annotated[Principal, Depends(principal)]
FileLimit = Annotated[int | None, Query(ge=1, le=1000, description="page size (default 20)")]

UPLOAD_EXTRA: dict[str, Any] = {
    STREAMS_BODY: "max_file_bytes",
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the file (one part)"},
                        "expires_in_seconds": {
                            "type": "integer",
                            "minimum": MIN_EXPIRES_SECONDS,
                            "maximum": MAX_EXPIRES_SECONDS,
                        },
                    },
                }
            }
        },
    },
}


def service(request: Request) -> FileService:
    svc = runtime(request).files
    if svc is None:
        raise NotFound("the Files API is not configured in this deployment (no blob store)")
    return svc


Files = Annotated[FileService, Depends(service)]


@router.post("/uploads")
async def begin_large_upload(request: Request, p: Auth, f: Files, body: Annotated[JsonObject, Body()]) -> JsonObject:
    """A presigned S3 POST for a file larger than one API request carries (services/file_uploads.py)."""
    return await call(LargeUploads(f).begin, p.workspace_id, body)


@router.post("/uploads/{upload_id}/complete")
async def complete_large_upload(upload_id: str, request: Request, p: Auth, f: Files) -> JsonObject:
    """The uploaded object, hashed and size-checked, becomes a file (`BetaFileMetadata`)."""
    return await call(LargeUploads(f).complete, p.workspace_id, upload_id)


@router.post("", openapi_extra=UPLOAD_EXTRA)
async def upload_file(request: Request, p: Auth, f: Files) -> JsonObject:
    form = await read_form(request, file_fields=("file",), max_files=1, max_fields=8)
    try:
        parts = form.getlist("file")
        if len(parts) != 1 or not isinstance(parts[0], UploadFile):
            raise InvalidRequest("file: send exactly one file, in a multipart part named 'file'")
        unknown = sorted(set(form.keys()) - {"file", "expires_in_seconds"})
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: unknown form field (fields: file, expires_in_seconds)")
        upload = parts[0]
        expires = _int_field(form.get("expires_in_seconds"), "expires_in_seconds")
        return await call(
            f.upload,
            p.workspace_id,
            upload.file,
            filename=upload.filename,
            content_type=upload.content_type,
            expires_in_seconds=expires,
        )
    finally:
        await form.close()


def _int_field(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip().lstrip("-").isdigit() or len(value) > 20:
        raise InvalidRequest(f"{name}: must be an integer")
    return int(value)


@router.get("")
async def list_files(
    request: Request,
    p: Auth,
    f: Files,
    limit: FileLimit = None,
    page: str | None = None,
    scope_id: Annotated[str | None, Query(max_length=256)] = None,
) -> JsonObject:
    ids = multi(request, "ids")
    if ids:
        if limit is not None or page is not None:
            raise InvalidRequest("ids: cannot be combined with page or limit (an ids lookup is a single page)")
        if len(set(ids)) > MAX_IDS:
            raise InvalidRequest(f"ids: at most {MAX_IDS} ids are allowed, got {len(set(ids))}")
        data = await call(f.list_ids, p.workspace_id, ids, scope_id=scope_id)
        return {"data": data, "next_page": None}
    query = page_query(page, limit, max_limit=1000)
    data, nxt = await call(f.list_files, p.workspace_id, query, scope_id=scope_id)
    return {"data": data, "next_page": nxt}


@router.get("/{file_id}")
async def retrieve_file_metadata(file_id: str, request: Request, p: Auth, f: Files) -> JsonObject:
    return await call(f.get, p.workspace_id, file_id)


@router.get("/{file_id}/content", response_class=StreamingResponse)
async def download_file(file_id: str, request: Request, p: Auth, f: Files) -> StreamingResponse:
    """The bytes, streamed, with the file's type whatever `Accept` says (the SDK sends `application/binary`)."""
    meta, chunks = await call(f.content, p.workspace_id, file_id)
    name = str(meta["filename"])
    headers = {
        "content-length": str(meta["size_bytes"]),
        "content-disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
    }
    return StreamingResponse(chunks, media_type=str(meta["mime_type"]), headers=headers)


@router.delete("/{file_id}")
async def delete_file(file_id: str, request: Request, p: Auth, f: Files) -> JsonObject:
    return await call(f.delete, p.workspace_id, file_id)
