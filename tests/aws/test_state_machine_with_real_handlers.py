"""The synthesized "session run" state machine, executed by moto with OUR Lambda handlers, driven by the official SDK.

The platform is tests/aws/platform.py (`aws_platform`): the definition comes from the template `python app.py`
writes, so this test breaks when the stack changes; moto runs it with every Lambda invocation dispatched to the real
handler in-process; DynamoDB, S3, Secrets Manager, Step Functions and ECS are moto; the model is the scripted Messages
server over HTTP; the API is the API Lambda's ASGI app on loopback; a Fargate task is the official worker subprocess.

Each test reports, per execution, the states entered (get_execution_history), as the cost model's counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aws.platform import Platform, aws_platform
from tests.e2e.conftest import wait_until
from tests.infra.conftest import Synth

pytestmark = pytest.mark.slow


@pytest.fixture
def platform(default_synth: Synth, tmp_path: Path) -> Iterator[Platform]:
    with aws_platform(default_synth, tmp_path) as p:
        yield p


def _types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def test_a_plain_turn(platform: Platform) -> None:
    # Given an agent without tools and a model that answers
    platform.model.push("Hello from the scripted model")
    sid = platform.session([])
    # When the user says something
    platform.say(sid, "hi")
    events = platform.wait_idle(sid)
    # Then one execution ran the turn through the real ModelTurn handler and parked
    (execution,) = platform.settled(1)
    assert execution["status"] == "SUCCEEDED"
    assert _types(events) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert events[-1].stop_reason.type == "end_turn"
    (states,) = platform.report("plain_turn", [execution], turns=1)
    assert states[0] == "ModelTurn" and states[-1] == "Parked"
    assert set(states) == {"ModelTurn", "NextStep", "Parked"}
    # And the model was called with the key from Secrets Manager
    (request,) = platform.model.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert "sk-test-from-secrets-manager" in headers.get("x-api-key", "") + headers.get("authorization", "")
    assert platform.client.beta.sessions.retrieve(sid).status == "idle"


def test_a_custom_tool_pauses_the_run_and_a_result_resumes_it(platform: Platform) -> None:
    # Given an agent with a custom tool the model calls, then answers
    tool = {
        "type": "custom",
        "name": "get_weather",
        "description": "Current weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    platform.model.push(
        {"content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}]}, "Sunny in Oslo."
    )
    sid = platform.session([tool])
    platform.say(sid, "weather?")
    # When the run pauses for the client
    events = platform.wait_idle(sid)
    (first,) = platform.settled(1)
    use = next(e for e in events if e.type == "agent.custom_tool_use")
    assert events[-1].stop_reason.type == "requires_action" and first["status"] == "SUCCEEDED"
    # And the client sends the result
    platform.client.beta.sessions.events.send(
        sid,
        events=[
            {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": use.id,
                "content": [{"type": "text", "text": "21C"}],
            }
        ],
    )
    events = platform.wait_idle(sid, count=2)
    # Then a second execution (the wake) resumed the session and the model saw the result
    executions = platform.settled(2)
    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    assert events[-1].stop_reason.type == "end_turn"
    last = platform.model.requests[-1]["body"]["messages"][-1]["content"]
    assert any(b.get("type") == "tool_result" for b in last)
    per = platform.report("custom_tool_pause_resume", executions, turns=2)
    assert all(s[-1] == "Parked" for s in per)


@pytest.fixture
def handover_platform(default_synth: Synth, tmp_path: Path) -> Iterator[Platform]:
    # ModelTurn hands every tool wait to the ToolWait task at once (no inline wait for the sandbox's results)
    with aws_platform(default_synth, tmp_path, env={"MANAGED_AGENTS_TOOL_WAIT_INLINE_SECONDS": "0"}) as p:
        yield p


def test_a_built_in_tool_runs_in_the_sandbox_task_and_releases_the_tool_wait(handover_platform: Platform) -> None:
    # Given an agent with the sandbox toolset in a cloud environment, whose model runs bash and then answers
    platform = handover_platform
    platform.model.push(
        {
            "content": [
                {"type": "tool_use", "name": "bash", "input": {"command": "echo from-fargate > f.txt && cat f.txt"}}
            ]
        },
        "The file says from-fargate.",
    )
    sid = platform.session([{"type": "agent_toolset_20260401"}])
    # When the user asks
    platform.say(sid, "write a file")
    events = platform.wait_idle(sid, timeout=90)
    # Then the provisioner started one ECS task whose environment is the work coordinates and secret only
    (run,) = platform.sandboxes.runs
    assert run["container"] == "sandbox"
    assert set(run["environment"]) == {
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_WORK_ID",
        "ANTHROPIC_ENVIRONMENT_ID",
        "ANTHROPIC_SESSION_ID",
        "ANTHROPIC_WORK_SECRET",
        "MANAGED_AGENTS_SANDBOX_IDLE_SECONDS",
        "MANAGED_AGENTS_SANDBOX_PACKAGES",
    }
    assert run["environment"]["ANTHROPIC_SESSION_ID"] == sid
    assert not any(k.startswith("AWS") or "sk-test" in v for k, v in run["environment"].items())
    # And the official worker ran bash and posted the result (logged as the agent's: a cloud sandbox ran it), which
    # released the ToolWait task token
    result = next(e for e in events if e.type == "agent.tool_result")
    assert not result.is_error
    assert "from-fargate" in "".join(getattr(c, "text", "") for c in result.content)
    assert (platform.sandboxes.root / sid / "f.txt").read_text().strip() == "from-fargate"
    assert events[-1].stop_reason.type == "end_turn"
    (execution,) = platform.settled(1)
    assert execution["status"] == "SUCCEEDED"
    (states,) = platform.report("built_in_tool", [execution], turns=2)
    assert states.count("ToolWait") >= 1 and states[-1] == "Parked"
    assert "Provisioner" in platform.invocations


@pytest.fixture
def inline_platform(default_synth: Synth, tmp_path: Path) -> Iterator[Platform]:
    # ModelTurn waits up to a minute for the sandbox's results before handing the wait to the state machine
    with aws_platform(default_synth, tmp_path, env={"MANAGED_AGENTS_TOOL_WAIT_INLINE_SECONDS": "60"}) as p:
        yield p


def test_built_in_tool_results_that_come_in_time_are_waited_for_in_the_model_turn(inline_platform: Platform) -> None:
    # Given a model that runs bash twice (the first call also waits for the sandbox task to start), then answers
    platform = inline_platform
    calls = [
        {"content": [{"type": "tool_use", "name": "bash", "input": {"command": f"echo {n} >> f.txt && cat f.txt"}}]}
        for n in ("one", "two")
    ]
    platform.model.push(*calls, "Two lines.")
    sid = platform.session([{"type": "agent_toolset_20260401"}])
    # When the user asks
    platform.say(sid, "write twice")
    events = platform.wait_idle(sid, timeout=90)
    # Then both results reached the model and the session idled as usual
    results = [e for e in events if e.type == "agent.tool_result"]
    assert len(results) == 2 and not any(r.is_error for r in results)
    assert (platform.sandboxes.root / sid / "f.txt").read_text().split() == ["one", "two"]
    assert events[-1].stop_reason.type == "end_turn"
    # And the whole run was one ModelTurn invocation: no ToolWait task, no task token, 3 transitions for 3 turns
    (execution,) = platform.settled(1)
    assert execution["status"] == "SUCCEEDED"
    (states,) = platform.report("built_in_tool_inline", [execution], turns=3)
    assert states.count("ModelTurn") == 1 and "ToolWait" not in states and states[-1] == "Parked"
    assert "ToolWait" not in platform.invocations


def test_a_retryable_model_error_waits_in_the_state_machine_then_succeeds(platform: Platform) -> None:
    # Given a model that is overloaded once, then answers
    platform.model.push({"error": {"status": 529, "type": "overloaded_error", "message": "busy"}}, "recovered")
    sid = platform.session([])
    # When the user asks
    platform.say(sid, "hi")
    events = platform.wait_idle(sid)
    # Then the execution backed off in RetryWait and the second request answered
    (execution,) = platform.settled(1)
    assert execution["status"] == "SUCCEEDED"
    types = _types(events)
    assert "session.error" in types and "session.status_rescheduled" in types and types[-1] == "session.status_idle"
    assert events[-1].stop_reason.type == "end_turn"
    (states,) = platform.report("retried_model_error", [execution], turns=2)
    assert states.count("RetryWait") == 1
    assert len(platform.model.requests) == 2


def test_an_interrupt_stops_the_execution_and_a_new_one_idles_the_session(platform: Platform) -> None:
    # Given a model request that hangs
    platform.model.push({"hang_ms": 20_000, "content": [{"type": "text", "text": "too late"}]})
    sid = platform.session([])
    platform.say(sid, "think hard")
    wait_until(lambda: "span.model_request_start" in _types(platform.events(sid)), 30, interval=0.1)
    # When the user interrupts
    started = time.monotonic()
    platform.client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
    events = platform.wait_idle(sid, timeout=30)
    # Then the running execution was stopped and the session went idle promptly, without the late answer
    assert time.monotonic() - started < 15
    executions = platform.settled(2)
    assert executions[0]["status"] == "ABORTED"
    assert executions[-1]["status"] == "SUCCEEDED"
    types = _types(events)
    assert "user.interrupt" in types and "agent.message" not in types
    assert events[-1].stop_reason.type == "end_turn"
    platform.report("interrupt", executions, turns=1)


@pytest.fixture
def short_platform(
    synth_variant: Callable[[dict[str, Any]], Synth],
    tmp_path: Path,
) -> Iterator[Platform]:
    # One harness step per ModelTurn invocation (steps that run again otherwise chain within one invocation), so
    # every run_again crosses the turn limit.
    env = {"MANAGED_AGENTS_STEPS_PER_MODEL_TURN": "1"}
    with aws_platform(synth_variant({"maxTurnsPerExecution": 1}), tmp_path, env=env) as p:
        yield p


def test_a_long_run_continues_as_a_new_execution(short_platform: Platform) -> None:
    # Given a stack whose executions restart after every turn that runs again (maxTurnsPerExecution=1), and turns
    # that run again once: the model first calls a tool the agent does not have (its error result is logged with the
    # call), then answers (a plain turn is one step: the step that logs the idle parks)
    platform = short_platform
    unknown_tool = {"content": [{"type": "tool_use", "name": "not_a_tool", "input": {}}]}
    platform.model.push(unknown_tool, "first", unknown_tool, "second")
    sid = platform.session([])
    # When two messages are answered
    platform.say(sid, "one")
    platform.wait_idle(sid)
    # (the idle is logged before the run's last execution parks: a message sent in between joins that execution,
    # as a wake during a run should, so the second run starts only once the first has ended)
    platform.settled(2)
    platform.say(sid, "two")
    events = platform.wait_idle(sid, count=2)
    # Then runs crossed the turn limit through ContinueAsNew, and every execution ended cleanly
    executions = platform.settled(4)
    assert len(executions) == 4 and all(e["status"] == "SUCCEEDED" for e in executions)
    per = dict(
        zip((e["name"] for e in executions), platform.report("continue_as_new", executions, turns=2), strict=True)
    )
    inputs = {
        e["name"]: json.loads(platform.sfn.describe_execution(executionArn=e["executionArn"])["input"])
        for e in executions
    }
    continuing = [e["name"] for e in executions if per[e["name"]][-1] == "Continued"]
    continued = [e["name"] for e in executions if per[e["name"]][-1] == "Parked"]
    assert len(continuing) == 2 and len(continued) == 2
    assert all("ContinueAsNew" in per[name] for name in continuing)
    # And every execution, a continuation too, is named like a claim and owns the run under its own name
    assert all(name.startswith(f"{sid}-") for name in per)
    assert all(i == {"session_id": sid, "turns": 0, "execution": name} for name, i in inputs.items())
    assert _types(events).count("agent.message") == 2


def test_a_wake_during_a_continued_execution_joins_it_instead_of_starting_another(short_platform: Platform) -> None:
    # Given a run whose second model request runs in a continued execution (maxTurnsPerExecution=1) and is slow:
    # the user's second message arrives while the first request runs, so the run goes on past the turn limit
    platform = short_platform
    platform.model.push(
        {"hang_ms": 1500, "content": [{"type": "text", "text": "answer one"}]},
        {"hang_ms": 3000, "content": [{"type": "text", "text": "answer two"}]},
        "answer three",
    )
    sid = platform.session([])
    platform.say(sid, "one")
    wait_until(lambda: len(platform.model.requests) == 1, 30, interval=0.05)
    platform.say(sid, "two")
    wait_until(lambda: len(platform.model.requests) == 2, 30, interval=0.05)
    running = [e for e in platform.executions() if e["status"] == "RUNNING"]
    assert len(running) == 1 and "ContinueAsNew" in platform.states(platform.executions()[0]["executionArn"])
    # When a third message arrives while the continuation's model request is in flight (every posted event wakes)
    platform.say(sid, "three")
    wait_until(lambda: _types(platform.events(sid)).count("agent.message") == 3, 60, interval=0.1)
    platform.wait_idle(sid, count=1, timeout=60)
    # Then the in-flight turn was not cancelled: every answer is logged once and no request was repeated
    texts = ["".join(b.text for b in e.content) for e in platform.events(sid) if e.type == "agent.message"]
    assert texts == ["answer one", "answer two", "answer three"]
    assert len(platform.model.requests) == 3
    # And no execution was started beside a running one: each started after the others ended, or was started by
    # the ContinueAsNew state of the one it continues (the name that one's ModelTurn claimed); none was stopped
    executions = platform.settled(2)
    assert all(e["status"] == "SUCCEEDED" for e in executions)
    continuations = {_continued_as(platform, e["executionArn"]) for e in executions} - {None}
    assert continuations and continuations <= {e["name"] for e in executions}
    for n, execution in enumerate(executions):
        if execution["name"] not in continuations:
            assert all(earlier["stopDate"] <= execution["startDate"] for earlier in executions[:n])
    platform.report("wake_during_continuation", executions, turns=3)


def _continued_as(platform: Platform, execution_arn: str) -> str | None:
    """The name of the execution this one's ContinueAsNew state started, if it did."""
    history = platform.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    for event in history:
        details = event.get("taskScheduledEventDetails")
        if details and details.get("resourceType") == "states":
            return str(json.loads(details["parameters"])["Name"])
    return None
