"""The EventBridge / Scheduler triggers handler: one session per event id, a readable error for bad events."""

from __future__ import annotations

import pytest

from functions.triggers.handler import handler as triggers_handler
from managed_agents.domain.errors import InvalidRequest, NotFound
from managed_agents.ports import iter_all
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from tests.aws.conftest import AwsEnv, FakeLambdaContext


def _agent_env(env: AwsEnv) -> tuple[str, str, str]:
    rt = env.deps.runtime
    ws = rt.keys.create_workspace("default")
    agent = rt.agents.create(ws, AgentCreateParams.model_validate({"name": "a", "model": "claude-scripted"}))
    environment = rt.environments.create(
        ws, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "cloud"}})
    )
    return ws, str(agent["id"]), str(environment["id"])


def test_an_event_starts_one_session_even_when_delivered_twice(aws_env: AwsEnv) -> None:
    ws, agent_id, env_id = _agent_env(aws_env)
    event = {
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "managed-agents.start-session",
        "source": "my.app",
        "detail": {
            "workspace_id": ws,
            "agent": agent_id,
            "environment_id": env_id,
            "message": "Summarise today's tickets",
            "title": "nightly",
            "metadata": {"team": "ops"},
        },
    }
    first = triggers_handler(event, FakeLambdaContext())  # type: ignore[arg-type]
    again = triggers_handler(event, FakeLambdaContext())  # type: ignore[arg-type]
    assert first["created"] is True and again == {"session_id": first["session_id"], "created": False}
    rt = aws_env.deps.runtime
    session = rt.sessions.get(ws, first["session_id"])
    assert session["title"] == "nightly" and session["metadata"]["team"] == "ops"
    assert session["metadata"]["trigger_event_id"] == event["id"]
    events = list(iter_all(rt.events, first["session_id"]))
    assert [e.type for e in events] == ["user.message"]
    assert events[0].payload["content"] == [{"type": "text", "text": "Summarise today's tickets"}]
    # the session was woken: the state machine has an execution for it
    assert any(first["session_id"] in e["name"] for e in aws_env.executions())


def test_a_schedule_input_uses_its_event_id(aws_env: AwsEnv) -> None:
    ws, agent_id, env_id = _agent_env(aws_env)
    schedule_input = {
        "event_id": "schedule-run-1",
        "workspace_id": ws,
        "agent": {"type": "agent", "id": agent_id, "version": 1},
        "environment_id": env_id,
        "message": "hourly check",
    }
    out = triggers_handler(schedule_input, FakeLambdaContext())  # type: ignore[arg-type]
    assert out["created"] is True
    assert triggers_handler(schedule_input, FakeLambdaContext())["created"] is False  # type: ignore[arg-type]


def test_bad_events_say_what_is_wrong(aws_env: AwsEnv) -> None:
    ws, agent_id, env_id = _agent_env(aws_env)
    with pytest.raises(InvalidRequest) as info:
        triggers_handler({"id": "e1", "detail": {"workspace_id": ws, "agent": agent_id}}, FakeLambdaContext())  # type: ignore[arg-type]
    assert "environment_id" in info.value.message
    with pytest.raises(InvalidRequest, match="no id"):
        triggers_handler({"detail": {"workspace_id": ws}}, FakeLambdaContext())  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="wrkspc_nope"):
        bad = {"workspace_id": "wrkspc_nope", "agent": agent_id, "environment_id": env_id, "message": "x"}
        triggers_handler({"id": "e2", "detail": bad}, FakeLambdaContext())  # type: ignore[arg-type]
