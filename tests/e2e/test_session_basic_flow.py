"""A plain conversation through the official SDK: agent, environment, session, message, idle, history."""

from __future__ import annotations

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import wait_idle


def _agent_env(client: anthropic.Anthropic, **agent_kw: object) -> tuple[str, str]:
    agent = client.beta.agents.create(name="helper", model="claude-sonnet-4-6", system="Be brief.", **agent_kw)  # type: ignore[arg-type]
    env = client.beta.environments.create(name="env", config={"type": "cloud"})
    return agent.id, env.id


def test_message_runs_a_turn_and_goes_idle(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    # Given an agent, an environment and a scripted model reply
    agent_id, env_id = _agent_env(client)
    model_server.push({"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hello there"}]})
    # When a session is created with an initial message
    session = client.beta.sessions.create(
        agent=agent_id,
        environment_id=env_id,
        title="t",
        metadata={"team": "a"},
        initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}],
    )
    events = wait_idle(client, session.id)
    # Then the log holds the whole turn in order, typed by the SDK
    types = [e.type for e in events]
    assert types == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.thinking",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    msg = next(e for e in events if e.type == "agent.message")
    assert msg.content[0].text == "Hello there"
    end = next(e for e in events if e.type == "span.model_request_end")
    start = next(e for e in events if e.type == "span.model_request_start")
    assert end.model_request_start_id == start.id
    assert end.model_usage.output_tokens > 0
    idle = events[-1]
    assert idle.stop_reason.type == "end_turn"
    # And the model was sent the system prompt, the user's message and cache breakpoints
    body = model_server.requests[-1]["body"]
    assert body["model"] == "claude-sonnet-4-6"
    assert body["system"][0]["text"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
    ]
    # And the session reports idle status and usage totals
    got = client.beta.sessions.retrieve(session.id)
    assert got.status == "idle"
    assert got.usage.output_tokens == end.model_usage.output_tokens
    assert got.title == "t" and got.metadata == {"team": "a"}
    assert got.agent.id == agent_id and got.agent.version == 1
    model_server.assert_complete()


def test_second_message_carries_the_transcript(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    agent_id, env_id = _agent_env(client)
    model_server.push("first answer", "second answer")
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    assert session.status == "idle"
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "one"}]}]
    )
    wait_idle(client, session.id)
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "two"}]}]
    )
    events = wait_idle(client, session.id, count=2)
    texts = [e.content[0].text for e in events if e.type == "agent.message"]
    assert texts == ["first answer", "second answer"]
    messages = model_server.requests[-1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][0]["text"] == "first answer"
    assert messages[2]["content"][0]["text"] == "two"
