"""`client.beta.deployments` and `client.beta.deployment_runs` (api-reference §2.8)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from managed_agents.api import betas
from managed_agents.api.deps import call, principal, runtime, time_range
from managed_agents.api.edge import REPLAYS_RETRIES_EXTRA, edge_router
from managed_agents.domain.errors import InvalidRequest
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.keys import Principal
from managed_agents.wire.deployments import DeploymentCreateParams, DeploymentUpdateParams

router = edge_router("/v1/deployments", tags=["deployments"], beta=betas.DEPLOYMENTS_API)
runs_router = edge_router("/v1/deployment_runs", tags=["deployment_runs"], beta=betas.DEPLOYMENT_RUNS_API)
Auth = Annotated[Principal, Depends(principal)]


@router.post("", openapi_extra=REPLAYS_RETRIES_EXTRA)
async def create_deployment(body: DeploymentCreateParams, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).deployments.create, p.workspace_id, body)


@router.get("")
async def list_deployments(
    request: Request,
    p: Auth,
    limit: int | None = None,
    page: str | None = None,
    include_archived: bool = False,
    agent_id: str | None = None,
    status: Literal["active", "paused"] | None = None,
    created_gte: Annotated[str | None, Query(alias="created_at[gte]")] = None,
    created_lte: Annotated[str | None, Query(alias="created_at[lte]")] = None,
) -> JsonObject:
    if status is not None and include_archived:
        raise InvalidRequest("status: cannot be combined with include_archived")
    query = page_query(page, limit, include_archived=include_archived, created=time_range(request))
    if agent_id is not None:
        query.equals["agent_id"] = agent_id
    if status is not None:
        query.equals["status"] = status
    data, nxt = await call(runtime(request).deployments.list_deployments, p.workspace_id, query)
    return {"data": data, "next_page": nxt}


@router.get("/{deployment_id}")
async def retrieve_deployment(deployment_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).deployments.get, p.workspace_id, deployment_id)


@router.post("/{deployment_id}")
async def update_deployment(deployment_id: str, body: DeploymentUpdateParams, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).deployments.update, p.workspace_id, deployment_id, body)


@router.post("/{deployment_id}/archive")
async def archive_deployment(deployment_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).deployments.archive, p.workspace_id, deployment_id)


@router.post("/{deployment_id}/pause")
async def pause_deployment(deployment_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).deployments.pause, p.workspace_id, deployment_id)


@router.post("/{deployment_id}/unpause")
async def unpause_deployment(deployment_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).deployments.unpause, p.workspace_id, deployment_id)


@router.post("/{deployment_id}/run", openapi_extra=REPLAYS_RETRIES_EXTRA)
async def run_deployment(deployment_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).deployments.run_now, p.workspace_id, deployment_id)


@runs_router.get("")
async def list_deployment_runs(
    request: Request,
    p: Auth,
    limit: int | None = None,
    page: str | None = None,
    deployment_id: str | None = None,
    has_error: bool | None = None,
    trigger_type: Literal["schedule", "manual"] | None = None,
    created_gt: Annotated[str | None, Query(alias="created_at[gt]")] = None,
    created_gte: Annotated[str | None, Query(alias="created_at[gte]")] = None,
    created_lt: Annotated[str | None, Query(alias="created_at[lt]")] = None,
    created_lte: Annotated[str | None, Query(alias="created_at[lte]")] = None,
) -> JsonObject:
    query = page_query(page, limit, created=time_range(request), max_limit=1000)
    data, nxt = await call(
        runtime(request).deployments.list_runs,
        p.workspace_id,
        query,
        deployment_id=deployment_id,
        has_error=has_error,
        trigger_type=trigger_type,
    )
    return {"data": data, "next_page": nxt}


@runs_router.get("/{deployment_run_id}")
async def retrieve_deployment_run(deployment_run_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).deployments.get_run, p.workspace_id, deployment_run_id)
