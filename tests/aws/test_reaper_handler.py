"""The work reaper Lambda (functions/reaper) on moto: an expired lease loses its hands, the session hears of it.

The scenario is a bash call of a self_hosted session whose worker took the work item and then stopped heartbeating:
the ModelTurn handler ran the turn (the work item was created by the harness), the ToolWait handler parked its task
token, and the scheduled reaper invocation finds the item through the sparse work-state index.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from functions.model_turn.handler import handler as model_turn_handler
from functions.reaper.handler import handler as reaper_handler
from functions.tool_wait.handler import handler as tool_wait_handler
from managed_agents.adapters.aws.step_functions_orchestrator import EXECUTION, StepFunctionsOrchestrator
from managed_agents.domain.clock import rfc3339
from managed_agents.ports import Record, iter_all
from managed_agents.services.records import mutate
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from tests.aws.conftest import AwsEnv, FakeLambdaContext

SCHEDULED_EVENT = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


def _session_waiting_on_bash(env: AwsEnv) -> tuple[str, Record]:
    """A session parked in ToolWait on a bash call, and its work item (queued: a self_hosted worker must take it)."""
    env.model.push({"content": [{"type": "tool_use", "name": "bash", "input": {"command": "ls"}}]}, "recovered")
    rt = env.deps.runtime
    ws = rt.keys.create_workspace("default")
    agent = rt.agents.create(
        ws,
        AgentCreateParams.model_validate(
            {"name": "a", "model": "claude-scripted", "tools": [{"type": "agent_toolset_20260401"}]}
        ),
    )
    environment = rt.environments.create(
        ws, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "self_hosted"}})
    )
    session = rt.sessions.create(
        ws,
        SessionCreateParams.model_validate(
            {
                "agent": agent["id"],
                "environment_id": environment["id"],
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "list"}]}],
            }
        ),
    )
    sid = str(session["id"])
    rec = rt.resources.get_by_id("session", sid)
    assert rec is not None
    execution = rec.doc[EXECUTION]
    turns = 0
    for _ in range(5):
        out = model_turn_handler({"session_id": sid, "turns": turns, "execution": execution}, FakeLambdaContext())
        turns = out["turns"]
        if out["outcome"] == "wait_for_tools":
            break
    else:
        raise AssertionError("the bash call never waited for its result")
    tool_wait_handler({"session_id": sid, "task_token": "token-reaper"}, FakeLambdaContext())
    (work,) = rt.resources.find("work", "session_id", [sid])
    return sid, work


def _lease(env: AwsEnv, work: Record, *, expires_in: timedelta) -> None:
    """What the worker's ack and heartbeats leave on the item: active, with a lease ending `expires_in` from now."""
    now = env.deps.runtime.clock.now()

    def change(r: Record) -> None:
        r.doc["state"] = r.attrs["state"] = "active"
        r.doc["acknowledged_at"] = r.doc["started_at"] = r.doc["latest_heartbeat_at"] = rfc3339(now)
        r.doc["_lease_expires_at"] = rfc3339(now + expires_in)

    mutate(env.deps.runtime.resources, work, change)


