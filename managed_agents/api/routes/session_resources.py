"""`client.beta.sessions.resources` (api-reference §2.3.2); services/session_resources.py has the rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from managed_agents.api import betas
from managed_agents.api.deps import call, principal, runtime
from managed_agents.api.edge import edge_router
from managed_agents.domain.errors import NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.services.keys import Principal
from managed_agents.services.session_resources import SessionResourceService
from managed_agents.wire.session_resources import FileResourceParams, ResourceUpdateParams

router = edge_router("/v1/sessions/{session_id}/resources", tags=["sessions"], beta=betas.SESSIONS_API)
Auth = Annotated[Principal, Depends(principal)]
ResourceLimit = Annotated[int | None, Query(ge=1, le=1000, description="page size (omitted: all resources)")]


def service(request: Request) -> SessionResourceService:
    svc = runtime(request).session_resources
    if svc is None:
        raise NotFound("session resources are not configured in this deployment (no blob store)")
    return svc


Resources = Annotated[SessionResourceService, Depends(service)]


@router.post("")
async def add_resource(
    session_id: str, body: FileResourceParams, request: Request, p: Auth, r: Resources
) -> JsonObject:
    return await call(r.add, p.workspace_id, session_id, body)


@router.get("")
async def list_resources(
    session_id: str, request: Request, p: Auth, r: Resources, limit: ResourceLimit = None, page: str | None = None
) -> JsonObject:
    data, nxt = await call(r.list, p.workspace_id, session_id, limit, page)
    return {"data": data, "next_page": nxt}


@router.get("/{resource_id}")
async def retrieve_resource(session_id: str, resource_id: str, request: Request, p: Auth, r: Resources) -> JsonObject:
    return await call(r.get, p.workspace_id, session_id, resource_id)


@router.post("/{resource_id}")
async def update_resource(
    session_id: str, resource_id: str, body: ResourceUpdateParams, request: Request, p: Auth, r: Resources
) -> JsonObject:
    return await call(r.update, p.workspace_id, session_id, resource_id, body.authorization_token)


@router.delete("/{resource_id}")
async def delete_resource(session_id: str, resource_id: str, request: Request, p: Auth, r: Resources) -> JsonObject:
    return await call(r.delete, p.workspace_id, session_id, resource_id)
