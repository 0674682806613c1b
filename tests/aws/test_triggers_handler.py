"""The EventBridge / Scheduler triggers handler: the documented examples work verbatim, once per key.

The events are built from docs/deploy-aws.md ("Sessions from events and schedules"): the JSON its commands write,
with the shell variables filled in as bash would, delivered the way EventBridge delivers an event to a rule target
and the way Scheduler fills in a schedule's input. The rule's pattern and bus come from the synthesized template.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any

import pytest

from functions.triggers.handler import handler as triggers_handler
from managed_agents.domain.errors import InvalidRequest, NotFound
from managed_agents.ports import ListQuery, iter_all
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.deployments import DeploymentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from tests.aws.conftest import AwsEnv, FakeLambdaContext
from tests.infra.conftest import REPO_ROOT, Synth

DOCS = REPO_ROOT / "docs" / "deploy-aws.md"
SCHEDULE_ARN = "arn:aws:scheduler:us-east-1:123456789012:schedule/managed-agents-schedules/nightly-report"


def documented_json(
    name: str, variables: dict[str, str], heading: str = "## Sessions from events and schedules"
) -> Any:
    """The JSON the docs' triggers section writes to `name` (a `cat > name <<JSON` heredoc), `$VARS` expanded."""
    section = DOCS.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"cat > {re.escape(name)} <<JSON\n(.*?)\nJSON\n", section, re.S)
    assert match, f"docs/deploy-aws.md no longer writes {name}"
    text = re.sub(r"\$([A-Z_]+)", lambda m: variables[m.group(1)], match.group(1))
    return json.loads(text)


def delivered_event(entry: dict[str, Any]) -> dict[str, Any]:
    """A PutEvents entry as EventBridge hands it to a rule's Lambda target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": "123456789012",
        "time": "2026-12-06T06:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": json.loads(entry["Detail"]),
    }


def scheduled_input(target: dict[str, Any], scheduled_time: str) -> dict[str, Any]:
    """A schedule target's Input as Scheduler passes it at one run: its context attributes filled in."""
    text = target["Input"].replace("<aws.scheduler.schedule-arn>", SCHEDULE_ARN)
    text = text.replace("<aws.scheduler.scheduled-time>", scheduled_time)
    result: dict[str, Any] = json.loads(text)
    return result


def _agent_env(env: AwsEnv) -> tuple[str, str, str]:
    rt = env.deps.runtime
    ws = rt.keys.create_workspace("default")
    agent = rt.agents.create(ws, AgentCreateParams.model_validate({"name": "a", "model": "claude-scripted"}))
    environment = rt.environments.create(
        ws, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "cloud"}})
    )
    return ws, str(agent["id"]), str(environment["id"])


def _run(event: dict[str, Any]) -> dict[str, Any]:
    return triggers_handler(event, FakeLambdaContext())  # type: ignore[arg-type]


def test_the_documented_event_starts_one_session_even_when_delivered_twice(
    aws_env: AwsEnv, default_synth: Synth
) -> None:
    # Given an agent and an environment, and the event the docs' put-events command sends
    ws, agent_id, env_id = _agent_env(aws_env)
    (entry,) = documented_json("start-session.json", {"AGENT_ID": agent_id, "ENVIRONMENT_ID": env_id})
    # (it goes to the stack's bus and matches the stack's rule)
    (bus,) = default_synth.resources("AWS::Events::EventBus").values()
    rules = default_synth.resources("AWS::Events::Rule").values()
    (rule,) = [r for r in rules if "EventBusName" in r["Properties"]]  # (the reaper's is on the default bus)
    assert entry["EventBusName"] == bus["Properties"]["Name"]
    assert rule["Properties"]["EventPattern"] == {"detail-type": [entry["DetailType"]]}
    event = delivered_event(entry)
    # When EventBridge delivers it, and delivers it again
    first = _run(event)
    again = _run(event)
    # Then one session was created in the agent's workspace, with the message as its first event, and woken
    assert first["created"] is True and again == {"session_id": first["session_id"], "created": False}
    rt = aws_env.deps.runtime
    session = rt.sessions.get(ws, first["session_id"])
    assert session["metadata"]["trigger_event_id"] == event["id"]
    events = list(iter_all(rt.events, first["session_id"]))
    assert [e.type for e in events] == ["user.message"]
    assert events[0].payload["content"] == [{"type": "text", "text": "Summarize yesterday's tickets"}]
    assert any(first["session_id"] in e["name"] for e in aws_env.executions())


