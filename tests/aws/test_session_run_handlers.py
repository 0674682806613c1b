"""The ModelTurn and ToolWait Lambda handlers, in-process on moto with the scripted Messages server.

The state machine is played by the test: it calls the ModelTurn handler with the execution name the wake
started, until the outcome says to stop, as the ASL's Choice state does.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pydantic import TypeAdapter

from functions.model_turn.handler import handler as model_turn_handler
from functions.model_turn.handler import report_failure as report_failure_handler
from functions.tool_wait.handler import handler as tool_wait_handler
from managed_agents.adapters.aws.step_functions_orchestrator import EXECUTION, WAKE_PENDING
from managed_agents.adapters.aws.tool_wait import TOKEN_FIELD, release_tool_wait
from managed_agents.aws_runtime import LAMBDA_STATE_CACHE_SESSIONS
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.observability import metrics
from managed_agents.ports import iter_all
from managed_agents.services.keys import Principal
from managed_agents.services.records import mutate
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import EventParams, SessionCreateParams
from tests.aws.conftest import AwsEnv, FakeLambdaContext


def _start_session(env: AwsEnv, text: str, tools: list[dict[str, Any]] | None = None) -> str:
    """A session in a self_hosted environment: its sandbox calls wait for a worker (no provisioner needed)."""
    rt = env.deps.runtime
    ws = rt.keys.create_workspace("default")
    agent = rt.agents.create(
        ws, AgentCreateParams.model_validate({"name": "a", "model": "claude-scripted", "tools": tools or []})
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
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}],
            }
        ),
    )
    return str(session["id"])


def _send(env: AwsEnv, sid: str, text: str) -> None:
    """A user.message as the API posts it (the wake starts or marks the session's run)."""
    rt = env.deps.runtime
    rec = rt.resources.get_by_id("session", sid)
    assert rec is not None
    event = TypeAdapter(EventParams).validate_python(
        {"type": "user.message", "content": [{"type": "text", "text": text}]}
    )
    rt.sessions.send(Principal(rec.workspace_id, "key-test"), sid, [event])


# a model reply that calls a tool the agent does not have: logged with its error result, so the turn runs again
_UNKNOWN_TOOL: dict[str, Any] = {"content": [{"type": "tool_use", "name": "not_a_tool", "input": {}}]}


def _owner(env: AwsEnv, sid: str) -> str | None:
    rec = env.deps.runtime.resources.get_by_id("session", sid)
    assert rec is not None
    owner = rec.doc.get(EXECUTION)
    return owner if isinstance(owner, str) else None


def _turns(
    env: AwsEnv, sid: str, execution: str | None, *, max_turns: int = 20, stop: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Invoke ModelTurn until it says parked or wait_for_tools (or an outcome in `stop`; the ASL's loop), carrying
    `turns` along."""
    outputs: list[dict[str, Any]] = []
    turns = 0
    for _ in range(max_turns):
        event: dict[str, Any] = {"session_id": sid, "turns": turns, "execution": execution}
        out = model_turn_handler(event, FakeLambdaContext())
        outputs.append(out)
        turns = out["turns"]
        if out["outcome"] in ("parked", "wait_for_tools", *stop):
            return outputs
    raise AssertionError(f"no park within {max_turns} turns: {outputs}")


def _types(env: AwsEnv, sid: str) -> list[str]:
    return [e.type for e in iter_all(env.deps.runtime.events, sid)]


def test_a_plain_turn_runs_to_parked_and_logs_in_dynamodb(aws_env: AwsEnv) -> None:
    # Given a session whose first user.message is logged; the wake started one execution that owns the run
    aws_env.model.push("Hello from the scripted model")
    sid = _start_session(aws_env, "hi")
    executions = aws_env.executions()
    assert len(executions) == 1 and executions[0]["status"] == "RUNNING"
    name = _owner(aws_env, sid)
    assert name is not None and name == executions[0]["name"] and name.startswith(f"{sid}-")
    # When the state machine loop invokes ModelTurn until it parks
    outputs = _turns(aws_env, sid, name)
    # Then every output is pointers only, turns count up, and the last one parks the idle session
    assert [o["turns"] for o in outputs] == list(range(1, len(outputs) + 1))
    assert all(set(o) == {"session_id", "turns", "outcome", "wait_seconds", "reason", "continue_as"} for o in outputs)
    assert outputs[-1] == {
        "session_id": sid,
        "turns": len(outputs),
        "outcome": "parked",
        "wait_seconds": 0,
        "reason": "idle",
        "continue_as": None,
    }
    assert all(o["outcome"] == "run_again" for o in outputs[:-1])
    # And the DynamoDB log holds the whole turn, the run is released and the record says idle
    assert _types(aws_env, sid) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert _owner(aws_env, sid) is None
    rec = aws_env.deps.runtime.resources.get_by_id("session", sid)
    assert rec is not None and rec.doc["status"] == "idle" and rec.attrs["status"] == "idle"
    # And the model was called once, with the API key read from Secrets Manager
    (request,) = aws_env.model.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert "sk-test-from-secrets-manager" in (headers.get("x-api-key", "") + headers.get("authorization", ""))


def test_steps_that_run_again_chain_in_one_invocation_while_a_model_request_fits(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given turns of two steps each: the model calls a tool the agent does not have (its error result is logged
    # with the call), then answers (a plain turn is one step: the step that logs the idle parks)
    aws_env.model.push(_UNKNOWN_TOOL, "one", _UNKNOWN_TOOL, "two", _UNKNOWN_TOOL, "three")
    sid = _start_session(aws_env, "hi")
    name = _owner(aws_env, sid)
    # When ModelTurn has the stack's time (900 s): the whole turn is one invocation (one state transition)
    assert [o["outcome"] for o in _turns(aws_env, sid, name)] == ["parked"]
    # And with less time left than a model request may take (600 s + margin), every step goes back to the loop
    _send(aws_env, sid, "again")
    name = _owner(aws_env, sid)
    short = {"session_id": sid, "turns": 0, "execution": name}
    out = model_turn_handler(short, FakeLambdaContext(remaining_ms=300_000))
    assert out["outcome"] == "run_again"
    assert [o["outcome"] for o in _turns(aws_env, sid, name)] == ["parked"]
    # And `steps_per_model_turn=1` (MANAGED_AGENTS_STEPS_PER_MODEL_TURN) is one advance() per invocation
    monkeypatch.setattr(aws_env.deps.settings, "steps_per_model_turn", 1)
    _send(aws_env, sid, "once more")
    outcomes = [o["outcome"] for o in _turns(aws_env, sid, _owner(aws_env, sid))]
    assert outcomes == ["run_again", "parked"]
    assert [e for e in _types(aws_env, sid) if e == "agent.message"] == ["agent.message"] * 3


def test_a_retryable_model_error_asks_the_state_machine_to_wait(aws_env: AwsEnv) -> None:
    # Given a model that is overloaded once, then answers
    aws_env.model.push({"error": {"status": 529, "type": "overloaded_error", "message": "busy"}}, "recovered")
    sid = _start_session(aws_env, "hi")
    name = _owner(aws_env, sid)
    # When ModelTurn runs until it stops running again
    outs: list[dict[str, Any]] = []
    turns = 0
    while not outs or outs[-1]["outcome"] == "run_again":
        outs.append(model_turn_handler({"session_id": sid, "turns": turns, "execution": name}, FakeLambdaContext()))
        turns = outs[-1]["turns"]
    # Then it says retry_after with the harness's backoff (MANAGED_AGENTS_RETRY_BASE_SECONDS=2) ...
    assert outs[-1]["outcome"] == "retry_after" and outs[-1]["wait_seconds"] == 2
    assert "session.error" in _types(aws_env, sid) and "session.status_rescheduled" in _types(aws_env, sid)
    # ... and after the wait the next turns finish the session
    rest = _turns(aws_env, sid, name)
    assert rest[-1]["outcome"] == "parked"
    assert _types(aws_env, sid)[-1] == "session.status_idle"
    assert len(aws_env.model.requests) == 2


def test_a_built_in_tool_call_waits_on_a_task_token_released_by_the_api(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given ModelTurn hands tool waits to the state machine at once (no inline wait)
    monkeypatch.setattr(aws_env.deps.settings, "tool_wait_inline_seconds", 0.0)
    # And an agent with the sandbox toolset whose model calls bash, then answers after the result
    aws_env.model.push(
        {"content": [{"type": "tool_use", "name": "bash", "input": {"command": "ls"}}]},
        "The directory is empty.",
    )
    sid = _start_session(aws_env, "list files", tools=[{"type": "agent_toolset_20260401"}])
    name = _owner(aws_env, sid)
    # When ModelTurn runs, it stops to wait for the tool result until the tool deadline (120 s)
    outs = _turns(aws_env, sid, name)
    assert outs[-1]["outcome"] == "wait_for_tools"
    assert 110 <= outs[-1]["wait_seconds"] <= 120
    # And the ToolWait task parks its token on the session record
    sent: list[dict[str, Any]] = []
    aws_env.sfn.meta.events.register(
        "provide-client-params.sfn.SendTaskSuccess", lambda params, **_: sent.append(params)
    )
    assert tool_wait_handler({"session_id": sid, "task_token": "token-1"}, FakeLambdaContext()) is None
    rec = aws_env.deps.runtime.resources.get_by_id("session", sid)
    assert rec is not None and rec.doc[TOKEN_FIELD] == "token-1"
    assert sent == []
    # When the API logs the sandbox's result and releases the wait (twice, as two racing result posts might)
    tool_use = next(e for e in iter_all(aws_env.deps.runtime.events, sid) if e.type == "agent.tool_use")
    result = {"tool_use_id": tool_use.id, "content": [{"type": "text", "text": "(empty)"}], "is_error": False}
    aws_env.deps.runtime.events.append(sid, [NewEvent(new_id("event"), "user.tool_result", result)])
    released = [release_tool_wait(aws_env.deps.runtime.resources, aws_env.sfn, sid) for _ in range(2)]
    # Then exactly one SendTaskSuccess went out with a pointer-only output, and the token is gone
    assert released == [True, False]
    assert [(p["taskToken"], p["output"]) for p in sent] == [("token-1", f'{{"session_id":"{sid}","released":true}}')]
    rec = aws_env.deps.runtime.resources.get_by_id("session", sid)
    assert rec is not None and TOKEN_FIELD not in rec.doc
    # And the next ModelTurns send the result to the model and park the idle session
    final = _turns(aws_env, sid, name)
    assert final[-1]["outcome"] == "parked"
    types = _types(aws_env, sid)
    assert types.count("span.model_request_end") == 2 and types[-1] == "session.status_idle"
    last_body = aws_env.model.requests[-1]["body"]
    assert any(b.get("type") == "tool_result" for b in last_body["messages"][-1]["content"])


def test_a_token_parked_after_the_results_were_logged_is_released_at_once(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bash call whose result the sandbox logged before the ToolWait task stored its token
    monkeypatch.setattr(aws_env.deps.settings, "tool_wait_inline_seconds", 0.0)
    aws_env.model.push({"content": [{"type": "tool_use", "name": "bash", "input": {"command": "ls"}}]}, "done")
    sid = _start_session(aws_env, "go", tools=[{"type": "agent_toolset_20260401"}])
    assert _turns(aws_env, sid, _owner(aws_env, sid))[-1]["outcome"] == "wait_for_tools"
    tool_use = next(e for e in iter_all(aws_env.deps.runtime.events, sid) if e.type == "agent.tool_use")
    result: dict[str, object] = {"tool_use_id": tool_use.id, "content": [{"type": "text", "text": "ok"}]}
    aws_env.deps.runtime.events.append(sid, [NewEvent(new_id("event"), "user.tool_result", result)])
    assert release_tool_wait(aws_env.deps.runtime.resources, aws_env.sfn, sid) is False  # no token yet
    sent: list[dict[str, Any]] = []
    aws_env.sfn.meta.events.register(
        "provide-client-params.sfn.SendTaskSuccess", lambda params, **_: sent.append(params)
    )
    # When the ToolWait task runs
    tool_wait_handler({"session_id": sid, "task_token": "token-late"}, FakeLambdaContext())
    # Then it released its own token: the execution does not wait for a release that already happened
    assert [p["taskToken"] for p in sent] == ["token-late"]
    rec = aws_env.deps.runtime.resources.get_by_id("session", sid)
    assert rec is not None and TOKEN_FIELD not in rec.doc


def test_only_model_errors_publish_a_custom_metric(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the handlers' custom metrics recorded (each metric name bills a custom metric for the month it is seen)
    published: list[str] = []
    monkeypatch.setattr(metrics, "add_metric", lambda **kw: published.append(kw["name"]))
    monkeypatch.setattr(aws_env.deps.settings, "tool_wait_inline_seconds", 0.0)
    # When a session runs the normal flow: a bash call handed to the ToolWait task, its result, the final answer
    aws_env.model.push({"content": [{"type": "tool_use", "name": "bash", "input": {"command": "ls"}}]}, "done")
    sid = _start_session(aws_env, "go", tools=[{"type": "agent_toolset_20260401"}])
    name = _owner(aws_env, sid)
    assert _turns(aws_env, sid, name)[-1]["outcome"] == "wait_for_tools"
    tool_wait_handler({"session_id": sid, "task_token": "token-1"}, FakeLambdaContext())
    tool_use = next(e for e in iter_all(aws_env.deps.runtime.events, sid) if e.type == "agent.tool_use")
    result: dict[str, object] = {"tool_use_id": tool_use.id, "content": [{"type": "text", "text": "ok"}]}
    aws_env.deps.runtime.events.append(sid, [NewEvent(new_id("event"), "user.tool_result", result)])
    release_tool_wait(aws_env.deps.runtime.resources, aws_env.sfn, sid)
    assert _turns(aws_env, sid, name)[-1]["outcome"] == "parked"
    # Then no custom metric was published (outcomes are in the log lines, invocations in Lambda's own metrics)
    assert published == []
    # And a model error that the run backs off from is one
    aws_env.model.push({"error": {"status": 529, "type": "overloaded_error", "message": "busy"}}, "recovered")
    _send(aws_env, sid, "again")
    outs = _turns(aws_env, sid, _owner(aws_env, sid), stop=("retry_after",))
    assert outs[-1]["outcome"] == "retry_after"
    assert published == ["ModelTurn_retry_after"]


def test_a_model_turn_container_keeps_the_states_of_a_few_sessions_only(aws_env: AwsEnv) -> None:
    # Given the deps a ModelTurn container builds (the function has 192 MB, stacks/config.py)
    states = aws_env.deps.harness.states
    # Then its cache of folded session states holds a few sessions, not the embedded server's 1024
    assert states is not None and states.max_sessions == LAMBDA_STATE_CACHE_SESSIONS <= 16


def _bash_result_later(env: AwsEnv, sid: str, delay: float) -> threading.Thread:
    """The sandbox worker, `delay` seconds after the bash call is logged: posts its result as the API logs it."""

    def post() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            calls = [e for e in iter_all(env.deps.runtime.events, sid) if e.type == "agent.tool_use"]
            if calls:
                time.sleep(delay)
                result = {"tool_use_id": calls[0].id, "content": [{"type": "text", "text": "ok"}], "is_error": False}
                env.deps.runtime.events.append(sid, [NewEvent(new_id("event"), "user.tool_result", result)])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def test_a_tool_result_logged_soon_is_waited_for_within_the_model_turn(aws_env: AwsEnv) -> None:
    # Given a bash call whose result the sandbox posts half a second after the call is logged
    aws_env.model.push({"content": [{"type": "tool_use", "name": "bash", "input": {"command": "ls"}}]}, "done")
    sid = _start_session(aws_env, "go", tools=[{"type": "agent_toolset_20260401"}])
    poster = _bash_result_later(aws_env, sid, 0.5)
    # When ModelTurn runs, waiting inline up to the default 3 s
    assert aws_env.deps.settings.tool_wait_inline_seconds == 3.0
    outs = _turns(aws_env, sid, _owner(aws_env, sid))
    poster.join(5)
    # Then one invocation ran the model, waited for the result, ran the model again and parked: no ToolWait task
    assert [o["outcome"] for o in outs] == ["parked"]
    assert len(aws_env.model.requests) == 2
    last = aws_env.model.requests[-1]["body"]["messages"][-1]["content"]
    assert any(b.get("type") == "tool_result" for b in last)
    assert _types(aws_env, sid)[-1] == "session.status_idle"


def test_a_tool_result_that_is_late_hands_the_wait_to_the_state_machine(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a short inline wait (0.3 s) and a sandbox that has not answered
    monkeypatch.setattr(aws_env.deps.settings, "tool_wait_inline_seconds", 0.3)
    aws_env.model.push({"content": [{"type": "tool_use", "name": "bash", "input": {"command": "ls"}}]}, "done")
    sid = _start_session(aws_env, "go", tools=[{"type": "agent_toolset_20260401"}])
    # When ModelTurn runs
    started = time.monotonic()
    outs = _turns(aws_env, sid, _owner(aws_env, sid))
    # Then after the inline wait it asks the state machine to wait for the results (ToolWait, until the deadline)
    assert [o["outcome"] for o in outs] == ["wait_for_tools"]
    assert 0.3 <= time.monotonic() - started < 10
    assert len(aws_env.model.requests) == 1


def test_an_interrupt_during_an_inline_tool_wait_is_handled_at_once(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bash call the sandbox never answers, and ModelTurn waiting inline for a long time
    monkeypatch.setattr(aws_env.deps.settings, "tool_wait_inline_seconds", 30.0)
    aws_env.model.push({"content": [{"type": "tool_use", "name": "bash", "input": {"command": "sleep 100"}}]})
    sid = _start_session(aws_env, "go", tools=[{"type": "agent_toolset_20260401"}])
    name = _owner(aws_env, sid)

    def interrupt() -> None:
        while not any(e.type == "agent.tool_use" for e in iter_all(aws_env.deps.runtime.events, sid)):
            time.sleep(0.05)
        rt = aws_env.deps.runtime
        rec = rt.resources.get_by_id("session", sid)
        assert rec is not None
        event = TypeAdapter(EventParams).validate_python({"type": "user.interrupt"})
        rt.sessions.send(Principal(rec.workspace_id, "key-test"), sid, [event])  # as the API posts it

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    # When ModelTurn runs
    started = time.monotonic()
    outs = _turns(aws_env, sid, name)
    thread.join(5)
    # Then the interrupt ended the wait well before the inline limit and the session went idle, interrupted
    assert time.monotonic() - started < 10
    assert outs[-1]["outcome"] == "parked"
    types = _types(aws_env, sid)
    assert types[-1] == "session.status_idle" and "user.interrupt" in types
    assert len(aws_env.model.requests) == 1


def test_a_wake_during_the_run_turns_the_park_into_another_turn(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a session whose first step ran (a call of a tool the agent does not have, answered with an error) and a
    # second user.message logged while the execution still owned the run (one step per invocation, so the message
    # lands between the two model requests)
    monkeypatch.setattr(aws_env.deps.settings, "steps_per_model_turn", 1)
    aws_env.model.push(_UNKNOWN_TOOL, "first answer", "second answer")
    sid = _start_session(aws_env, "one")
    name = _owner(aws_env, sid)
    assert model_turn_handler({"session_id": sid, "turns": 0, "execution": name}, FakeLambdaContext())["outcome"] == (
        "run_again"
    )
    aws_env.deps.runtime.events.append(
        sid, [NewEvent(new_id("event"), "user.message", {"content": [{"type": "text", "text": "two"}]})]
    )
    orchestrator = aws_env.deps.runtime.sessions.svc.orchestrator
    assert orchestrator is not None
    orchestrator.wake(sid)  # collapses into the running execution: no second one
    assert len(aws_env.executions()) == 1
    # When the loop runs to its park
    outputs = _turns(aws_env, sid, name)
    # Then the second message was answered by the one execution (in the request after the tool's result), and the
    # run is released at the end
    assert outputs[-1]["outcome"] == "parked"
    assert len(aws_env.model.requests) == 2
    assert "two" in str(aws_env.model.requests[1]["body"]["messages"][-1])
    assert _types(aws_env, sid).count("agent.message") == 1
    assert _owner(aws_env, sid) is None
    assert len(aws_env.executions()) == 1


def _report_failure(sid: str, execution: str | None) -> dict[str, Any]:
    """The ReportFailure task as the ASL calls it after a Catch (a Lambda error of the ModelTurn task)."""
    cause = '{"errorType": "RuntimeError", "errorMessage": "boom"}'
    event = {"session_id": sid, "error": {"Error": "RuntimeError", "Cause": cause}, "execution": execution}
    return report_failure_handler(event, FakeLambdaContext(function_name="report-failure"))


def test_a_wake_after_a_failed_run_starts_a_new_execution(aws_env: AwsEnv) -> None:
    # Given a run whose ModelTurn failed: ReportFailure runs while the failing execution still reads RUNNING
    sid = _start_session(aws_env, "hi")
    failed = _owner(aws_env, sid)
    assert failed is not None and [e["status"] for e in aws_env.executions()] == ["RUNNING"]
    # When ReportFailure reports it
    assert _report_failure(sid, failed) == {"session_id": sid, "reported": True}
    # Then the session says why and is idle, and the failed execution no longer owns the run
    assert _types(aws_env, sid)[-2:] == ["session.error", "session.status_idle"]
    assert _owner(aws_env, sid) is None
    # And the user's next message (its wake) starts a new execution instead of waiting on the failed one
    aws_env.deps.runtime.events.append(
        sid, [NewEvent(new_id("event"), "user.message", {"content": [{"type": "text", "text": "again"}]})]
    )
    orchestrator = aws_env.deps.runtime.sessions.svc.orchestrator
    assert orchestrator is not None
    orchestrator.wake(sid)
    executions = aws_env.executions()
    assert len(executions) == 2 and executions[-1]["name"] != failed
    assert _owner(aws_env, sid) == executions[-1]["name"]


def test_a_wake_during_a_failed_run_is_run_by_a_new_execution(aws_env: AwsEnv) -> None:
    # Given a wake that arrived while the execution that then failed owned the run (it collapsed into it)
    sid = _start_session(aws_env, "hi")
    failed = _owner(aws_env, sid)
    aws_env.deps.runtime.events.append(
        sid, [NewEvent(new_id("event"), "user.message", {"content": [{"type": "text", "text": "meanwhile"}]})]
    )
    orchestrator = aws_env.deps.runtime.sessions.svc.orchestrator
    assert orchestrator is not None
    orchestrator.wake(sid)
    assert len(aws_env.executions()) == 1
    # When ReportFailure ends the failed run
    _report_failure(sid, failed)
    # Then it started a new execution for that wake, which owns the run with nothing left pending
    executions = aws_env.executions()
    assert len(executions) == 2 and _owner(aws_env, sid) == executions[-1]["name"] != failed
    rec = aws_env.deps.runtime.resources.get_by_id("session", sid)
    assert rec is not None and WAKE_PENDING not in rec.doc
    # And the new execution's turns answer the message
    aws_env.model.push("answered")
    assert _turns(aws_env, sid, _owner(aws_env, sid))[-1]["outcome"] == "parked"
    assert _types(aws_env, sid)[-3:] == ["agent.message", "span.model_request_end", "session.status_idle"]


def test_a_late_report_of_a_replaced_execution_leaves_the_new_owner_alone(aws_env: AwsEnv) -> None:
    # Given a run that another execution took over (an interrupt stopped and replaced the failing one)
    sid = _start_session(aws_env, "hi")
    stale = _owner(aws_env, sid)
    rec = aws_env.deps.runtime.resources.get_by_id("session", sid)
    assert rec is not None
    mutate(aws_env.deps.runtime.resources, rec, lambda r: r.doc.update({EXECUTION: "the-new-owner"}))
    # When the replaced execution's ReportFailure runs late
    _report_failure(sid, stale)
    # Then the new owner keeps the run and nothing new was started
    assert _owner(aws_env, sid) == "the-new-owner"
    assert len(aws_env.executions()) == 1


class _CrashingModel:
    """A model adapter with a bug: it raises something that is not a ModelError, mid-request."""

    def stream_message(self, request: Any, *, cancel: Any = None, on_event: Any = None) -> Any:
        raise RuntimeError("injected: the model adapter crashed mid-request")


def test_a_model_turn_that_crashes_mid_request_is_reported_with_its_span_closed(aws_env: AwsEnv) -> None:
    # Given a session whose ModelTurn crashes after it logged span.model_request_start
    sid = _start_session(aws_env, "hi")
    failed = _owner(aws_env, sid)
    harness = aws_env.deps.harness
    working, harness.model = harness.model, _CrashingModel()
    with pytest.raises(RuntimeError, match="injected"):
        model_turn_handler({"session_id": sid, "turns": 0, "execution": failed}, FakeLambdaContext())
    assert _types(aws_env, sid)[-1] == "span.model_request_start"
    # When the state machine's Catch runs ReportFailure
    _report_failure(sid, failed)
    # Then the open span is closed as an error before the session.error and the idle
    events = list(iter_all(aws_env.deps.runtime.events, sid))
    assert [e.type for e in events][-4:] == [
        "span.model_request_start",
        "span.model_request_end",
        "session.error",
        "session.status_idle",
    ]
    start, end = events[-4], events[-3]
    assert end.payload["model_request_start_id"] == start.id and end.payload["is_error"] is True
    # And the next message runs a fresh request instead of re-running the dead one
    harness.model = working
    aws_env.model.push("answered")
    _send(aws_env, sid, "again")
    _turns(aws_env, sid, _owner(aws_env, sid))
    types = _types(aws_env, sid)
    assert types[-3:] == ["agent.message", "span.model_request_end", "session.status_idle"]
    assert types.count("span.model_request_start") == types.count("span.model_request_end") == 2
    assert len(aws_env.model.requests) == 1


def test_a_turn_that_runs_again_at_the_turn_limit_hands_the_run_to_its_continuation(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a session whose run is owned by the execution the wake started, a definition with a limit of 1 turn,
    # and one harness step per invocation (so the first one, a call of a tool the agent does not have, runs again)
    monkeypatch.setattr(aws_env.deps.settings, "steps_per_model_turn", 1)
    aws_env.model.push(_UNKNOWN_TOOL, "Hello")
    sid = _start_session(aws_env, "hi")
    original = _owner(aws_env, sid)
    assert original is not None
    limit = {"turns_per_execution": 1}
    # When its first turn runs again (the limit reached)
    out = model_turn_handler({"session_id": sid, "turns": 0, "execution": original, **limit}, FakeLambdaContext())
    # Then it names the continuation, which already owns the run, so a wake now checks the execution that will run
    assert out["outcome"] == "run_again" and out["continue_as"] == _owner(aws_env, sid)
    assert out["continue_as"] != original and out["continue_as"].startswith(f"{sid}-")
    # And the continuation, run under its own name, finishes the session and releases the run
    outputs = _turns(aws_env, sid, out["continue_as"])
    assert outputs[-1]["outcome"] == "parked" and _owner(aws_env, sid) is None
    assert _types(aws_env, sid)[-1] == "session.status_idle"


def test_an_execution_that_lost_the_run_does_not_continue(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a turn at the limit in an execution that no longer owns the run (stopped and replaced)
    monkeypatch.setattr(aws_env.deps.settings, "steps_per_model_turn", 1)
    aws_env.model.push("Hello")
    sid = _start_session(aws_env, "hi")
    owner = _owner(aws_env, sid)
    event = {"session_id": sid, "turns": 0, "execution": "replaced-execution", "turns_per_execution": 1}
    # When it would run again
    out = model_turn_handler(event, FakeLambdaContext())
    # Then it ends instead of starting a continuation, and the owner keeps the run
    assert (out["outcome"], out["continue_as"]) == ("parked", None)
    assert _owner(aws_env, sid) == owner
