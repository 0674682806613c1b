"""`client.beta.environments.work` (api-reference §2.2.1) and environment keys.

The work queue is what the official sandbox worker (`EnvironmentWorker`) speaks: it polls and acknowledges
with an environment key, then heartbeats, stops and serves the session with the work token from the item's
`secret`. Retrieve and update take an API key only, list an environment key only (as the reference says).
Environment keys are this platform's own design (the hosted service mints them in its console): issued,
listed and revoked with an API key here or with `managed-agents env-keys`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Depends, Header, Query, Request

from managed_agents.api import betas
from managed_agents.api.deps import MAX_SAFE_INT, Limit, any_principal, call, principal, runtime
from managed_agents.api.edge import edge_router
from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.keys import Principal
from managed_agents.services.work import MAX_TTL, MIN_TTL, WorkService
from managed_agents.wire.work import EnvironmentKeyCreateParams, WorkStopParams, WorkUpdateParams


def _work(request: Request) -> WorkService:
    work = runtime(request).work
    if work is None:
        raise ServiceUnavailable("this deployment has no work queue configured")
    return work


# The work-queue protocol has its own state machine (leases, heartbeat preconditions): no Idempotency-Key replays.
router = edge_router("/v1/environments/{environment_id}", tags=["work"], beta=betas.ENVIRONMENTS_API, idempotent=False)
# Environment keys are this platform's extension: no SDK method calls them, so they take no beta header; and their
# responses carry the key's secret, which must never be kept for a replay.
keys_router = edge_router("/v1/environments/{environment_id}", tags=["environment keys"], beta=None, idempotent=False)
Auth = Annotated[Principal, Depends(principal)]
AnyAuth = Annotated[Principal, Depends(any_principal)]


@router.get("/work/poll")
async def poll_work(
    environment_id: str,
    request: Request,
    p: AnyAuth,
    block_ms: Annotated[int | None, Query(ge=1, le=999, description="long-poll wait")] = None,
    reclaim_older_than_ms: Annotated[int | None, Query(ge=0, le=MAX_SAFE_INT)] = None,
    anthropic_worker_id: Annotated[str | None, Header()] = None,
) -> JsonObject | None:
    return await call(
        _work(request).poll,
        p,
        environment_id,
        block_ms=block_ms,
        reclaim_older_than_ms=reclaim_older_than_ms,
        worker_id=anthropic_worker_id,
    )


@router.get("/work/stats")
async def work_stats(environment_id: str, request: Request, p: AnyAuth) -> JsonObject:
    return await call(_work(request).stats, p, environment_id)


@router.get("/work")
async def list_work(
    environment_id: str, request: Request, p: AnyAuth, limit: Limit = None, page: str | None = None
) -> JsonObject:
    data, nxt = await call(_work(request).list_work, p, environment_id, page_query(page, limit))
    return {"data": data, "next_page": nxt}


@router.get("/work/{work_id}")
async def retrieve_work(environment_id: str, work_id: str, request: Request, p: AnyAuth) -> JsonObject:
    return await call(_work(request).retrieve, p, environment_id, work_id)


@router.post("/work/{work_id}")
async def update_work(
    environment_id: str, work_id: str, body: WorkUpdateParams, request: Request, p: AnyAuth
) -> JsonObject:
    return await call(_work(request).update, p, environment_id, work_id, body.metadata)


@router.post("/work/{work_id}/ack")
async def ack_work(environment_id: str, work_id: str, request: Request, p: AnyAuth) -> JsonObject:
    return await call(_work(request).ack, p, environment_id, work_id)


@router.post("/work/{work_id}/heartbeat")
async def heartbeat_work(
    environment_id: str,
    work_id: str,
    request: Request,
    p: AnyAuth,
    desired_ttl_seconds: Annotated[int | None, Query(ge=MIN_TTL, le=MAX_TTL)] = None,
    expected_last_heartbeat: str | None = None,
) -> JsonObject:
    return await call(
        _work(request).heartbeat,
        p,
        environment_id,
        work_id,
        expected=expected_last_heartbeat,
        desired_ttl=desired_ttl_seconds,
    )


@router.post("/work/{work_id}/stop")
async def stop_work(
    environment_id: str,
    work_id: str,
    request: Request,
    p: AnyAuth,
    body: Annotated[WorkStopParams | None, Body()] = None,
) -> JsonObject:
    force = bool(body.force) if body is not None else False
    return await call(_work(request).stop, p, environment_id, work_id, force=force)


@keys_router.post("/keys")
async def create_environment_key(
    environment_id: str, request: Request, p: Auth, body: Annotated[EnvironmentKeyCreateParams | None, Body()] = None
) -> JsonObject:
    doc, secret = await call(
        runtime(request).keys.create_environment_key, p.workspace_id, environment_id, body.name if body else ""
    )
    return {**doc, "key": secret}


@keys_router.get("/keys")
async def list_environment_keys(environment_id: str, request: Request, p: Auth) -> JsonObject:
    data = await call(runtime(request).keys.list_environment_keys, p.workspace_id, environment_id)
    return {"data": data, "next_page": None}


@keys_router.post("/keys/{key_id}/revoke")
async def revoke_environment_key(environment_id: str, key_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).keys.revoke_environment_key, p.workspace_id, environment_id, key_id)
