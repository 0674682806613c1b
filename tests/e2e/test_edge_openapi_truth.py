"""The OpenAPI document says what the server does: its error statuses with the envelope schema, its limits as
minimum/maximum; and numbers no store can hold are a 400, never a 500."""

from __future__ import annotations

import base64
from typing import Any, cast

import anthropic
import httpx2
import pytest

from managed_agents.api.app import create_app
from tests.e2e.conftest import Server

HUGE = 10**30


def _seq_cursor(value: int, order: str) -> str:
    """A token of the events list's shape (services/sessions.py encode_seq_cursor) holding any number."""
    return "page_" + base64.urlsafe_b64encode(f"seq:{order}:{value}".encode()).decode().rstrip("=")


def _session(client: anthropic.Anthropic) -> tuple[str, str]:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return agent.id, client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


@pytest.mark.parametrize("value", [HUGE, -HUGE, 2**63, -1])
def test_a_page_cursor_holding_a_huge_number_is_a_400(client: anthropic.Anthropic, value: int) -> None:
    # Given a session, and a cursor of the events list's shape whose number no store can hold
    _, sid = _session(client)
    # When events are listed from it, either way
    for order in ("asc", "desc"):
        with pytest.raises(anthropic.BadRequestError) as info:
            client.beta.sessions.events.list(sid, page=_seq_cursor(value, order), order=order)
        # Then it is a 400 saying the cursor is not one of ours
        assert "page" in str(info.value)


def test_huge_numbers_in_queries_are_a_400(server: Server, client: anthropic.Anthropic) -> None:
    # Given an agent and a session
    agent_id, _ = _session(client)
    headers = {"Authorization": f"Bearer {server.admin_key}", "anthropic-beta": "managed-agents-2026-04-01"}
    # When integer query parameters carry numbers no store can hold
    for path, params in [
        ("/v1/sessions", {"agent_id": agent_id, "agent_version": HUGE}),
        (f"/v1/agents/{agent_id}", {"version": HUGE}),
        ("/v1/agents", {"limit": HUGE}),
        ("/v1/sessions", {"limit": -HUGE}),
    ]:
        resp = httpx2.get(server.url + path, params=params, headers=headers, timeout=10)
        # Then each is a 400 in the envelope
        assert resp.status_code == 400, (path, params, resp.text)
        assert resp.json()["error"]["type"] == "invalid_request_error"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return cast(dict[str, Any], create_app(cast(Any, None)).openapi())


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items() if "/v1/" in path]


def test_every_operation_documents_its_error_statuses_with_the_envelope(document: dict[str, Any]) -> None:
    ops = _operations(document)
    assert len(ops) > 40
    for path, method, op in ops:
        responses = op["responses"]
        # no 422: validation failures are 400s here
        assert "422" not in responses, (method, path)
        for status in ("400", "401", "404", "500", "503", "504"):
            assert status in responses, (method, path, status)
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
        if method in ("post", "put", "patch"):
            assert "413" in responses, (method, path)
    envelope = document["components"]["schemas"]["ErrorResponse"]
    assert envelope["required"] == ["type", "error", "request_id"]


def test_limits_are_declared_as_minimum_and_maximum(document: dict[str, Any]) -> None:
    params = {
        (path, p["name"]): p["schema"]
        for path, item in document["paths"].items()
        for op in item.values()
        for p in op.get("parameters", [])
    }

    def bounds(schema: dict[str, Any]) -> tuple[Any, Any]:
        options = schema.get("anyOf", [schema])
        ints = [o for o in options if o.get("type") == "integer"]
        assert ints, schema
        return ints[0].get("minimum"), ints[0].get("maximum")

    assert bounds(params[("/v1/agents", "limit")]) == (1, 100)
    assert bounds(params[("/v1/sessions/{session_id}/events", "limit")]) == (1, 1000)
    assert bounds(params[("/v1/agents/{agent_id}", "version")])[0] == 1
    assert bounds(params[("/v1/environments/{environment_id}/work/poll", "block_ms")]) == (1, 999)
