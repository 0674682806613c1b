"""`client.beta.vaults` and `client.beta.vaults.credentials` (api-reference §2.4)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from managed_agents.api import betas
from managed_agents.api.deps import Limit, call, principal, runtime
from managed_agents.api.edge import REPLAYS_RETRIES_EXTRA, edge_router
from managed_agents.domain.errors import NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.keys import Principal
from managed_agents.services.vaults import VaultService
from managed_agents.wire.vaults import (
    CredentialCreateParams,
    CredentialUpdateParams,
    VaultCreateParams,
    VaultUpdateParams,
)

router = edge_router("/v1/vaults", tags=["vaults"], beta=betas.VAULTS_API)
Auth = Annotated[Principal, Depends(principal)]


def service(request: Request) -> VaultService:
    svc = runtime(request).vaults
    if svc is None:
        raise NotFound("vaults are not configured in this deployment (no secret store)")
    return svc


Vaults = Annotated[VaultService, Depends(service)]


@router.post("", openapi_extra=REPLAYS_RETRIES_EXTRA)
async def create_vault(body: VaultCreateParams, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.create, p.workspace_id, body)


@router.get("")
async def list_vaults(
    request: Request,
    p: Auth,
    v: Vaults,
    limit: Limit = None,
    page: str | None = None,
    include_archived: bool = False,
) -> JsonObject:
    query = page_query(page, limit, include_archived=include_archived)
    data, nxt = await call(v.list_vaults, p.workspace_id, query)
    return {"data": data, "next_page": nxt}


@router.get("/{vault_id}")
async def retrieve_vault(vault_id: str, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.get, p.workspace_id, vault_id)


@router.post("/{vault_id}")
async def update_vault(vault_id: str, body: VaultUpdateParams, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.update, p.workspace_id, vault_id, body)


@router.delete("/{vault_id}")
async def delete_vault(vault_id: str, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.delete, p.workspace_id, vault_id)


@router.post("/{vault_id}/archive")
async def archive_vault(vault_id: str, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.archive, p.workspace_id, vault_id)


@router.post("/{vault_id}/credentials", openapi_extra=REPLAYS_RETRIES_EXTRA)
async def create_credential(
    vault_id: str, body: CredentialCreateParams, request: Request, p: Auth, v: Vaults
) -> JsonObject:
    return await call(v.create_credential, p.workspace_id, vault_id, body)


@router.get("/{vault_id}/credentials")
async def list_credentials(
    vault_id: str,
    request: Request,
    p: Auth,
    v: Vaults,
    limit: Limit = None,
    page: str | None = None,
    include_archived: bool = False,
) -> JsonObject:
    query = page_query(page, limit, include_archived=include_archived)
    data, nxt = await call(v.list_credentials, p.workspace_id, vault_id, query)
    return {"data": data, "next_page": nxt}


@router.get("/{vault_id}/credentials/{credential_id}")
async def retrieve_credential(vault_id: str, credential_id: str, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.get_credential, p.workspace_id, vault_id, credential_id)


@router.post("/{vault_id}/credentials/{credential_id}")
async def update_credential(
    vault_id: str, credential_id: str, body: CredentialUpdateParams, request: Request, p: Auth, v: Vaults
) -> JsonObject:
    return await call(v.update_credential, p.workspace_id, vault_id, credential_id, body)


@router.delete("/{vault_id}/credentials/{credential_id}")
async def delete_credential(vault_id: str, credential_id: str, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.delete_credential, p.workspace_id, vault_id, credential_id)


@router.post("/{vault_id}/credentials/{credential_id}/archive")
async def archive_credential(vault_id: str, credential_id: str, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.archive_credential, p.workspace_id, vault_id, credential_id)


@router.post("/{vault_id}/credentials/{credential_id}/mcp_oauth_validate")
async def validate_credential(vault_id: str, credential_id: str, request: Request, p: Auth, v: Vaults) -> JsonObject:
    return await call(v.validate_credential, p.workspace_id, vault_id, credential_id)
