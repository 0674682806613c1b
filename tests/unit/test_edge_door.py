"""The door of every /v1 route (api/edge.py, api/betas.py): its pieces on a small app of its own."""

from __future__ import annotations

import threading
import typing
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from anthropic.types import AnthropicBetaParam
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from managed_agents.api import betas
from managed_agents.api.edge import MAX_BODY_EXTRA, call, edge_router
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
    def cached(self, secret: str | None) -> Principal | None:
        return None  # every request is looked up (on a read thread)

    def authenticate(self, secret: str | None) -> Principal:
        if secret != "good":
            raise AuthenticationFailed("invalid API key")
        return Principal(workspace_id="wrkspc_1", key_id="apikey_1")


def _block(started: threading.Event, release: threading.Event) -> bool:
    started.set()
    return release.wait(30)


def _app(**settings: Any) -> FastAPI:
    app = FastAPI()
    app.state.started, app.state.release = threading.Event(), threading.Event()
    app.state.runtime = SimpleNamespace(settings=ServerSettings(**settings), keys=_Keys())
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    router = edge_router("/v1/things", tags=["things"], beta=None)

    @router.post("")
    async def small(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @router.get("/slow")
    async def slow_read(request: Request) -> dict[str, bool]:
        return {"done": await call(_block, request.app.state.started, request.app.state.release)}

    @router.post("/slow")
    async def slow_write(request: Request) -> dict[str, bool]:
        return {"done": await call(_block, request.app.state.started, request.app.state.release)}

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


def test_a_read_past_the_deadline_is_a_504_and_a_write_waiting_for_a_thread_a_503() -> None:
    # Given an app with a 0.5 s deadline and one write thread, whose handlers block until released
    app = _app(request_deadline_seconds=0.5, api_write_threads=1)
    auth = {"x-api-key": "good"}
    with TestClient(app) as client:
        # When a read outlasts the deadline
        read = client.get("/v1/things/slow", headers=auth)
        # Then it is a 504 timeout_error
        assert read.status_code == 504 and read.json()["error"]["type"] == "timeout_error"
        # When a write holds the only write thread and a second write arrives
        app.state.started.clear()
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/v1/things/slow", headers=auth)
            assert app.state.started.wait(10)
            second = client.post("/v1/things/slow", headers=auth)
            # Then the second is a 503 (nothing done), and the first, once released, completes: writes are not cut
            assert second.status_code == 503 and "nothing was done" in second.json()["error"]["message"]
            app.state.release.set()
            assert first.result(timeout=30).json() == {"done": True}
