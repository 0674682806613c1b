"""Endpoints the SDK has and this server does not serve yet answer one clear 400, through the SDK's own methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest

from tests.e2e.conftest import Server

# (name, the SDK call) for one method of every resource that is planned but not built
CALLS: list[tuple[str, Callable[[anthropic.Anthropic], Any]]] = [
    ("dreams", lambda c: c.beta.dreams.list()),
    ("tunnels", lambda c: c.beta.tunnels.list()),
    ("user_profiles", lambda c: c.beta.user_profiles.list()),
]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[n for n, _ in CALLS])
def test_a_planned_endpoint_is_a_clear_400(
    client: anthropic.Anthropic, call: Callable[[anthropic.Anthropic], Any]
) -> None:
    # Given / When the SDK calls an endpoint this server has not built yet, with its default headers
    with pytest.raises(anthropic.BadRequestError) as info:
        call(client)
    # Then it is a 400 invalid_request_error saying it is not supported yet (not a 404 "no route")
    body = info.value.body
    assert isinstance(body, dict)
    error = body.get("error", body)
    assert error["type"] == "invalid_request_error"
    assert "not supported by this server yet" in error["message"]


def test_planned_endpoints_still_need_a_key(server: Server) -> None:
    # Given / When an unauthenticated client calls a planned endpoint
    resp = httpx2.get(server.url + "/v1/dreams", timeout=10)
    # Then it is refused as any endpoint is
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"


def test_an_unknown_route_is_still_a_404(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}", "anthropic-beta": "managed-agents-2026-04-01"}
    resp = httpx2.get(server.url + "/v1/nothing_here", headers=headers, timeout=10)
    assert resp.status_code == 404 and "no route" in resp.json()["error"]["message"]
