"""web_fetch run by the platform under the environment's networking policy; web_search without a provider."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import wait_idle
from tests.e2e.loopback_http import serve

PAGE = (
    b"<html><head><title>Release notes</title><script>var secret='do-not-show';</script></head>"
    b"<body><h1>Version 2</h1><p>Hello from the page.</p></body></html>"
)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/page":
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(PAGE)
        elif self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    with serve(_Handler) as url:
        yield url


def _run(
    client: anthropic.Anthropic, model: ScriptedModelServer, config: dict[str, Any], tool: str, tool_input: Any
) -> tuple[list[Any], list[dict[str, Any]]]:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[{"type": "agent_toolset_20260401"}])
    env = client.beta.environments.create(name="e", config=config)  # type: ignore[arg-type]
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model.push({"content": [{"type": "tool_use", "id": "toolu_w", "name": tool, "input": tool_input}]}, "ok")
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "read it"}]}]
    )
    events = wait_idle(client, sid, timeout=30)
    return events, model.requests[0]["body"]["tools"]


def _result(events: list[Any]) -> Any:
    return next(e for e in events if e.type == "agent.tool_result")


def test_web_fetch_reads_an_allowed_host_as_text(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, site: str
) -> None:
    config = {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["127.0.0.1"]}}
    events, tools = _run(client, model_server, config, "web_fetch", {"url": f"{site}/page"})
    names = {t["name"] for t in tools}
    assert "web_fetch" in names and "web_search" not in names
    result = _result(events)
    text = result.content[0].text
    assert not result.is_error
    assert "Title: Release notes" in text and "Hello from the page." in text and "Version 2" in text
    assert "do-not-show" not in text
    assert events[-1].stop_reason.type == "end_turn"


def test_web_fetch_refuses_private_addresses_under_unrestricted_networking(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, site: str
) -> None:
    events, _ = _run(client, model_server, {"type": "cloud"}, "web_fetch", {"url": f"{site}/page"})
    result = _result(events)
    assert result.is_error and "non-public address" in result.content[0].text


def test_web_fetch_refuses_hosts_outside_limited_networking_and_redirects_to_metadata(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, site: str
) -> None:
    config = {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["example.org"]}}
    events, _ = _run(client, model_server, config, "web_fetch", {"url": f"{site}/page"})
    assert "allowed_hosts" in _result(events).content[0].text
    config = {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["127.0.0.1"]}}
    events, _ = _run(client, model_server, config, "web_fetch", {"url": f"{site}/to-metadata"})
    result = _result(events)
    assert result.is_error and "169.254.169.254" in result.content[0].text


def test_web_search_without_a_provider_is_refused_clearly(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    events, _ = _run(client, model_server, {"type": "cloud"}, "web_search", {"query": "news"})
    result = _result(events)
    assert result.is_error and "no search provider is configured" in result.content[0].text
    use = next(e for e in events if e.type == "agent.tool_use")
    assert use.evaluated_permission == "deny"