def test_two_deliveries_racing_past_the_claim_create_one_session(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the documented event, and a first delivery held after its claim, before it creates the session
    ws, agent_id, env_id = _agent_env(aws_env)
    (entry,) = documented_json("start-session.json", {"AGENT_ID": agent_id, "ENVIRONMENT_ID": env_id})
    event = delivered_event(entry)
    rt = aws_env.deps.runtime
    check_create = rt.sessions.check_create
    held, released = threading.Event(), threading.Event()

    def hold_the_first(*args: Any, **kwargs: Any) -> Any:
        if not held.is_set():
            held.set()
            assert released.wait(30)
        return check_create(*args, **kwargs)

    monkeypatch.setattr(rt.sessions, "check_create", hold_the_first)
    results: list[dict[str, Any]] = []
    first = threading.Thread(target=lambda: results.append(_run(event)))
    first.start()
    assert held.wait(30)
    # When a second delivery of the same event runs to its end meanwhile, then the first one goes on
    results.append(_run(event))
    released.set()
    first.join(30)
    # Then one session exists for the event, and both deliveries answer with it
    second_result, first_result = results
    assert second_result["created"] is True and first_result == {
        "session_id": second_result["session_id"],
        "created": False,
    }
    sessions = [r for r in rt.resources.find("session", "agent_id", [agent_id]) if r.workspace_id == ws]
    assert [r.id for r in sessions] == [second_result["session_id"]]
    assert [e.type for e in iter_all(rt.events, second_result["session_id"])] == ["user.message"]


def test_the_documented_schedule_starts_one_session_per_scheduled_run(aws_env: AwsEnv) -> None:
    # Given the target of the docs' create-schedule command
    ws, agent_id, env_id = _agent_env(aws_env)
    arns = {"TRIGGERS_FUNCTION_ARN": "fn", "SCHEDULER_ROLE_ARN": "role", "TRIGGER_DLQ_ARN": "dlq"}
    target = documented_json("nightly-target.json", {"AGENT_ID": agent_id, "ENVIRONMENT_ID": env_id, **arns})
    assert target["DeadLetterConfig"] == {"Arn": "dlq"}
    # When Scheduler runs it, retries that run, then runs it the next day
    monday = _run(scheduled_input(target, "2026-12-07T06:00:00Z"))
    retried = _run(scheduled_input(target, "2026-12-07T06:00:00Z"))
    tuesday = _run(scheduled_input(target, "2026-12-08T06:00:00Z"))
    # Then each scheduled run started exactly one session
    assert monday["created"] and tuesday["created"] and not retried["created"]
    assert retried["session_id"] == monday["session_id"] != tuesday["session_id"]
    session = aws_env.deps.runtime.sessions.get(ws, tuesday["session_id"])
    assert session["metadata"]["trigger_event_id"] == f"{SCHEDULE_ARN}@2026-12-08T06:00:00Z"


def test_a_pinned_agent_version_and_an_explicit_workspace_are_accepted(aws_env: AwsEnv) -> None:
    ws, agent_id, env_id = _agent_env(aws_env)
    detail = {
        "type": "start_session",
        "workspace_id": ws,
        "agent": {"type": "agent", "id": agent_id, "version": 1},
        "environment_id": env_id,
        "message": "hourly check",
        "title": "hourly",
        "metadata": {"team": "ops"},
    }
    out = _run({"id": "e-1", "detail-type": "StartSession", "source": "my.app", "detail": detail})
    session = aws_env.deps.runtime.sessions.get(ws, out["session_id"])
    assert session["title"] == "hourly" and session["metadata"]["team"] == "ops"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"id": "e1", "detail-type": "StartSession", "detail": {"agent": "AGENT"}}, "detail.environment_id: Field"),
        ({"id": "e2", "detail-type": "StartSession", "detail": {"type": "stop_everything"}}, "does not match any"),
        ({"detail-type": "StartSession", "detail": {}}, "trigger event: id: Field required"),
        ({"agent": "AGENT", "message": "x"}, "not a trigger: expected an EventBridge event"),
        (
            {
                "schedule_arn": "<aws.scheduler.schedule-arn>",
                "scheduled_time": "<aws.scheduler.scheduled-time>",
                "detail": {},
            },
            "placeholders were not filled in",
        ),
    ],
)
def test_a_malformed_trigger_says_what_is_wrong(aws_env: AwsEnv, event: dict[str, Any], message: str) -> None:
    _, agent_id, _ = _agent_env(aws_env)
    event = json.loads(json.dumps(event).replace("AGENT", agent_id))
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        _run(event)


def test_an_unknown_agent_or_a_foreign_workspace_is_not_found(aws_env: AwsEnv) -> None:
    _, agent_id, env_id = _agent_env(aws_env)
    unknown = {"agent": "agent_nope", "environment_id": env_id, "message": "x"}
    with pytest.raises(NotFound, match="agent_nope"):
        _run({"id": "e3", "detail-type": "StartSession", "detail": unknown})
    foreign = {"workspace_id": "wrkspc_other", "agent": agent_id, "environment_id": env_id, "message": "x"}
    with pytest.raises(NotFound, match="in workspace 'wrkspc_other'"):
        _run({"id": "e4", "detail-type": "StartSession", "detail": foreign})


def test_the_documented_run_deployment_event_runs_it_once(aws_env: AwsEnv) -> None:
    # Given a deployment and the event the docs' run-deployment command sends
    ws, agent_id, env_id = _agent_env(aws_env)
    rt = aws_env.deps.runtime
    hello = [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
    dep = rt.deployments.create(
        ws,
        DeploymentCreateParams.model_validate(
            {"agent": agent_id, "environment_id": env_id, "name": "d", "initial_events": hello}
        ),
    )
    (entry,) = documented_json(
        "run-deployment.json", {"DEPLOYMENT_ID": str(dep["id"])}, heading="## Deployments and their schedules"
    )
    event = delivered_event(entry)
    # When EventBridge delivers it twice
    first, again = _run(event), _run(event)
    # Then the deployment ran once, a manual run with its session
    assert first["run_id"] == again["run_id"] and first["session_id"] and first["error"] is None
    runs, _ = rt.deployments.list_runs(ws, ListQuery(limit=10), deployment_id=str(dep["id"]))
    assert [r["id"] for r in runs] == [first["run_id"]] and runs[0]["trigger_context"] == {"type": "manual"}
    assert rt.sessions.get(ws, str(first["session_id"]))["deployment_id"] == dep["id"]
