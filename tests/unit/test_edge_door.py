"""The door of every /v1 route (api/edge.py, api/betas.py): its pieces on a small app of its own."""

from __future__ import annotations

import typing
from types import SimpleNamespace
from typing import Any

import pytest
from anthropic.types import AnthropicBetaParam
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from managed_agents.api import betas
from managed_agents.api.edge import MAX_BODY_EXTRA, edge_router
from managed_agents.api.errors import RequestIdMiddleware, install_error_handlers
from managed_agents.domain.errors import AuthenticationFailed
from managed_agents.services.keys import Principal
from managed_agents.settings import ServerSettings


def test_known_betas_cover_every_value_the_installed_sdk_names() -> None:
    # Given the beta names the official SDK offers (its AnthropicBetaParam literal)
    (literal,) = [a for a in typing.get_args(AnthropicBetaParam) if typing.get_origin(a) is typing.Literal]
    sdk = set(typing.get_args(literal))
    # Then none of them is refused as unknown
    assert sdk - betas.KNOWN_BETAS == set()
    assert betas.MANAGED_AGENTS in sdk and betas.AGENT_MEMORY in sdk


class _Keys:
    def authenticate(self, secret: str | None) -> Principal:
        if secret != "good":
            raise AuthenticationFailed("invalid API key")
        return Principal(workspace_id="wrkspc_1", key_id="apikey_1")


def _app(**settings: Any) -> FastAPI:
    app = FastAPI()
    app.state.runtime = SimpleNamespace(settings=ServerSettings(**settings), keys=_Keys())
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    router = edge_router("/v1/things", tags=["things"], beta=None)

    @router.post("")
    async def small(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @router.post("/upload", openapi_extra={MAX_BODY_EXTRA: 4096})
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.include_router(router)
    return app


@pytest.mark.parametrize(("path", "size", "status"), [("", 1500, 413), ("/upload", 1500, 200), ("/upload", 5000, 413)])
def test_a_route_may_raise_its_own_body_cap(path: str, size: int, status: int) -> None:
    # Given an app whose default cap is 1 KiB and whose upload route takes 4 KiB
    client = TestClient(_app(max_request_body_bytes=1024))
    # When bodies of several sizes are posted
    resp = client.post(f"/v1/things{path}", content=b"x" * size, headers={"x-api-key": "good"})
    # Then each route applies its own cap
    assert resp.status_code == status, resp.text
    if status == 413:
        assert resp.json()["error"]["type"] == "request_too_large"


def test_the_door_authenticates_before_anything_else() -> None:
    client = TestClient(_app())
    resp = client.post("/v1/things", content=b"x", headers={"x-api-key": "bad", "anthropic-beta": "nope"})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
