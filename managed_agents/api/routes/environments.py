"""`client.beta.environments` (api-reference §2.2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from managed_agents.api import betas
from managed_agents.api.deps import Limit, call, principal, runtime
from managed_agents.api.edge import REPLAYS_RETRIES_EXTRA, edge_router
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.keys import Principal
from managed_agents.wire.environments import EnvironmentCreateParams, EnvironmentUpdateParams

router = edge_router("/v1/environments", tags=["environments"], beta=betas.ENVIRONMENTS_API)
Auth = Annotated[Principal, Depends(principal)]


@router.post("", openapi_extra=REPLAYS_RETRIES_EXTRA)
async def create_environment(body: EnvironmentCreateParams, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).environments.create, p.workspace_id, body)


@router.get("")
async def list_environments(
    request: Request, p: Auth, limit: Limit = None, page: str | None = None, include_archived: bool = False
) -> JsonObject:
    query = page_query(page, limit, include_archived=include_archived)
    data, nxt = await call(runtime(request).environments.list_environments, p.workspace_id, query)
    return {"data": data, "next_page": nxt}


@router.get("/{environment_id}")
async def retrieve_environment(environment_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).environments.get, p.workspace_id, environment_id)


@router.post("/{environment_id}")
async def update_environment(
    environment_id: str, body: EnvironmentUpdateParams, request: Request, p: Auth
) -> JsonObject:
    return await call(runtime(request).environments.update, p.workspace_id, environment_id, body)


@router.post("/{environment_id}/archive")
async def archive_environment(environment_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).environments.archive, p.workspace_id, environment_id)


@router.delete("/{environment_id}")
async def delete_environment(environment_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).environments.delete, p.workspace_id, environment_id)
