"""`system.message` through the official SDK (api-reference §3.1): where it may be sent, and the `role: "system"`
turn it becomes in the model's context."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, wait_idle

LOOKUP_TOOL = {
    "type": "custom",
    "name": "lookup",
    "description": "Look a word up",
    "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
}


def _msg(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _system(text: str) -> Any:
    return {"type": "system.message", "content": [{"type": "text", "text": text}]}


def _session(client: anthropic.Anthropic, **agent_kw: Any) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", **agent_kw)
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _strip_cache(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**m, "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]]} for m in messages
    ]


def test_system_message_becomes_a_system_turn_after_its_user_message(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client)
    model_server.push("first", "second")
    # When a user message goes with a system message
    sent = client.beta.sessions.events.send(sid, events=[_msg("hello"), _system("Answer in French.")])
    # Then both are echoed, typed by the SDK
    assert [e.type for e in sent.data] == ["user.message", "system.message"]
    assert sent.data[1].content[0].text == "Answer in French."
    wait_idle(client, sid)
    # And the model sees the user turn, then a system turn
    assert _strip_cache(model_server.requests[0]["body"]["messages"]) == [
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
    ]
    # And the system turn stays in place for the next turn
    client.beta.sessions.events.send(sid, events=[_msg("again")])
    wait_idle(client, sid, count=2)
    assert [m["role"] for m in model_server.requests[1]["body"]["messages"]] == ["user", "system", "assistant", "user"]
    logged = [e.type for e in all_events(client, sid) if e.type in ("user.message", "system.message")]
    assert logged == ["user.message", "system.message", "user.message"]


def test_system_message_after_a_custom_tool_result(server: Server, model_server: ScriptedModelServer) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client, tools=[LOOKUP_TOOL])
    model_server.push({"content": [{"type": "tool_use", "name": "lookup", "input": {"word": "x"}}]}, "done")
    client.beta.sessions.events.send(sid, events=[_msg("look x up")])
    use = next(e for e in wait_idle(client, sid) if e.type == "agent.custom_tool_use")
    # When the tool result goes with a system message
    result = {
        "type": "user.custom_tool_result",
        "custom_tool_use_id": use.id,
        "content": [{"type": "text", "text": "ok"}],
    }
    client.beta.sessions.events.send(sid, events=[result, _system("Be terse.")])
    wait_idle(client, sid, count=2)
    # Then the model gets the tool result, then the system turn
    last_two = model_server.requests[1]["body"]["messages"][-2:]
    assert last_two[0]["role"] == "user" and last_two[0]["content"][0]["type"] == "tool_result"
    assert _strip_cache([last_two[1]]) == [{"role": "system", "content": [{"type": "text", "text": "Be terse."}]}]


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([_system("alone")], id="alone"),
        pytest.param([_system("first"), _msg("then a message")], id="not-last"),
        pytest.param([_msg("hi"), _system("one"), _system("two")], id="two-in-one-request"),
        pytest.param([{"type": "user.interrupt"}, _system("after an interrupt")], id="after-interrupt"),
    ],
)
def test_system_message_ordering_rules(server: Server, events: list[Any]) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client)
    # When a system.message is not the last event right after the input it accompanies, Then it is refused
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.events.send(sid, events=events)
    assert "system.message" in str(info.value)
    # And nothing was logged
    assert all_events(client, sid) == []


def test_system_message_is_not_an_initial_event(server: Server) -> None:
    client = server.client(_strict_response_validation=True)
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=[_msg("hi"), _system("x")])
