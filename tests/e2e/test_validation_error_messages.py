"""Request validation errors name the field as the client wrote it and the shape it must have, never the server's
internal model or validator names (`ModelConfigParams`, `constrained-str`, `function-after[...]`)."""

from __future__ import annotations

import inspect
import json
import pkgutil
from importlib import import_module
from typing import Any

import anthropic
import pytest
from pydantic import BaseModel

import managed_agents.wire
from tests.e2e.conftest import Server


def _internal_names() -> set[str]:
    """Every pydantic model class name of the wire package, and the union-member tags pydantic invents."""
    names = {"constrained-str", "function-after", "function-before", "function-wrap", "function-plain", "Input should"}
    for info in pkgutil.iter_modules(managed_agents.wire.__path__):
        module = import_module(f"managed_agents.wire.{info.name}")
        names |= {n for n, obj in vars(module).items() if inspect.isclass(obj) and issubclass(obj, BaseModel)}
    return names - {"BaseModel"}


INTERNAL = _internal_names()
TOOLSET: dict[str, Any] = {"type": "agent_toolset_20260401"}
AGENT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"model": 123}, "model: expected a string or an object, got 123"),
    ({"model": {"id": 5}}, "model.id: expected a string, got 5"),
    ({"model": {"id": "m", "speed": "warp"}}, "model.speed: expected 'standard' or 'fast', got \"warp\""),
    ({"model": "m", "name": 5}, "name: expected a string, got 5"),
    ({"model": "m", "tools": 5}, "tools: expected a list, got 5"),
    (
        {"model": "m", "tools": [TOOLSET, {"type": "nope"}]},
        "tools[1].type: expected one of 'agent_toolset_20260401', 'mcp_toolset', 'custom', got \"nope\"",
    ),
    (
        {"model": "m", "tools": [{"type": "custom", "name": "x", "description": "d", "input_schema": 5}]},
        "tools[0].input_schema: expected an object, got 5",
    ),
    ({"model": "m", "metadata": {"team": 5}}, "metadata.team: expected a string, got 5"),
    ({"model": "m", "mcp_servers": [{"type": "url", "url": "http://x"}]}, "mcp_servers[0].name: field required"),
]


def _error(call: Any) -> dict[str, Any]:
    with pytest.raises(anthropic.BadRequestError) as info:
        call()
    body: dict[str, Any] = info.value.body  # type: ignore[assignment]
    error: dict[str, Any] = body["error"]
    assert error["type"] == "invalid_request_error"
    leaked = {name for name in INTERNAL if name in json.dumps(error)}
    assert not leaked, (leaked, error)
    return error


@pytest.mark.parametrize(("params", "message"), AGENT_CASES, ids=[m.split(":")[0] for _, m in AGENT_CASES])
def test_agent_create_errors_name_the_field_and_the_expected_shape(
    client: anthropic.Anthropic, params: dict[str, Any], message: str
) -> None:
    # Given a create request with one field of the wrong shape
    params = {"name": "a", **params}
    # When it is sent, Then the error names that field as sent, the shape it must have, and what came instead
    error = _error(lambda: client.beta.agents.create(**params))
    assert error["message"] == message
    assert error["details"]["errors"][0] == {"loc": message.split(": ")[0], "message": message.split(": ", 1)[1]}


def test_event_and_query_errors_name_the_field_and_the_expected_shape(
    server: Server, client: anthropic.Anthropic
) -> None:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    bad_content: Any = [{"type": "user.message", "content": "hi"}]
    error = _error(lambda: client.beta.sessions.events.send(sid, events=bad_content))
    assert error["message"] == 'events[0].content: expected a list, got "hi"'
    bad_text: Any = [{"type": "user.message", "content": [{"type": "text", "text": 5}]}]
    error = _error(lambda: client.beta.sessions.events.send(sid, events=bad_text))
    assert error["message"] == "events[0].content[0].text: expected a string, got 5"
    bad_type: Any = [{"type": "user.nope"}]
    error = _error(lambda: client.beta.sessions.events.send(sid, events=bad_type))
    assert error["message"].startswith("events[0].type: expected one of 'user.message', ")
    assert error["message"].endswith(', got "user.nope"')
    bad_limit: Any = "abc"
    error = _error(lambda: client.beta.agents.list(limit=bad_limit))
    assert error["message"] == 'limit: expected an integer, got "abc"'
