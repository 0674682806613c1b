"""`client.beta.agents` and `client.beta.agents.versions` (api-reference §2.1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from managed_agents.api import betas
from managed_agents.api.deps import Limit, Version, call, principal, runtime, time_range
from managed_agents.api.edge import REPLAYS_RETRIES_EXTRA, edge_router
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.keys import Principal
from managed_agents.wire.agents import AgentCreateParams, AgentUpdateParams

router = edge_router("/v1/agents", tags=["agents"], beta=betas.AGENTS_API)
Auth = Annotated[Principal, Depends(principal)]
CreatedRange = Annotated[str | None, Query(alias="created_at[gte]")]


@router.post("", openapi_extra=REPLAYS_RETRIES_EXTRA)
async def create_agent(body: AgentCreateParams, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).agents.create, p.workspace_id, body)


@router.get("")
async def list_agents(
    request: Request,
    p: Auth,
    limit: Limit = None,
    page: str | None = None,
    include_archived: bool = False,
    created_gte: CreatedRange = None,
    created_lte: Annotated[str | None, Query(alias="created_at[lte]")] = None,
) -> JsonObject:
    query = page_query(page, limit, include_archived=include_archived, created=time_range(request))
    data, nxt = await call(runtime(request).agents.list_agents, p.workspace_id, query)
    return {"data": data, "next_page": nxt}


@router.get("/{agent_id}")
async def retrieve_agent(agent_id: str, request: Request, p: Auth, version: Version = None) -> JsonObject:
    return await call(runtime(request).agents.get, p.workspace_id, agent_id, version)


@router.post("/{agent_id}")
async def update_agent(agent_id: str, body: AgentUpdateParams, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).agents.update, p.workspace_id, agent_id, body)


@router.post("/{agent_id}/archive")
async def archive_agent(agent_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).agents.archive, p.workspace_id, agent_id)


@router.get("/{agent_id}/versions")
async def list_agent_versions(
    agent_id: str, request: Request, p: Auth, limit: Limit = None, page: str | None = None
) -> JsonObject:
    query = page_query(page, limit)
    data, nxt = await call(runtime(request).agents.versions, p.workspace_id, agent_id, query)
    return {"data": data, "next_page": nxt}
