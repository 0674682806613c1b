"""Webhook endpoints, scoped to the caller's workspace, and the delivery log of each endpoint (our addition). See
services/webhooks.py.

Two paths serve the same endpoints: `/v1/webhooks`, ours (hosted has no API for workspace webhooks: api-reference
§2.11), and `/v1/organizations/webhooks`, where the SDK's `client.beta.organization.webhooks` calls. The SDK types
an organization endpoint's `enabled_events` as the organization event types only (external_key.*, external_storage.*,
user_profile.*), so a client with strict response validation rejects an endpoint answered there with session or
agent events; `/v1/webhooks` is the path for those clients (`client.post("/v1/webhooks", ..., cast_to=object)`). The
organization path stays for the clients that used it (non-strict SDK clients, raw requests, the console's older
pages): it is the same API on the same records."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request

from managed_agents.api import betas
from managed_agents.api.deps import call, principal, runtime
from managed_agents.api.edge import REPLAYS_RETRIES_EXTRA, SECRET_FIELD, SECRET_REFILLS, edge_router
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import page_query
from managed_agents.services.keys import Principal
from managed_agents.wire.webhooks import WebhookEndpointCreateParams, WebhookEndpointUpdateParams

Auth = Annotated[Principal, Depends(principal)]


def _signing_secret_again(request: Request, p: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """A replayed create or regenerate (api/edge.py SECRET_FIELD): the endpoint's signing secret as it is now (the
    replay record keeps none); NotFound when the endpoint was deleted since."""
    endpoint_id = str(body.get("id") or request.path_params["webhook_endpoint_id"])
    return {**body, "signing_secret": runtime(request).webhooks.current_secret(p.workspace_id, endpoint_id)}


SECRET_REFILLS["signing_secret"] = _signing_secret_again


def _router(prefix: str) -> APIRouter:
    """The endpoint API at `prefix` (module docstring: two paths, one API)."""
    router = edge_router(prefix, tags=["webhooks"], beta=betas.WEBHOOKS_API)

    @router.post("", openapi_extra={**REPLAYS_RETRIES_EXTRA, SECRET_FIELD: "signing_secret"})
    async def create_webhook_endpoint(body: WebhookEndpointCreateParams, request: Request, p: Auth) -> JsonObject:
        return await call(runtime(request).webhooks.create, p.workspace_id, body)

    @router.get("")
    async def list_webhook_endpoints(
        request: Request,
        p: Auth,
        limit: int = 0,
        order: Literal["asc", "desc"] | None = None,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> JsonObject:
        return await call(
            runtime(request).webhooks.list_endpoints,
            p.workspace_id,
            limit=limit or 20,
            order=order or "desc",
            after_id=after_id,
            before_id=before_id,
        )

    @router.get("/{webhook_endpoint_id}")
    async def retrieve_webhook_endpoint(webhook_endpoint_id: str, request: Request, p: Auth) -> JsonObject:
        return await call(runtime(request).webhooks.get, p.workspace_id, webhook_endpoint_id)

    @router.post("/{webhook_endpoint_id}")
    async def update_webhook_endpoint(
        webhook_endpoint_id: str, body: WebhookEndpointUpdateParams, request: Request, p: Auth
    ) -> JsonObject:
        return await call(runtime(request).webhooks.update, p.workspace_id, webhook_endpoint_id, body)

    @router.delete("/{webhook_endpoint_id}")
    async def delete_webhook_endpoint(webhook_endpoint_id: str, request: Request, p: Auth) -> JsonObject:
        return await call(runtime(request).webhooks.delete, p.workspace_id, webhook_endpoint_id)

    @router.post("/{webhook_endpoint_id}/regenerate_signing_secret", openapi_extra={SECRET_FIELD: "signing_secret"})
    async def regenerate_webhook_signing_secret(webhook_endpoint_id: str, request: Request, p: Auth) -> JsonObject:
        return await call(runtime(request).webhooks.regenerate_secret, p.workspace_id, webhook_endpoint_id)

    @router.get("/{webhook_endpoint_id}/deliveries")
    async def list_webhook_deliveries(
        webhook_endpoint_id: str, request: Request, p: Auth, limit: int | None = None, page: str | None = None
    ) -> JsonObject:
        """Our addition: the endpoint's deliveries, newest first, each with its attempts (time, status code, latency,
        error) and its state (`pending`, `delivered`, `failed`, `dropped`)."""
        query = page_query(page, limit)
        data, nxt = await call(runtime(request).webhooks.list_deliveries, p.workspace_id, webhook_endpoint_id, query)
        return {"data": data, "next_page": nxt}

    return router


router = _router("/v1/webhooks")  # ours: strict-clean for SDK users (module docstring)
organization_router = _router("/v1/organizations/webhooks")  # where client.beta.organization.webhooks calls
