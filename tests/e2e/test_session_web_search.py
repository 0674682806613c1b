"""web_search through a configured provider (a SearXNG-compatible JSON endpoint, faked on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anthropic
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle
from tests.e2e.loopback_http import serve

QUERIES: list[dict[str, list[str]]] = []


class _Provider(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        QUERIES.append(parse_qs(parts.query))
        results = [
            {"title": "Managed Agents docs", "url": "https://docs.example.com/agents", "content": "How agents   work."},
            {"title": "Spam", "url": "https://spam.example.net/x", "content": "buy now"},
        ]
        body = json.dumps({"query": parse_qs(parts.query).get("q", [""])[0], "results": results}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[str]:
    with serve(_Provider) as url:
        yield url + "/search"


@pytest.fixture
def server_settings(tmp_path: Path, provider: str) -> ServerSettings:
    return ServerSettings(data_dir=str(tmp_path / "data"), sse_ping_seconds=0.5, web_search_url=provider)


def test_web_search_is_offered_and_answered_by_the_provider_with_domain_filters(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given an agent whose web_search blocks one domain, in a deployment with a search provider
    toolset = {
        "type": "agent_toolset_20260401",
        "configs": [{"name": "web_search", "blocked_domains": ["spam.example.net"]}],
    }
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[toolset])  # type: ignore[list-item]
    env = client.beta.environments.create(name="e", config={"type": "self_hosted"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model_server.push(
        {"content": [{"type": "tool_use", "id": "toolu_s", "name": "web_search", "input": {"query": "agents"}}]},
        "found it",
    )
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "search"}]}]
    )
    events = wait_idle(client, sid, timeout=30)
    # Then the model was offered web_search, the provider was asked, and the blocked domain was filtered out
    assert "web_search" in {t["name"] for t in model_server.requests[0]["body"]["tools"]}
    assert QUERIES[-1] == {"q": ["agents"], "format": ["json"]}
    result = next(e for e in events if e.type == "agent.tool_result")
    text = result.content[0].text
    assert not result.is_error
    assert "Managed Agents docs" in text and "https://docs.example.com/agents" in text and "How agents work." in text
    assert "spam.example.net" not in text
    assert events[-1].stop_reason.type == "end_turn"


def test_the_sessions_server_tool_use_counts_its_child_threads_searches(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    # Given a coordinator and its subagent, both with web_search
    toolset = {"type": "agent_toolset_20260401", "configs": [{"name": "web_search"}]}
    flights = client.beta.agents.create(name="flights", model="claude-sonnet-4-6", tools=[toolset])  # type: ignore[list-item]
    lead = client.beta.agents.create(
        name="lead",
        model="claude-sonnet-4-6",
        tools=[toolset],  # type: ignore[list-item]
        multiagent={"type": "coordinator", "agents": [flights.id]},
    )
    env = client.beta.environments.create(name="e", config={"type": "self_hosted"})
    sid = client.beta.sessions.create(agent=lead.id, environment_id=env.id).id
    search = {"type": "tool_use", "name": "web_search", "input": {"query": "flights"}}
    model_server.push(
        {"match": "plan a trip", "content": [search]},
        {"match": "Managed Agents docs", "content": [_delegate_flights("find flights")]},
        {"match": "find flights", "content": [search]},
        {"match": "Managed Agents docs", "content": [{"type": "text", "text": "AF 123"}]},
        {"match": "AF 123", "content": [{"type": "text", "text": "Trip planned."}]},
    )
    # When each searches once
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "plan a trip"}]}]
    )
    events = wait_idle(client, sid, timeout=60)
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Trip planned."]
    # Then the session's usage counts both searches; each thread's its own
    usage = client.beta.sessions.retrieve(sid).usage
    assert usage.server_tool_use is not None and usage.server_tool_use.web_search_requests == 2
    assert usage.server_tool_use.web_fetch_requests == 0
    threads = {t.parent_thread_id is None: t for t in client.beta.sessions.threads.list(sid)}
    for thread in threads.values():
        assert thread.usage is not None and thread.usage.server_tool_use is not None
        assert thread.usage.server_tool_use.web_search_requests == 1
    model_server.assert_complete()


def _delegate_flights(message: str) -> dict[str, Any]:
    return {"type": "tool_use", "name": "delegate_to_flights", "input": {"message": message}}
