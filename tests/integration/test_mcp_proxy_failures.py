"""MCP proxy failures: each a clear, typed error, within the timeout, with no secret in the message or the logs."""

from __future__ import annotations

import socket
import time

import pytest

from managed_agents.domain.errors import NotFound
from managed_agents.mcp_proxy import AUTHENTICATION_FAILED, CONNECTION_FAILED, McpProxyError
from managed_agents.testing.mcp_servers import McpTestServer
from tests.integration.mcp_proxy_support import WS, World, captured_logs, world

__all__ = ["captured_logs", "world"]

TOKEN = "static-canary-91d0aa"
WRONG = "wrong-canary-3f77c0"


def _all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__} {r.exc_text or ''}" for r in caplog.records)


def _expect(
    fn: object, error_type: str, *fragments: str, within: float, caplog: pytest.LogCaptureFixture
) -> McpProxyError:
    t0 = time.monotonic()
    with pytest.raises(McpProxyError) as info:
        fn()  # type: ignore[operator]
    elapsed = time.monotonic() - t0
    err = info.value
    assert err.error_type == error_type, err.message
    for fragment in fragments:
        assert fragment in err.message, err.message
    assert elapsed < within, f"took {elapsed:.1f} s"
    for secret in (TOKEN, WRONG):
        assert secret not in err.message and secret not in repr(err)
        assert secret not in _all_log_text(caplog)
    return err


def test_wrong_server_credential_is_an_authentication_error(
    world: World, captured_logs: pytest.LogCaptureFixture
) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        vault = world.vault()
        cid = world.credential(vault, {"type": "static_bearer", "token": WRONG, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        err = _expect(
            lambda: world.proxy.call_tool(sid, "tools", "echo", {"text": "x"}),
            AUTHENTICATION_FAILED,
            "HTTP 401",
            cid,
            within=5,
            caplog=captured_logs,
        )
        assert err.server_name == "tools"
        assert err.session_error()["type"] == "mcp_authentication_failed_error"


def test_credential_for_another_server_is_not_used(world: World, captured_logs: pytest.LogCaptureFixture) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv, McpTestServer(bearer_token=WRONG) as other:
        # Given a vault whose only credential is for a different MCP server
        vault = world.vault()
        world.credential(vault, {"type": "static_bearer", "token": WRONG, "mcp_server_url": other.url})
        sid = world.session({"tools": srv.url}, [vault])
        # Then calling this server sends no credential and says none matched
        _expect(
            lambda: world.proxy.list_tools(sid, "tools"),
            AUTHENTICATION_FAILED,
            "hold no active credential for this server URL",
            vault,
            within=5,
            caplog=captured_logs,
        )
        assert not any(r["authorization"] for r in srv.requests)


def test_archived_credential_stops_working_on_a_warm_connection(
    world: World, captured_logs: pytest.LogCaptureFixture
) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        vault = world.vault()
        cid = world.credential(vault, {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        assert world.proxy.call_tool(sid, "tools", "echo", {"text": "ok"}).is_error is False
        # When the credential is archived (revoked) while the connection is warm
        world.vaults.archive_credential(WS, vault, cid)
        # Then the next call does not reuse the old token
        _expect(
            lambda: world.proxy.call_tool(sid, "tools", "echo", {"text": "x"}),
            AUTHENTICATION_FAILED,
            "no active credential",
            within=5,
            caplog=captured_logs,
        )


def test_deleted_vault_is_skipped(world: World, captured_logs: pytest.LogCaptureFixture) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        vault = world.vault()
        world.credential(vault, {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        world.vaults.delete(WS, vault)
        _expect(
            lambda: world.proxy.call_tool(sid, "tools", "echo", {"text": "x"}),
            AUTHENTICATION_FAILED,
            "no active credential",
            within=5,
            caplog=captured_logs,
        )


def test_hanging_server_fails_within_the_connect_timeout(world: World, captured_logs: pytest.LogCaptureFixture) -> None:
    with McpTestServer(bearer_token=TOKEN, mode="hang") as srv:
        vault = world.vault()
        world.credential(vault, {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        _expect(
            lambda: world.proxy.call_tool(sid, "tools", "echo", {"text": "x"}),
            CONNECTION_FAILED,
            "initialize handshake within 3 s",
            within=6,
            caplog=captured_logs,
        )


def test_hanging_tool_call_fails_within_the_call_timeout_and_the_next_call_works(
    world: World, captured_logs: pytest.LogCaptureFixture
) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        vault = world.vault()
        world.credential(vault, {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        _expect(
            lambda: world.proxy.call_tool(sid, "tools", "sleep", {"seconds": 30}, timeout=1.0),
            CONNECTION_FAILED,
            "did not answer tools/call 'sleep' within 1 s",
            within=4,
            caplog=captured_logs,
        )
        # Then the broken connection is replaced and the server is usable again
        assert world.proxy.call_tool(sid, "tools", "echo", {"text": "back"}).content == [
            {"type": "text", "text": "back"}
        ]


@pytest.mark.parametrize(("mode", "fragment"), [("garbage_html", "text/html"), ("garbage_json", "not MCP")])
def test_server_returning_garbage_is_a_connection_error_without_waiting(
    world: World, captured_logs: pytest.LogCaptureFixture, mode: str, fragment: str
) -> None:
    with McpTestServer(bearer_token=TOKEN, mode=mode) as srv:  # type: ignore[arg-type]
        vault = world.vault()
        world.credential(vault, {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url})
        sid = world.session({"tools": srv.url}, [vault])
        _expect(
            lambda: world.proxy.list_tools(sid, "tools"),
            CONNECTION_FAILED,
            "not MCP",
            fragment,
            within=2.5,  # well under the 3 s connect timeout: detected, not timed out
            caplog=captured_logs,
        )


def test_unreachable_server_is_a_connection_error(world: World, captured_logs: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"  # nothing listens here
    sid = world.session({"gone": url}, [])
    _expect(
        lambda: world.proxy.call_tool(sid, "gone", "echo", {"text": "x"}),
        CONNECTION_FAILED,
        "could not reach MCP server 'gone'",
        within=5,
        caplog=captured_logs,
    )


def test_unknown_server_name_and_unknown_session(world: World, captured_logs: pytest.LogCaptureFixture) -> None:
    sid = world.session({"tools": "http://127.0.0.1:9/mcp"}, [])
    _expect(
        lambda: world.proxy.list_tools(sid, "nope"),
        CONNECTION_FAILED,
        "has no MCP server named 'nope' (it has: 'tools')",
        within=1,
        caplog=captured_logs,
    )
    with pytest.raises(NotFound, match="sesn_missing"):
        world.proxy.list_tools("sesn_missing", "tools")
