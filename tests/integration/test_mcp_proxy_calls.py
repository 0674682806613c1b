"""The MCP proxy against real MCP servers (official SDK) on loopback: bearer, OAuth with refresh, caching."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from managed_agents.mcp_proxy import AUTHENTICATION_FAILED, McpProxyError
from managed_agents.services.vaults import CREDENTIAL
from managed_agents.settings import ServerSettings
from managed_agents.testing.mcp_servers import McpTestServer, OAuthIssuer
from managed_agents.wiring import build_local_runtime
from tests.integration.mcp_proxy_support import WS, World, captured_logs, world

__all__ = ["captured_logs", "world"]

TOKEN = "static-canary-7c1e2b"


def _oauth_auth(srv: McpTestServer, issuer: OAuthIssuer, access: str, refresh: str, **extra: Any) -> dict[str, Any]:
    token_auth: dict[str, Any] = {"type": issuer.auth_method}
    if issuer.auth_method != "none":
        token_auth["client_secret"] = issuer.client_secret
    return {
        "type": "mcp_oauth",
        "access_token": access,
        "mcp_server_url": srv.url,
        "refresh": {
            "client_id": issuer.client_id,
            "refresh_token": refresh,
            "token_endpoint": srv.token_endpoint,
            "token_endpoint_auth": token_auth,
        },
        **extra,
    }


def test_static_bearer_lists_real_schemas_and_calls_tools(world: World) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        # Given a session whose vault holds the server's bearer token
        vault = world.vault()
        world.credential(vault, {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        # When the tools are listed and called
        tools = {t["name"]: t for t in world.proxy.list_tools(sid, "tools")}
        added = world.proxy.call_tool(sid, "tools", "add", {"a": 2, "b": 40})
        failed = world.proxy.call_tool(sid, "tools", "fail", {"message": "no such row"})
        image = world.proxy.call_tool(sid, "tools", "image", {})
        # Then the definitions carry the server's JSON schemas, results are content blocks
        assert tools["add"]["input_schema"]["properties"]["a"]["type"] == "integer"
        assert tools["add"]["input_schema"]["required"] == ["a", "b"]
        assert tools["echo"]["description"] == "Echo the text back."
        assert added.content == [{"type": "text", "text": "42"}] and added.is_error is False
        assert failed.is_error is True and "no such row" in failed.content[0]["text"]
        assert image.content[0]["type"] == "image" and image.content[0]["source"]["media_type"] == "image/png"
        # And every request to the server carried the token
        assert srv.count(status=401) == 0


def test_unknown_tool_is_a_tool_error_not_a_connection_failure(world: World) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        vault = world.vault()
        world.credential(vault, {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        result = world.proxy.call_tool(sid, "tools", "no_such_tool", {})
        assert result.is_error is True
        assert "no_such_tool" in result.content[0]["text"]


def test_warm_connection_and_tool_cache_are_reused(world: World) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        vault = world.vault()
        world.credential(vault, {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        world.proxy.list_tools(sid, "tools")
        world.proxy.call_tool(sid, "tools", "echo", {"text": "a"})
        posts_before = sum(1 for r in srv.requests if r["method"] == "POST")
        # When tools are listed again and another call is made
        again = world.proxy.list_tools(sid, "tools")
        world.proxy.call_tool(sid, "tools", "echo", {"text": "b"})
        # Then the list came from the cache and the call reused the session (one POST, no new initialize)
        posts_after = sum(1 for r in srv.requests if r["method"] == "POST")
        assert posts_after - posts_before == 1
        assert {t["name"] for t in again} >= {"echo", "add"}
        assert world.proxy.connection_count() == 1
        # And closing the session drops its connection
        world.proxy.close_session(sid)
        assert world.proxy.connection_count() == 0


def test_oauth_refresh_on_401_stores_the_new_tokens(world: World) -> None:
    issuer = OAuthIssuer(auth_method="client_secret_basic")
    with McpTestServer(oauth=issuer) as srv:
        # Given a credential whose access token the server no longer accepts (but whose expiry says it is fine)
        _, refresh = issuer.issue()
        vault = world.vault()
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        cid = world.credential(vault, _oauth_auth(srv, issuer, "at-revoked-by-server", refresh, expires_at=later))
        sid = world.session({"oauth": srv.url}, [vault])
        # When a tool is called
        result = world.proxy.call_tool(sid, "oauth", "echo", {"text": "hello"})
        # Then the proxy refreshed once, retried, and stored the rotated tokens back
        assert result.content == [{"type": "text", "text": "hello"}]
        assert issuer.refresh_count == 1
        rec = world.rt.resources.get(CREDENTIAL.name, WS, cid)
        assert rec is not None
        assert world.rt.secrets is not None
        stored = world.rt.secrets.get(str(rec.doc["_secret"]))
        assert stored is not None and issuer.valid(stored["access_token"])
        assert stored["refresh_token"] != refresh  # rotated by the issuer, kept by us
        assert rec.doc["auth"]["expires_at"] is not None  # type: ignore[index]


@pytest.mark.parametrize("method", ["client_secret_post", "none"])
def test_oauth_expiring_token_is_refreshed_before_the_call(world: World, method: str) -> None:
    issuer = OAuthIssuer(auth_method=method, access_ttl=1.0)  # type: ignore[arg-type]
    with McpTestServer(oauth=issuer) as srv:
        access, refresh = issuer.issue()
        vault = world.vault()
        soon = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
        world.credential(vault, _oauth_auth(srv, issuer, access, refresh, expires_at=soon))
        sid = world.session({"oauth": srv.url}, [vault])
        # When calls keep coming while access tokens expire every second
        for i in range(3):
            assert world.proxy.call_tool(sid, "oauth", "add", {"a": i, "b": 1}).content[0]["text"] == str(i + 1)
            time.sleep(1.1)
        # Then every expiry was handled by a refresh (early, inside the skew window) and no call failed
        assert issuer.refresh_count >= 3
        assert issuer.refused_refreshes == 0


def test_revoked_refresh_token_is_an_authentication_error_without_secrets(
    world: World, captured_logs: pytest.LogCaptureFixture
) -> None:
    issuer = OAuthIssuer(auth_method="client_secret_post")
    with McpTestServer(oauth=issuer) as srv:
        access, refresh = issuer.issue()
        vault = world.vault()
        world.credential(vault, _oauth_auth(srv, issuer, access, refresh))
        sid = world.session({"oauth": srv.url}, [vault])
        world.proxy.call_tool(sid, "oauth", "echo", {"text": "ok"})
        # When the server drops every access token and the refresh token was revoked
        issuer.expire_all()
        issuer.revoke_refresh_tokens()
        with pytest.raises(McpProxyError) as info:
            world.proxy.call_tool(sid, "oauth", "echo", {"text": "again"})
        # Then the error is the reference's authentication error, naming the server and the cause
        err = info.value
        assert err.error_type == AUTHENTICATION_FAILED and err.server_name == "oauth"
        assert "invalid_grant" in err.message and "HTTP 400" in err.message
        assert err.session_error()["mcp_server_name"] == "oauth"
        # And no secret shows in the message or in any log line
        text = err.message + "\n".join(r.getMessage() + str(r.__dict__) for r in captured_logs.records)
        for secret in (access, refresh, issuer.client_secret):
            assert secret not in text


def test_the_embedded_vault_writes_secrets_through_the_proxy_under_its_refresh_lock(tmp_path: Path) -> None:
    # Given the embedded runtime
    rt = build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)
    try:
        assert rt.vaults is not None and rt.mcp_proxy is not None
        # When a credential secret is written while the proxy holds that credential's refresh lock
        proxy = rt.mcp_proxy
        lock = proxy._secret_lock("vaults/vlt_1/vcrd_1")
        written = threading.Event()
        vaults = rt.vaults

        def write() -> None:
            vaults.credential_secrets.put_secret("vaults/vlt_1/vcrd_1", {"token": "t"})
            written.set()

        with lock:
            writer = threading.Thread(target=write)
            writer.start()
            # Then the write waits for the refresh to finish
            assert not written.wait(0.3)
        assert written.wait(5)
        writer.join()
        assert rt.secrets is not None and rt.secrets.get("vaults/vlt_1/vcrd_1") == {"token": "t"}
    finally:
        rt.close()
