"""MCP tools in sessions through the official SDK: real MCP servers on loopback, credentials from vaults."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from managed_agents.testing.mcp_servers import McpTestServer, OAuthIssuer
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, wait_idle

TOKEN = "mcp-canary-token-5e1f0c"


@pytest.fixture
def mcp_server() -> Iterator[McpTestServer]:
    with McpTestServer(bearer_token=TOKEN) as srv:
        yield srv


def _session(client: anthropic.Anthropic, url: str, vault_ids: list[str], toolset: dict[str, Any] | None = None) -> str:
    agent = client.beta.agents.create(
        name="a",
        model="claude-sonnet-4-6",
        mcp_servers=[{"type": "url", "name": "tools", "url": url}],
        tools=[toolset or {"type": "mcp_toolset", "mcp_server_name": "tools"}],
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=vault_ids).id


def _vault(client: anthropic.Anthropic, url: str, token: str = TOKEN) -> str:
    vault = client.beta.vaults.create(display_name="v")
    client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": token, "mcp_server_url": url}
    )
    return vault.id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _call(name: str, tool_input: dict[str, Any], tool_id: str = "toolu_m1") -> dict[str, Any]:
    return {"content": [{"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}]}


def test_mcp_tool_is_offered_with_its_schema_asked_for_and_run_through_the_proxy(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, mcp_server: McpTestServer
) -> None:
    # Given an agent with an MCP toolset (default policy: always_ask) and a vault holding the server's token
    sid = _session(client, mcp_server.url, [_vault(client, mcp_server.url)])
    model_server.push(_call("add", {"a": 2, "b": 40}), "The sum is 42.")
    # When the model calls the MCP tool
    _say(client, sid, "add 2 and 40")
    events = wait_idle(client, sid)
    # Then it was offered the server's real tools and schemas
    offered = {t["name"]: t for t in model_server.requests[0]["body"]["tools"]}
    assert {"echo", "add", "fail"} <= set(offered)
    assert offered["add"]["input_schema"]["properties"].keys() == {"a", "b"}
    # And the call waits for the user's confirmation (MCP default policy always_ask)
    use = next(e for e in events if e.type == "agent.mcp_tool_use")
    assert (use.name, use.mcp_server_name, use.input) == ("add", "tools", {"a": 2, "b": 40})
    assert use.evaluated_permission == "ask"
    assert events[-1].stop_reason.type == "requires_action" and events[-1].stop_reason.event_ids == [use.id]
    # When the user allows it
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "allow"}]
    )
    events = wait_idle(client, sid, count=2)
    # Then the platform ran it on the real server and the model got the result
    result = next(e for e in events if e.type == "agent.mcp_tool_result")
    assert result.mcp_tool_use_id == use.id and not result.is_error
    assert result.content[0].text == "42"
    tool_result = model_server.requests[1]["body"]["messages"][-1]["content"][0]
    assert tool_result["tool_use_id"] == "toolu_m1" and tool_result["content"][0]["text"] == "42"
    assert events[-1].stop_reason.type == "end_turn"
    # And the credential's secret is nowhere: events, model requests
    assert TOKEN not in json.dumps([e.model_dump(mode="json") for e in all_events(client, sid)])
    assert TOKEN not in json.dumps(model_server.requests)
    assert mcp_server.count(status=200) >= 2


def test_always_allow_mcp_tool_runs_without_asking_and_tool_errors_reach_the_model(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, mcp_server: McpTestServer
) -> None:
    toolset = {
        "type": "mcp_toolset",
        "mcp_server_name": "tools",
        "default_config": {"permission_policy": {"type": "always_allow"}},
        "configs": [{"name": "echo", "enabled": False}],
    }
    sid = _session(client, mcp_server.url, [_vault(client, mcp_server.url)], toolset)
    model_server.push(_call("fail", {"message": "disk full"}), "It failed.")
    _say(client, sid, "try")
    events = wait_idle(client, sid)
    assert "echo" not in {t["name"] for t in model_server.requests[0]["body"]["tools"]}
    use = next(e for e in events if e.type == "agent.mcp_tool_use")
    assert use.evaluated_permission == "allow"
    result = next(e for e in events if e.type == "agent.mcp_tool_result")
    assert result.is_error and "disk full" in result.content[0].text
    assert events[-1].stop_reason.type == "end_turn"


def test_wrong_credential_is_a_readable_session_error_without_the_secret(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, mcp_server: McpTestServer
) -> None:
    # Given a vault whose token the server refuses
    wrong = "wrong-canary-token-77"
    sid = _session(client, mcp_server.url, [_vault(client, mcp_server.url, wrong)])
    model_server.push("I could not use the tools.")
    _say(client, sid, "hi")
    events = wait_idle(client, sid)
    # Then the turn still runs, without that server's tools, and a session.error says why
    error = next(e for e in events if e.type == "session.error")
    assert error.error.type == "mcp_authentication_failed_error"
    assert error.error.mcp_server_name == "tools" and error.error.retry_status.type == "retrying"
    assert "tools" not in model_server.requests[0]["body"] or not model_server.requests[0]["body"]["tools"]
    assert wrong not in json.dumps([e.model_dump(mode="json") for e in events])
    assert events[-1].stop_reason.type == "end_turn"


def test_oauth_credential_is_refreshed_when_its_token_expires(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    issuer = OAuthIssuer(access_ttl=3600)
    with McpTestServer(oauth=issuer) as srv:
        access, refresh = issuer.issue()
        vault = client.beta.vaults.create(display_name="o")
        client.beta.vaults.credentials.create(
            vault.id,
            auth={
                "type": "mcp_oauth",
                "access_token": access,
                "mcp_server_url": srv.url,
                "refresh": {
                    "client_id": issuer.client_id,
                    "refresh_token": refresh,
                    "token_endpoint": srv.token_endpoint,
                    "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": issuer.client_secret},
                },
            },
        )
        toolset = {
            "type": "mcp_toolset",
            "mcp_server_name": "tools",
            "default_config": {"permission_policy": {"type": "always_allow"}},
        }
        sid = _session(client, srv.url, [vault.id], toolset)
        issuer.expire_all()  # the stored access token is dead before the first use
        model_server.push(_call("echo", {"text": "hello"}), "done")
        _say(client, sid, "echo")
        events = wait_idle(client, sid)
        result = next(e for e in events if e.type == "agent.mcp_tool_result")
        assert not result.is_error and result.content[0].text == "hello"
        assert issuer.refresh_count >= 1


def test_unknown_vault_id_is_rejected_at_session_create(client: anthropic.Anthropic) -> None:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=["vlt_nope"])
    assert "vlt_nope" in str(info.value)


def test_credential_secret_never_reaches_logs_sandbox_or_model(
    server: Server,
    client: anthropic.Anthropic,
    model_server: ScriptedModelServer,
    mcp_server: McpTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a cloud session with both a sandbox and an MCP server whose token is in the session's vault
    vault_id = _vault(client, mcp_server.url)  # before capturing: the test's own SDK debug-logs what it sends
    caplog.set_level(logging.DEBUG)
    agent = client.beta.agents.create(
        name="a",
        model="claude-sonnet-4-6",
        mcp_servers=[{"type": "url", "name": "tools", "url": mcp_server.url}],
        tools=[
            {"type": "agent_toolset_20260401"},
            {
                "type": "mcp_toolset",
                "mcp_server_name": "tools",
                "default_config": {"permission_policy": {"type": "always_allow"}},
            },
        ],
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault_id]).id
    model_server.push(
        _call("echo", {"text": "via mcp"}),
        _call(
            "bash",
            {
                # counts, not the text: the worker saves long outputs to a file and shows their head only
                "command": "(env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n') | grep -c mcp-canary;"
                " grep -rl mcp-canary ~ /tmp 2>/dev/null | head -20; echo end"
            },
            "toolu_b",
        ),
        "done",
    )
    # When the model uses the MCP tool and then probes its sandbox
    _say(client, sid, "go")
    events = wait_idle(client, sid, timeout=60)
    bash = next(e for e in events if e.type == "agent.tool_result")  # a cloud sandbox's result is the agent's
    lines = bash.content[0].text.split()
    assert lines[0] == "0" and lines[-1] == "end"  # no process environment holds it
    assert next(e for e in events if e.type == "agent.mcp_tool_result").content[0].text == "via mcp"
    # Then the token is in no event, no model request, no API response, no log line and not in the sandbox
    assert TOKEN not in bash.content[0].text
    assert TOKEN not in json.dumps([e.model_dump(mode="json") for e in all_events(client, sid)])
    assert TOKEN not in json.dumps(model_server.requests)
    assert TOKEN not in client.beta.vaults.credentials.list(vault_id).to_json()
    assert TOKEN not in caplog.text
    workdir = server.sandbox_workdir(sid)
    assert workdir.is_dir()
    for path in workdir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
