"""MCP tools in the synthesized "session run" on moto: ModelTurn reaches the MCP server through the MCP proxy Lambda.

tests/aws/platform.py dispatches every Lambda invocation to the real handler in-process, the MCP proxy's included;
the vault credential is written by the API Lambda's app to Secrets Manager (moto) and read only by the proxy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from managed_agents.testing.mcp_servers import McpTestServer
from tests.aws.platform import Platform, aws_platform
from tests.infra.conftest import Synth, default_synth  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
TOKEN = "mcp-session-run-canary-3f8a90"


@pytest.fixture
def platform(default_synth: Synth, tmp_path: Path) -> Iterator[Platform]:  # noqa: F811
    with aws_platform(default_synth, tmp_path) as p:
        yield p


def _mcp_session(platform: Platform, url: str, token: str) -> str:
    client = platform.client
    vault = client.beta.vaults.create(display_name="v")
    client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": token, "mcp_server_url": url}
    )
    agent = client.beta.agents.create(
        name="a",
        model="claude-sonnet-4-6",
        mcp_servers=[{"type": "url", "name": "tools", "url": url}],
        tools=[
            {
                "type": "mcp_toolset",
                "mcp_server_name": "tools",
                "default_config": {"permission_policy": {"type": "always_allow"}},
            }
        ],
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id]).id


def _call(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "tool_use", "id": "toolu_m1", "name": name, "input": tool_input}]}


def test_an_mcp_tool_runs_through_the_mcp_proxy_lambda(platform: Platform) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        # Given an agent whose MCP toolset runs without asking, and a vault holding the server's token
        sid = _mcp_session(platform, srv.url, TOKEN)
        platform.model.push(_call("add", {"a": 2, "b": 40}), "The sum is 42.")
        # When the user asks and the model calls the MCP tool
        platform.say(sid, "add 2 and 40")
        events = platform.wait_idle(sid)
        # Then the model was offered the server's real tools (listed by the proxy Lambda)
        offered = {t["name"]: t for t in platform.model.requests[0]["body"]["tools"]}
        assert {"echo", "add", "fail"} <= set(offered)
        assert offered["add"]["input_schema"]["properties"].keys() == {"a", "b"}
        # And the tool ran on the server with the vault's token, and its result reached the model
        use = next(e for e in events if e.type == "agent.mcp_tool_use")
        result = next(e for e in events if e.type == "agent.mcp_tool_result")
        assert result.mcp_tool_use_id == use.id and not result.is_error
        assert result.content[0].text == "42"
        assert "42" in str(platform.model.requests[1]["body"]["messages"][-1])
        assert srv.count(status=401) == 0 and all(r["authorization"] for r in srv.requests)
        assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == "end_turn"
        # And the ModelTurn Lambda (its steps chained in one invocation) reached the server only through the MCP
        # proxy Lambda: listing the tools for each model request, then the call
        calls = Counter(platform.invocations)
        assert calls["McpProxy"] >= 2 and calls["ModelTurn"] >= 1
        assert not any(e.type == "session.error" for e in events)


def test_a_rejected_credential_is_a_session_error_through_the_proxy(platform: Platform) -> None:
    wrong = "wrong-session-run-canary-0b11"
    with McpTestServer(bearer_token=TOKEN) as srv:
        # Given a vault whose token the server rejects
        sid = _mcp_session(platform, srv.url, wrong)
        platform.model.push("I could not use the tools.")
        # When a turn lists the server's tools through the proxy
        platform.say(sid, "hi")
        events = platform.wait_idle(sid)
        # Then the session reports the proxy's typed authentication error, without the secret
        (error,) = [e for e in events if e.type == "session.error"]
        assert error.error.type == "mcp_authentication_failed_error"
        assert error.error.mcp_server_name == "tools" and "HTTP 401" in error.error.message
        everything = str([e.model_dump() for e in platform.events(sid)])
        assert wrong not in everything and TOKEN not in everything
