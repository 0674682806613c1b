"""Vaults and credentials through the official SDK: CRUD, archive, write-only secrets, precise 400/404/409s."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import pytest

from managed_agents.testing.mcp_servers import McpTestServer, OAuthIssuer
from tests.e2e.conftest import Server

CANARY = "vault-canary-0b6d2e91"
URL = "https://mcp.example.com/mcp"


def _ws(server: Server) -> str:
    return str(server.rt.keys.workspaces()[0]["id"])


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    err = body.get("error", body)
    assert isinstance(err, dict)
    return err


def test_vault_crud_archive_and_list(client: anthropic.Anthropic) -> None:
    # When a vault is created, updated, listed, archived and deleted
    vault = client.beta.vaults.create(display_name="Alice", metadata={"user": "u1"})
    assert vault.type == "vault" and vault.id.startswith("vlt_") and vault.archived_at is None
    updated = client.beta.vaults.update(vault.id, display_name="Alice B", metadata={"user": None, "team": "t"})
    assert updated.display_name == "Alice B" and updated.metadata == {"team": "t"}
    assert client.beta.vaults.retrieve(vault.id).display_name == "Alice B"
    assert vault.id in [v.id for v in client.beta.vaults.list()]
    archived = client.beta.vaults.archive(vault.id)
    # Then archive hides it from the default list, and delete removes it
    assert archived.archived_at is not None
    assert vault.id not in [v.id for v in client.beta.vaults.list()]
    assert vault.id in [v.id for v in client.beta.vaults.list(include_archived=True)]
    deleted = client.beta.vaults.delete(vault.id)
    assert deleted.type == "vault_deleted" and deleted.id == vault.id
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.vaults.retrieve(vault.id)
    assert _error(info.value)["details"]["error_code"] == "vault_not_found"


def test_vault_list_pages(client: anthropic.Anthropic) -> None:
    ids = {client.beta.vaults.create(display_name=f"v{i}").id for i in range(5)}
    seen = [v.id for v in client.beta.vaults.list(limit=2)]
    assert ids <= set(seen) and len(seen) == len(set(seen))


def test_credentials_are_write_only_everywhere(client: anthropic.Anthropic, server: Server, tmp_path: Path) -> None:
    vault = client.beta.vaults.create(display_name="secrets")
    later = datetime.now(UTC) + timedelta(hours=1)
    # When each credential type is created with a canary secret
    bearer = client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": CANARY + "-b", "mcp_server_url": URL}, display_name="gh"
    )
    oauth = client.beta.vaults.credentials.create(
        vault.id,
        auth={
            "type": "mcp_oauth",
            "access_token": CANARY + "-a",
            "mcp_server_url": "https://other.example.com/mcp",
            "expires_at": later,
            "refresh": {
                "client_id": "cid",
                "refresh_token": CANARY + "-r",
                "token_endpoint": "https://auth.example.com/token",
                "token_endpoint_auth": {"type": "client_secret_post", "client_secret": CANARY + "-c"},
                "scope": "read",
            },
        },
    )
    env = client.beta.vaults.credentials.create(
        vault.id,
        auth={
            "type": "environment_variable",
            "secret_name": "API_KEY",
            "secret_value": CANARY + "-e",
            "networking": {"type": "limited", "allowed_hosts": ["api.example.com", "*.example.org"]},
        },
    )
    # Then the responses carry the non-secret parts, typed by the SDK
    assert bearer.type == "vault_credential" and bearer.id.startswith("vcrd_") and bearer.vault_id == vault.id
    assert bearer.auth.type == "static_bearer" and bearer.auth.mcp_server_url == URL
    assert oauth.auth.type == "mcp_oauth" and oauth.auth.refresh is not None
    assert oauth.auth.refresh.token_endpoint_auth.type == "client_secret_post"
    assert oauth.auth.refresh.scope == "read" and oauth.auth.expires_at is not None
    assert env.auth.type == "environment_variable" and env.auth.secret_name == "API_KEY"
    assert env.auth.injection_location.header is True and env.auth.injection_location.body is True
    assert env.auth.networking.type == "limited"
    # And no secret appears in any response, in the resources database or in the data dir's secret files
    beta = {"headers": {"anthropic-beta": "managed-agents-2026-04-01"}}
    raw = json.dumps(client.get(f"/v1/vaults/{vault.id}/credentials", cast_to=object, options=beta))
    raw += "".join(
        json.dumps(client.get(f"/v1/vaults/{vault.id}/credentials/{c.id}", cast_to=object, options=beta))
        for c in (bearer, oauth, env)
    )
    stored = server.stored_bytes()
    assert b"vault_credential" in stored  # the stores were read (the check below cannot pass vacuously)
    assert CANARY not in raw
    assert CANARY.encode() not in stored
    # While the secret store does hold them (write-only, not write-nowhere)
    assert server.rt.secrets is not None
    rec = server.rt.resources.get("vault_credential", _ws(server), bearer.id)
    assert rec is not None and server.rt.secrets.get(str(rec.doc["_secret"])) == {
        "type": "static_bearer",
        "token": CANARY + "-b",
    }


def test_credential_update_rotates_secret_and_keeps_url(client: anthropic.Anthropic, server: Server) -> None:
    vault = client.beta.vaults.create(display_name="v")
    cred = client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": "old-token", "mcp_server_url": URL}
    )
    updated = client.beta.vaults.credentials.update(
        cred.id, vault_id=vault.id, auth={"type": "static_bearer", "token": "new-token"}, metadata={"k": "v"}
    )
    assert updated.auth.mcp_server_url == URL and updated.metadata == {"k": "v"}
    rec = server.rt.resources.get("vault_credential", _ws(server), cred.id)
    assert server.rt.secrets is not None and rec is not None
    assert server.rt.secrets.get(str(rec.doc["_secret"]))["token"] == "new-token"  # type: ignore[index]
    # A type change is refused, and the URL cannot be sent at all on update
    with pytest.raises(anthropic.BadRequestError, match="cannot change"):
        client.beta.vaults.credentials.update(
            cred.id, vault_id=vault.id, auth={"type": "mcp_oauth", "access_token": "x"}
        )
    with pytest.raises(anthropic.BadRequestError, match="mcp_server_url: unknown field"):
        client.beta.vaults.credentials.update(
            cred.id,
            vault_id=vault.id,
            auth={"type": "static_bearer", "mcp_server_url": URL},  # type: ignore[typeddict-unknown-key]
        )


def test_archive_purges_the_secret_and_blocks_updates(client: anthropic.Anthropic, server: Server) -> None:
    vault = client.beta.vaults.create(display_name="v")
    cred = client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": "t0k3n-x", "mcp_server_url": URL}
    )
    archived = client.beta.vaults.credentials.archive(cred.id, vault_id=vault.id)
    assert archived.archived_at is not None
    rec = server.rt.resources.get("vault_credential", _ws(server), cred.id)
    assert rec is not None and server.rt.secrets is not None
    assert server.rt.secrets.get(str(rec.doc["_secret"])) is None
    assert cred.id not in [c.id for c in client.beta.vaults.credentials.list(vault.id)]
    assert cred.id in [c.id for c in client.beta.vaults.credentials.list(vault.id, include_archived=True)]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.vaults.credentials.update(cred.id, vault_id=vault.id, display_name="again")
    assert _error(info.value)["details"]["error_code"] == "vault_credential_archived"
    # And a new credential for the same URL is now allowed
    client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": "t2", "mcp_server_url": URL}
    )
    deleted = client.beta.vaults.credentials.delete(cred.id, vault_id=vault.id)
    assert deleted.type == "vault_credential_deleted"


def test_archiving_a_vault_archives_its_credentials(client: anthropic.Anthropic) -> None:
    vault = client.beta.vaults.create(display_name="v")
    cred = client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": "abcd1234", "mcp_server_url": URL}
    )
    client.beta.vaults.archive(vault.id)
    assert client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id).archived_at is not None
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.vaults.credentials.create(
            vault.id, auth={"type": "static_bearer", "token": "abcd1234", "mcp_server_url": URL}
        )
    assert _error(info.value)["details"]["error_code"] == "vault_archived"


def test_second_active_credential_for_the_same_url_is_a_409(client: anthropic.Anthropic) -> None:
    vault = client.beta.vaults.create(display_name="v")
    client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": "a1b2", "mcp_server_url": URL}
    )
    with pytest.raises(anthropic.ConflictError) as info:
        client.beta.vaults.credentials.create(
            vault.id,
            auth={
                "type": "static_bearer",
                "token": "c3d4",
                "mcp_server_url": "https://MCP.Example.com:443/mcp/",
            },
        )
    assert info.value.response.headers.get("x-should-retry") == "false"
    assert "c3d4" not in str(info.value)


@pytest.mark.parametrize(
    ("auth", "fragment"),
    [
        ({"type": "static_bearer", "token": "", "mcp_server_url": URL}, "auth.token: "),
        ({"type": "static_bearer", "token": "x", "mcp_server_url": "ftp://h/x"}, "http or https URL"),
        ({"type": "static_bearer", "token": "x", "mcp_server_url": "https://u:p@h/x"}, "user info"),
        ({"type": "static_bearer", "token": "x"}, "mcp_server_url: field required"),
        ({"type": "bearer", "token": "x", "mcp_server_url": URL}, "auth"),
        (
            {"type": "mcp_oauth", "access_token": "x", "mcp_server_url": URL, "expires_at": "2001-01-01T00:00:00Z"},
            "auth.expires_at: must be in the future",
        ),
        (
            {
                "type": "mcp_oauth",
                "access_token": "x",
                "mcp_server_url": URL,
                "refresh": {
                    "client_id": "c",
                    "refresh_token": "r",
                    "token_endpoint": "https://a/t",
                    "token_endpoint_auth": {"type": "client_secret_basic"},
                },
            },
            "client_secret: field required",
        ),
        (
            {
                "type": "environment_variable",
                "secret_name": "1BAD",
                "secret_value": "v",
                "networking": {"type": "unrestricted"},
            },
            "environment variable name",
        ),
        (
            {
                "type": "environment_variable",
                "secret_name": "K",
                "secret_value": "v",
                "networking": {"type": "limited", "allowed_hosts": ["https://api.example.com"]},
            },
            "allowed_hosts[0]",
        ),
        (
            {
                "type": "environment_variable",
                "secret_name": "K",
                "secret_value": "v",
                "networking": {"type": "unrestricted"},
                "injection_location": {"header": False, "body": False},
            },
            "at least one of header and body",
        ),
    ],
)
def test_bad_credential_input_is_a_precise_400(
    client: anthropic.Anthropic, auth: dict[str, Any], fragment: str
) -> None:
    vault = client.beta.vaults.create(display_name="v")
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.vaults.credentials.create(vault.id, auth=auth)  # type: ignore[arg-type]
    assert _error(info.value)["type"] == "invalid_request_error"
    assert fragment in _error(info.value)["message"]
    assert client.beta.vaults.credentials.list(vault.id).data == []


def test_unknown_ids_are_404s(client: anthropic.Anthropic) -> None:
    vault = client.beta.vaults.create(display_name="v")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.vaults.credentials.create(
            "vlt_nope", auth={"type": "static_bearer", "token": "x", "mcp_server_url": URL}
        )
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.vaults.credentials.retrieve("vcrd_nope", vault_id=vault.id)
    assert _error(info.value)["details"]["error_code"] == "vault_credential_not_found"
    other = client.beta.vaults.create(display_name="w")
    cred = client.beta.vaults.credentials.create(
        other.id, auth={"type": "static_bearer", "token": "x1y2", "mcp_server_url": URL}
    )
    with pytest.raises(anthropic.NotFoundError):  # a credential is only reachable through its own vault
        client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id)


def test_mcp_oauth_validate_refreshes_and_reports(client: anthropic.Anthropic) -> None:
    issuer = OAuthIssuer(auth_method="client_secret_basic")
    with McpTestServer(oauth=issuer) as srv:
        _, refresh = issuer.issue()
        vault = client.beta.vaults.create(display_name="v")
        auth: dict[str, Any] = {
            "type": "mcp_oauth",
            "access_token": "at-stale-" + CANARY,
            "mcp_server_url": srv.url,
            "refresh": {
                "client_id": issuer.client_id,
                "refresh_token": refresh,
                "token_endpoint": srv.token_endpoint,
                "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": issuer.client_secret},
            },
        }
        cred = client.beta.vaults.credentials.create(vault.id, auth=auth)  # type: ignore[arg-type]
        # When a credential with a stale access token is validated
        result = client.beta.vaults.credentials.mcp_oauth_validate(cred.id, vault_id=vault.id)
        # Then the probe refreshed it and found it valid
        assert result.type == "vault_credential_validation"
        assert result.status == "valid" and result.has_refresh_token is True
        assert result.refresh is not None and result.refresh.status == "succeeded"
        assert result.mcp_probe is None and result.credential_id == cred.id
        # When the refresh token is revoked too, the verdict is invalid with the token endpoint's scrubbed answer
        issuer.expire_all()
        issuer.revoke_refresh_tokens()
        bad = client.beta.vaults.credentials.mcp_oauth_validate(cred.id, vault_id=vault.id)
        assert bad.status == "invalid"
        assert bad.refresh is not None and bad.refresh.status == "failed"
        assert bad.refresh.http_response is not None and bad.refresh.http_response.status_code == 400
        assert bad.mcp_probe is not None and bad.mcp_probe.method == "initialize"
        assert bad.mcp_probe.http_response is not None and bad.mcp_probe.http_response.status_code == 401
        assert CANARY not in bad.model_dump_json()


def test_mcp_oauth_validate_rejects_other_types(client: anthropic.Anthropic) -> None:
    vault = client.beta.vaults.create(display_name="v")
    cred = client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": "x1y2", "mcp_server_url": URL}
    )
    with pytest.raises(anthropic.BadRequestError, match="mcp_oauth credentials only"):
        client.beta.vaults.credentials.mcp_oauth_validate(cred.id, vault_id=vault.id)
