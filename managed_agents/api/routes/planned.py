"""Endpoints the official SDK has and this server does not serve yet: one clear 400, the same for all of them.

Each entry is a path prefix, what it is, and the `anthropic-beta` rule the SDK's calls carry (api-reference §1.1),
so a request is authenticated and beta-checked like a built endpoint's, then told the feature is not supported
yet (instead of a 404 "no route"). When a feature lands, delete its line here: its router then serves the prefix
(these routes are registered last and hidden from the OpenAPI document, so a built route always wins anyway).
"""

from __future__ import annotations

from typing import NoReturn

from fastapi import APIRouter, Request

from managed_agents.api import betas
from managed_agents.api.edge import edge_router
from managed_agents.domain.errors import InvalidRequest

NO_BETA = None
PLANNED: list[tuple[str, str, betas.BetaRule | None]] = [
    ("/v1/dreams", "dreams", betas.BetaRule.of("dreams", betas.DREAMING)),
    ("/v1/tunnels", "MCP tunnels", betas.BetaRule.of("tunnels", betas.MCP_TUNNELS)),
    ("/v1/user_profiles", "user profiles", betas.BetaRule.of("user profiles", betas.USER_PROFILES)),
]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _router(prefix: str, feature: str, beta: betas.BetaRule | None) -> APIRouter:
    router = edge_router(prefix, tags=["planned"], beta=beta, include_in_schema=False)

    async def not_yet(request: Request) -> NoReturn:
        raise InvalidRequest(
            f"{request.method} {request.url.path}: not supported by this server yet ({feature}, {prefix})"
        )

    router.add_api_route("", not_yet, methods=METHODS, response_model=None)
    router.add_api_route("/{rest:path}", not_yet, methods=METHODS, response_model=None)
    return router


routers = [_router(prefix, feature, beta) for prefix, feature, beta in PLANNED]
