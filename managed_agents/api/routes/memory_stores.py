"""`client.beta.memory_stores` with `.memories` and `.memory_versions` (api-reference §2.5).

The SDK sends `agent-memory-2026-07-22` (the managed-agents beta is accepted too, as the SDK's docs say). Stores
are managed with an API key; memories and versions are also read, and memories written, by a session's work token
for exactly the stores attached to its session (read_only ones: reads only), which is how the official worker
syncs its `/mnt/memory/<slug>` mounts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from managed_agents.api.betas import AGENT_MEMORY, MANAGED_AGENTS, BetaRule
from managed_agents.api.deps import Limit, any_principal, call, principal, runtime, time_range
from managed_agents.api.edge import REPLAYS_RETRIES_EXTRA, edge_router
from managed_agents.domain.errors import NotFound, PermissionDenied
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.keys import Principal
from managed_agents.services.memory_stores import MemoryStoreService, VersionFilter
from managed_agents.wire.memory_stores import (
    MemoryCreateParams,
    MemoryStoreCreateParams,
    MemoryStoreUpdateParams,
    MemoryUpdateParams,
    View,
)

MEMORY_API = BetaRule("memory stores", frozenset({AGENT_MEMORY, MANAGED_AGENTS}), AGENT_MEMORY)
router = edge_router("/v1/memory_stores", tags=["memory_stores"], beta=MEMORY_API)
Auth = Annotated[Principal, Depends(principal)]
AnyAuth = Annotated[Principal, Depends(any_principal)]
ViewQuery = Annotated[View | None, Query()]
Operation = Literal["created", "modified", "deleted"]


def service(request: Request) -> MemoryStoreService:
    svc = runtime(request).memory_stores
    if svc is None:
        raise NotFound("memory stores are not configured in this deployment")
    return svc


Stores = Annotated[MemoryStoreService, Depends(service)]


async def _user(request: Request, p: Principal, s: MemoryStoreService, store_id: str, *, write: bool) -> None:
    """API keys use any store of their workspace; a work token only its session's stores (writes: read_write)."""
    if p.kind == "api_key":
        return
    if p.kind != "work" or p.session_id is None:
        raise PermissionDenied(f"{p.describe()} cannot use memory stores; use an API key")
    session = await call(runtime(request).sessions.check_access, p, p.session_id)
    await call(s.check_work_access, session, store_id, write=write)


# -- stores -----------------------------------------------------------------------------------------------------


@router.post("", openapi_extra=REPLAYS_RETRIES_EXTRA)
async def create_memory_store(body: MemoryStoreCreateParams, request: Request, p: Auth, s: Stores) -> JsonObject:
    return await call(s.create, p.workspace_id, body)


@router.get("")
async def list_memory_stores(
    request: Request,
    p: Auth,
    s: Stores,
    limit: Limit = None,
    page: str | None = None,
    include_archived: bool = False,
    created_gte: Annotated[str | None, Query(alias="created_at[gte]")] = None,
    created_lte: Annotated[str | None, Query(alias="created_at[lte]")] = None,
) -> JsonObject:
    query = page_query(page, limit, include_archived=include_archived, created=time_range(request))
    data, nxt = await call(s.list_stores, p.workspace_id, query)
    return {"data": data, "next_page": nxt}


@router.get("/{memory_store_id}")
async def retrieve_memory_store(memory_store_id: str, request: Request, p: Auth, s: Stores) -> JsonObject:
    return await call(s.get, p.workspace_id, memory_store_id)


@router.post("/{memory_store_id}")
async def update_memory_store(
    memory_store_id: str, body: MemoryStoreUpdateParams, request: Request, p: Auth, s: Stores
) -> JsonObject:
    return await call(s.update, p.workspace_id, memory_store_id, body)


@router.delete("/{memory_store_id}")
async def delete_memory_store(memory_store_id: str, request: Request, p: Auth, s: Stores) -> JsonObject:
    return await call(s.delete, p.workspace_id, memory_store_id)


@router.post("/{memory_store_id}/archive")
async def archive_memory_store(memory_store_id: str, request: Request, p: Auth, s: Stores) -> JsonObject:
    return await call(s.archive, p.workspace_id, memory_store_id)


