"""`anthropic-beta` checked per resource as the hosted API does (api-reference §1.1, §9).

The official SDK sends the right value by default (the whole e2e suite runs on it); a raw client (curl) that
forgets it, misspells it or mixes environment betas gets the hosted answers, each saying what to send.
"""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from tests.e2e.conftest import Server

MA = "managed-agents-2026-04-01"


def _get(server: Server, path: str, beta: str | None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {server.admin_key}", "anthropic-version": "2026-10-21"}
    if beta is not None:
        headers["anthropic-beta"] = beta
    return httpx2.get(server.url + path, headers=headers, timeout=10)


def _error(resp: httpx2.Response, status: int, error_type: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type, body
    assert resp.headers["request-id"] == body["request_id"]
    return str(body["error"]["message"])


@pytest.mark.parametrize("path", ["/v1/agents", "/v1/sessions", "/v1/vaults"])
def test_without_the_managed_agents_beta_the_resource_is_not_found(server: Server, path: str) -> None:
    # Given / When a raw client lists agents, sessions or vaults without (or with an unrelated) beta
    for beta in (None, "files-api-2025-04-14"):
        message = _error(_get(server, path, beta), 404, "not_found_error")
        # Then it is a 404 that names the header value to send
        assert f"`{MA}`" in message and "anthropic-beta" in message
    # And with the beta, among others, the same request is served
    assert _get(server, path, f"files-api-2025-04-14, {MA}").status_code == 200


def test_environments_name_their_beta_and_take_one_environments_beta(server: Server) -> None:
    # Given / When the environments API is called without a beta
    message = _error(_get(server, "/v1/environments", None), 404, "not_found_error")
    # Then the hosted message names the beta it needs
    assert message == (
        "The environments API requires the `environments-2025-11-01` value in the `anthropic-beta` header."
    )
    # And either environments beta is enough, but not both
    assert _get(server, "/v1/environments", "environments-2025-11-01").status_code == 200
    assert _get(server, "/v1/environments", MA).status_code == 200
    both = _get(server, "/v1/environments", f"environments-2025-11-01,{MA}")
    message = _error(both, 400, "invalid_request_error")
    assert message == "Only one environments beta header may be specified per request."


def test_unknown_beta_values_are_a_400_naming_them(server: Server) -> None:
    # Given / When a request carries a misspelled beta next to a good one
    resp = _get(server, "/v1/agents", f"{MA},managed-agent-2026-04-01,nope")
    # Then the 400 names the unknown values
    message = _error(resp, 400, "invalid_request_error")
    assert message == "Unexpected value(s) `managed-agent-2026-04-01`, `nope` for the `anthropic-beta` header."


def test_the_sdk_default_headers_pass_and_betas_add_to_them(client: anthropic.Anthropic) -> None:
    # Given / When the SDK sends its default beta plus one the caller adds
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", betas=["files-api-2025-04-14"])
    # Then the request is served
    assert client.beta.agents.retrieve(agent.id, betas=["files-api-2025-04-14"]).id == agent.id


def test_health_and_the_console_need_no_beta(server: Server) -> None:
    assert httpx2.get(server.url + "/health", timeout=10).status_code == 200
    assert httpx2.get(server.url + "/console/", timeout=10).status_code == 200