def test_the_scheduled_reaper_stops_an_expired_item_and_tells_the_session(aws_env: AwsEnv) -> None:
    # Given a bash call waiting on a worker whose 60 s lease ran out a second ago
    sid, work = _session_waiting_on_bash(aws_env)
    _lease(aws_env, work, expires_in=timedelta(seconds=-1))
    sent: list[dict[str, Any]] = []
    orchestrator = aws_env.deps.runtime.sessions.svc.orchestrator
    assert isinstance(orchestrator, StepFunctionsOrchestrator)
    orchestrator.sfn.meta.events.register(
        "provide-client-params.sfn.SendTaskSuccess", lambda params, **_: sent.append(params)
    )
    # When the schedule invokes the reaper
    out = reaper_handler(SCHEDULED_EVENT, FakeLambdaContext(function_name="reaper"))
    # Then it reaped that one item, which is stopped as failed
    assert out == {"reaped": 1}
    rt = aws_env.deps.runtime
    stopped = rt.resources.get_by_id("work", work.id)
    assert stopped is not None and stopped.doc["state"] == "stopped" and stopped.doc["_stop_reason"] == "failed"
    # And the pending bash call got an error result and the session a retrying session.error, in that order
    events = list(iter_all(rt.events, sid))
    tool_use = next(e for e in events if e.type == "agent.tool_use")
    result, error = events[-2], events[-1]
    assert result.type == "user.tool_result" and result.payload["tool_use_id"] == tool_use.id
    assert result.payload["is_error"] is True
    assert "lease expired" in result.payload["content"][0]["text"]
    assert "next tool call gets a fresh sandbox" in result.payload["content"][0]["text"]
    assert error.type == "session.error" and error.payload["error"]["retry_status"] == {"type": "retrying"}
    # And the wake released the run's tool wait, so the next ModelTurn sends the error result to the model
    assert [p["taskToken"] for p in sent] == ["token-reaper"]
    # And a second (overlapping or later) invocation finds nothing left to reap
    assert reaper_handler(SCHEDULED_EVENT, FakeLambdaContext(function_name="reaper")) == {"reaped": 0}
    assert len(list(iter_all(rt.events, sid))) == len(events)


def test_the_reaper_leaves_live_leases_and_queued_items_alone(aws_env: AwsEnv) -> None:
    # Given a queued item (no worker took it yet: self_hosted items wait in the queue without a lease)
    sid, work = _session_waiting_on_bash(aws_env)
    before = len(list(iter_all(aws_env.deps.runtime.events, sid)))
    # When the reaper runs, and again after a worker took it with a lease that has 30 s left
    first = reaper_handler(SCHEDULED_EVENT, FakeLambdaContext(function_name="reaper"))
    _lease(aws_env, work, expires_in=timedelta(seconds=30))
    second = reaper_handler(SCHEDULED_EVENT, FakeLambdaContext(function_name="reaper"))
    # Then nothing was reaped and the session's log is unchanged
    assert first == second == {"reaped": 0}
    rec = aws_env.deps.runtime.resources.get_by_id("work", work.id)
    assert rec is not None and rec.doc["state"] == "active"
    assert len(list(iter_all(aws_env.deps.runtime.events, sid))) == before


class _UnreachableProvisioner:
    """A provisioner Lambda that cannot be invoked (throttled, or its role lost the permission)."""

    isolation = "test"

    def __init__(self) -> None:
        self.stops: list[tuple[str, str | None]] = []

    def launch(self, spec: object, on_exit: object) -> None:
        raise AssertionError("the reaper launches nothing")

    def stop(self, session_id: str, work_id: str | None) -> None:
        self.stops.append((session_id, work_id))
        raise RuntimeError("Lambda.TooManyRequestsException")

    def dispose(self, session_id: str) -> None:
        raise AssertionError("the reaper disposes of nothing")


def test_a_sandbox_that_cannot_be_stopped_still_costs_the_session_its_pending_call(aws_env: AwsEnv) -> None:
    # Given a platform (cloud) item whose lease expired, and a provisioner that fails to stop its task
    sid, work = _session_waiting_on_bash(aws_env)
    mutate(aws_env.deps.runtime.resources, work, lambda r: r.doc.update({"_platform": True}))
    _lease(aws_env, aws_env.deps.runtime.resources.get_by_id("work", work.id) or work, expires_in=timedelta(seconds=-1))
    rt = aws_env.deps.runtime
    assert rt.work is not None
    provisioner = _UnreachableProvisioner()
    rt.work.provisioner = provisioner
    # When the reaper runs
    assert reaper_handler(SCHEDULED_EVENT, FakeLambdaContext(function_name="reaper")) == {"reaped": 1}
    # Then it tried to stop the task, and the session still got its error result and session.error
    assert provisioner.stops == [(sid, work.id)]
    types = [e.type for e in iter_all(rt.events, sid)]
    assert types[-2:] == ["user.tool_result", "session.error"]
