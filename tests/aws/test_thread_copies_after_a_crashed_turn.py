"""On AWS a child thread's copies to its session's log survive a ModelTurn that crashes between the child's write and
the copy (harness/threads.py `copy_to_session`): the state machine retries the crashed turn (`Lambda.Unknown`, a
killed or timed-out invocation), and the retry makes the copy. The test plays the state machine, as
test_session_run_handlers.py does, on moto with the scripted Messages server."""

from __future__ import annotations

from typing import Any

import pytest

from functions.model_turn.handler import handler as model_turn_handler
from managed_agents.adapters.aws.step_functions_orchestrator import EXECUTION
from managed_agents.domain.threads import KIND
from managed_agents.ports import iter_all
from managed_agents.services.budgets import child_records
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from tests.aws.conftest import AwsEnv, FakeLambdaContext

TICKET = {
    "type": "custom",
    "name": "ticket",
    "description": "Open a ticket",
    "input_schema": {"type": "object", "properties": {"title": {"type": "string"}}},
}


def _coordinator_session(env: AwsEnv, text: str) -> str:
    rt = env.deps.runtime
    ws = rt.keys.create_workspace("default")
    flights = rt.agents.create(
        ws, AgentCreateParams.model_validate({"name": "flights", "model": "claude-scripted", "tools": [TICKET]})
    )
    lead = rt.agents.create(
        ws,
        AgentCreateParams.model_validate(
            {
                "name": "lead",
                "model": "claude-scripted",
                "multiagent": {"type": "coordinator", "agents": [flights["id"]]},
            }
        ),
    )
    environment = rt.environments.create(
        ws, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "self_hosted"}})
    )
    session = rt.sessions.create(
        ws,
        SessionCreateParams.model_validate(
            {
                "agent": lead["id"],
                "environment_id": environment["id"],
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}],
            }
        ),
    )
    return str(session["id"])


def _run(env: AwsEnv, kind: str, run_id: str) -> list[dict[str, Any]]:
    """Invoke ModelTurn for the run's owning execution until it parks (the ASL's loop)."""
    rec = env.deps.runtime.resources.get_by_id(kind, run_id)
    assert rec is not None and isinstance(rec.doc.get(EXECUTION), str), f"{run_id} was not woken"
    outputs: list[dict[str, Any]] = []
    turns = 0
    for _ in range(20):
        event = {"session_id": run_id, "turns": turns, "execution": rec.doc[EXECUTION]}
        out = model_turn_handler(event, FakeLambdaContext())
        outputs.append(out)
        turns = out["turns"]
        if out["outcome"] in ("parked", "wait_for_tools"):
            return outputs
    raise AssertionError(f"no park within 20 turns: {outputs}")


def test_a_child_turn_that_crashes_before_copying_its_custom_tool_call_copies_it_when_retried(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a coordinator that delegated to a child whose model calls a custom tool
    aws_env.model.push(
        {
            "match": "clean up",
            "content": [{"type": "tool_use", "name": "delegate_to_flights", "input": {"message": "disk"}}],
        },
        {"match": "disk", "content": [{"type": "tool_use", "name": "ticket", "input": {"title": "disk"}}]},
    )
    sid = _coordinator_session(aws_env, "clean up")
    assert _run(aws_env, "session", sid)[-1]["reason"] == "threads"
    session = aws_env.deps.runtime.resources.get_by_id("session", sid)
    assert session is not None
    (child,) = [r.id for r in child_records(aws_env.deps.runtime.resources, session.workspace_id, sid)]
    # When the child's ModelTurn dies after the child logged the call, before the session's copy of it
    events = aws_env.deps.runtime.events
    original = type(events).append
    crashed: list[str] = []

    def append(self: Any, session_id: str, batch: Any, **kw: Any) -> Any:
        if session_id == sid and any(e.type == "agent.custom_tool_use" for e in batch) and not crashed:
            crashed.append(session_id)
            raise RuntimeError("injected: the invocation was killed here")
        return original(self, session_id, batch, **kw)

    monkeypatch.setattr(type(events), "append", append)
    with pytest.raises(RuntimeError, match="injected"):
        _run(aws_env, KIND, child)
    assert "agent.custom_tool_use" in [e.type for e in iter_all(events, child)]
    assert "agent.custom_tool_use" not in [e.type for e in iter_all(events, sid)]
    # Then the retried turn copies the call once, and the session, woken, waits on its user for it
    assert _run(aws_env, KIND, child)[-1]["reason"] == "requires_action"
    assert _run(aws_env, "session", sid)[-1]["reason"] == "requires_action"
    logged = list(iter_all(events, sid))
    calls = [e for e in logged if e.type == "agent.custom_tool_use"]
    assert [(e.payload["session_thread_id"], e.payload["name"]) for e in calls] == [(child, "ticket")]
    idle = [e for e in logged if e.type == "session.status_idle"][-1]
    assert idle.payload["stop_reason"] == {"type": "requires_action", "event_ids": [calls[0].id]}