# -- memories ---------------------------------------------------------------------------------------------------


@router.post("/{memory_store_id}/memories")
async def create_memory(
    memory_store_id: str, body: MemoryCreateParams, request: Request, p: AnyAuth, s: Stores, view: ViewQuery = None
) -> JsonObject:
    await _user(request, p, s, memory_store_id, write=True)
    return await call(s.create_memory, p, memory_store_id, body, view or "full")


@router.get("/{memory_store_id}/memories")
async def list_memories(
    memory_store_id: str,
    request: Request,
    p: AnyAuth,
    s: Stores,
    path_prefix: str | None = None,
    depth: Annotated[int | None, Query(ge=0, le=20)] = None,
    view: ViewQuery = None,
    limit: Limit = None,
    page: str | None = None,
) -> JsonObject:
    await _user(request, p, s, memory_store_id, write=False)
    data, nxt = await call(
        s.list_memories,
        p.workspace_id,
        memory_store_id,
        path_prefix=path_prefix,
        depth=depth,
        view=view or "basic",
        limit=limit,
        page=page,
    )
    return {"data": data, "next_page": nxt}


@router.get("/{memory_store_id}/memories/{memory_id}")
async def retrieve_memory(
    memory_store_id: str, memory_id: str, request: Request, p: AnyAuth, s: Stores, view: ViewQuery = None
) -> JsonObject:
    await _user(request, p, s, memory_store_id, write=False)
    return await call(s.get_memory, p.workspace_id, memory_store_id, memory_id, view or "full")


@router.post("/{memory_store_id}/memories/{memory_id}")
async def update_memory(
    memory_store_id: str,
    memory_id: str,
    body: MemoryUpdateParams,
    request: Request,
    p: AnyAuth,
    s: Stores,
    view: ViewQuery = None,
) -> JsonObject:
    await _user(request, p, s, memory_store_id, write=True)
    return await call(s.update_memory, p, memory_store_id, memory_id, body, view or "full")


@router.delete("/{memory_store_id}/memories/{memory_id}")
async def delete_memory(
    memory_store_id: str,
    memory_id: str,
    request: Request,
    p: AnyAuth,
    s: Stores,
    expected_content_sha256: Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{64}$")] = None,
) -> JsonObject:
    await _user(request, p, s, memory_store_id, write=True)
    return await call(s.delete_memory, p, memory_store_id, memory_id, expected_content_sha256)


# -- memory versions --------------------------------------------------------------------------------------------


@router.get("/{memory_store_id}/memory_versions")
async def list_memory_versions(
    memory_store_id: str,
    request: Request,
    p: AnyAuth,
    s: Stores,
    memory_id: str | None = None,
    session_id: str | None = None,
    api_key_id: str | None = None,
    service_account_id: str | None = None,
    operation: Operation | None = None,
    created_gte: Annotated[str | None, Query(alias="created_at[gte]")] = None,
    created_lte: Annotated[str | None, Query(alias="created_at[lte]")] = None,
    view: ViewQuery = None,
    limit: Limit = None,
    page: str | None = None,
) -> JsonObject:
    await _user(request, p, s, memory_store_id, write=False)
    chosen = view or "basic"
    query = page_query(page, limit, max_limit=20 if chosen == "full" else 100, created=time_range(request))
    flt = VersionFilter(memory_id, session_id, api_key_id, service_account_id, operation)
    data, nxt = await call(s.list_versions, p.workspace_id, memory_store_id, query, flt, chosen)
    return {"data": data, "next_page": nxt}


@router.get("/{memory_store_id}/memory_versions/{memory_version_id}")
async def retrieve_memory_version(
    memory_store_id: str, memory_version_id: str, request: Request, p: AnyAuth, s: Stores, view: ViewQuery = None
) -> JsonObject:
    await _user(request, p, s, memory_store_id, write=False)
    return await call(s.get_version, p.workspace_id, memory_store_id, memory_version_id, view or "full")


@router.post("/{memory_store_id}/memory_versions/{memory_version_id}/redact")
async def redact_memory_version(
    memory_store_id: str, memory_version_id: str, request: Request, p: Auth, s: Stores
) -> JsonObject:
    return await call(s.redact_version, p, memory_store_id, memory_version_id)
