"""Tool calls through the official SDK: custom tools, confirmations (allow/deny), bad input.

Sandbox results (user.tool_result from a worker's work token) are in test_work_queue_api.py and test_sandbox_*.py."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import wait_idle, wait_until

WEATHER_TOOL = {
    "type": "custom",
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK_TOOLSET = {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}


def _session(client: anthropic.Anthropic, tools: list[Any], env_type: str = "cloud") -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=tools)
    env = client.beta.environments.create(name="e", config={"type": env_type})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    last = body["messages"][-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if b.get("type") == "tool_result"]


def _text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content or [])


def test_custom_tool_round_trip(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    # Given an agent with a custom tool and a model that calls it
    sid = _session(client, [WEATHER_TOOL])
    model_server.push(
        {"content": [{"type": "tool_use", "id": "toolu_w1", "name": "get_weather", "input": {"city": "Oslo"}}]},
        "It is sunny in Oslo.",
    )
    # When the user asks
    _say(client, sid, "weather?")
    events = wait_idle(client, sid)
    # Then the session stops for the client to run the tool
    types = [e.type for e in events]
    assert types[-3:] == ["agent.custom_tool_use", "span.model_request_end", "session.status_idle"]
    use = next(e for e in events if e.type == "agent.custom_tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Oslo"}
    idle = events[-1]
    assert idle.stop_reason.type == "requires_action"
    assert idle.stop_reason.event_ids == [use.id]
    assert wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle", timeout=30)
    # And the model was offered the tool
    assert [t["name"] for t in model_server.requests[0]["body"]["tools"]] == ["get_weather"]
    # When the client sends the result
    result: Any = {
        "type": "user.custom_tool_result",
        "custom_tool_use_id": use.id,
        "content": [{"type": "text", "text": "sunny, 21C"}],
    }
    client.beta.sessions.events.send(sid, events=[result])
    events = wait_idle(client, sid, count=2)
    # And sends it again: refused, the call is answered (AWS keeps the state a send checked against between sends:
    # the next one reads what was logged since)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.events.send(sid, events=[result])
    # Then the model gets a tool_result for its own tool_use id with the content
    results = _tool_results(model_server.requests[1]["body"])
    assert len(results) == 1
    assert results[0]["tool_use_id"] == "toolu_w1"
    assert "sunny, 21C" in _text(results[0])
    assert not results[0].get("is_error")
    # And the turn ends with the answer
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["It is sunny in Oslo."]
    assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == "end_turn"
    model_server.assert_complete()


def _ask_for_bash(client: anthropic.Anthropic, model_server: ScriptedModelServer, final: str) -> tuple[str, Any]:
    sid = _session(client, [ASK_TOOLSET], env_type="self_hosted")
    model_server.push(
        {"content": [{"type": "tool_use", "id": "toolu_b1", "name": "bash", "input": {"command": "ls"}}]}, final
    )
    _say(client, sid, "list files")
    events = wait_idle(client, sid)
    use = next(e for e in events if e.type == "agent.tool_use")
    assert use.name == "bash" and use.input == {"command": "ls"}
    assert use.evaluated_permission == "ask"
    idle = events[-1]
    assert idle.type == "session.status_idle"
    assert idle.stop_reason.type == "requires_action" and idle.stop_reason.event_ids == [use.id]
    return sid, use


def test_denied_confirmation_sends_error_result_to_model(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a bash call waiting for confirmation
    sid, use = _ask_for_bash(client, model_server, "Okay, I won't.")
    # When the user denies it with a message
    client.beta.sessions.events.send(
        sid,
        events=[{"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "deny", "deny_message": "not now"}],
    )
    events = wait_idle(client, sid, count=2)
    # Then the model receives an error tool_result carrying the deny message
    results = _tool_results(model_server.requests[1]["body"])
    assert len(results) == 1 and results[0]["tool_use_id"] == "toolu_b1"
    assert results[0]["is_error"] is True
    assert "not now" in _text(results[0])
    # And the turn ends normally
    assert events[-1].stop_reason.type == "end_turn"
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Okay, I won't."]
    model_server.assert_complete()


def test_custom_result_for_unknown_id_is_rejected(client: anthropic.Anthropic) -> None:
    sid = _session(client, [WEATHER_TOOL])
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_nope", "content": []}]
        )
    assert "sevt_nope" in str(info.value)
    assert "custom_tool_use_id" in str(info.value)


def test_confirmation_for_call_not_awaiting_one_is_rejected(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a custom tool call (never confirmation-gated)
    sid = _session(client, [WEATHER_TOOL])
    model_server.push({"content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}]})
    _say(client, sid, "weather?")
    events = wait_idle(client, sid)
    use = next(e for e in events if e.type == "agent.custom_tool_use")
    # When a confirmation is sent for it, or for an unknown id
    for target in (use.id, "sevt_unknown"):
        with pytest.raises(anthropic.BadRequestError) as info:
            client.beta.sessions.events.send(
                sid, events=[{"type": "user.tool_confirmation", "tool_use_id": target, "result": "allow"}]
            )
        # Then it is rejected naming the id
        assert target in str(info.value)
    # And the log is unchanged
    assert [e.id for e in wait_idle(client, sid)] == [e.id for e in events]


def test_confirming_twice_is_rejected(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    sid, use = _ask_for_bash(client, model_server, "done")
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "allow"}]
    )
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "deny"}]
        )
    assert "not awaiting confirmation" in str(info.value)
