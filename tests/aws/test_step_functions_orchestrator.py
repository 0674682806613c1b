"""The Step Functions orchestrator on moto: one execution per session, wakes collapse, stops, ownership handshake."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from managed_agents.adapters.aws.polling_notifier import PollingNotifier
from managed_agents.adapters.aws.step_functions_orchestrator import (
    CONTINUED_FROM,
    EXECUTION,
    WAKE_PENDING,
    StepFunctionsOrchestrator,
    execution_arn,
    execution_input,
    execution_name,
    finish_run,
    hand_over_run,
    ownership_watch,
    release_failed_run,
)
from managed_agents.adapters.aws.tool_wait import TOKEN_FIELD, release_tool_wait
from managed_agents.aws_runtime import AwsSettings, model_api_key
from managed_agents.domain.clock import SystemClock
from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.ports import Record
from managed_agents.services.records import mutate
from tests.aws.conftest import AwsEnv
from tests.own_loop import run_on_own_loop


def _session(env: AwsEnv) -> Record:
    rec = Record("session", "wrkspc_t", f"sesn_{time.time_ns()}", {"status": "idle"}, SystemClock().now())
    env.deps.runtime.resources.insert(rec)
    return rec


def _orchestrator(env: AwsEnv) -> StepFunctionsOrchestrator:
    return StepFunctionsOrchestrator(
        state_machine_arn=env.state_machine_arn,
        resources=env.deps.runtime.resources,
        events=env.deps.runtime.events,
        sfn_client=env.sfn,
    )


def _doc(env: AwsEnv, sid: str) -> dict[str, Any]:
    rec = env.deps.runtime.resources.get_by_id("session", sid)
    assert rec is not None
    return dict(rec.doc)


def test_names_and_arns() -> None:
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:session-run"
    assert execution_arn(machine, "x-1") == "arn:aws:states:us-east-1:123456789012:execution:session-run:x-1"
    assert execution_name("sesn_01ABC", 12, 3) == "sesn_01ABC-12-3"
    with pytest.raises(ValueError, match="not a state machine ARN"):
        execution_arn("arn:aws:lambda:us-east-1:1:function:f", "x")
    with pytest.raises(ValueError, match="longer than 80"):
        execution_name("s" * 80, 1, 1)


def test_duplicate_wakes_collapse_into_one_execution(aws_env: AwsEnv) -> None:
    # Given a session nobody runs
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    # When it is woken three times
    for _ in range(3):
        orch.wake(rec.id)
    # Then one execution runs it, with the session id, log position and wake number in its name, and the later
    # wakes left one pending flag for it
    (execution,) = aws_env.executions()
    assert execution["name"] == f"{rec.id}-0-1" and execution["status"] == "RUNNING"
    doc = _doc(aws_env, rec.id)
    assert doc[EXECUTION] == execution["name"] and doc[WAKE_PENDING] is True
    # And only the first of them wrote the flag: a wake that finds it set writes nothing (a run's every tool result
    # wakes it)
    written = aws_env.deps.runtime.resources.get_by_id("session", rec.id)
    orch.wake(rec.id)
    again = aws_env.deps.runtime.resources.get_by_id("session", rec.id)
    assert written is not None and again is not None and again.rev == written.rev == rec.rev + 2
    described = aws_env.sfn.describe_execution(executionArn=execution["executionArn"])
    assert described["input"] == f'{{"session_id":"{rec.id}","turns":0,"execution":"{execution["name"]}"}}'


def test_finish_run_runs_again_for_a_pending_wake_then_releases(aws_env: AwsEnv) -> None:
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    orch.wake(rec.id)
    orch.wake(rec.id)
    name = _doc(aws_env, rec.id)[EXECUTION]
    resources = aws_env.deps.runtime.resources
    assert finish_run(resources, rec.id, "someone-else") is False  # not the owner: changes nothing
    assert _doc(aws_env, rec.id)[EXECUTION] == name
    assert finish_run(resources, rec.id, name) is True  # the pending wake: one more turn
    assert finish_run(resources, rec.id, name) is False  # nothing pending: released
    assert EXECUTION not in _doc(aws_env, rec.id)
    assert finish_run(resources, "sesn_missing", name) is False
    # a wake after the release starts the next execution
    orch.wake(rec.id)
    assert [e["name"] for e in aws_env.executions()] == [f"{rec.id}-0-1", f"{rec.id}-0-2"]


def test_a_run_whose_execution_ended_without_releasing_is_claimed_anew(aws_env: AwsEnv) -> None:
    # Given an execution that owns the session but failed (here: stopped behind the orchestrator's back)
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    orch.wake(rec.id)
    (first,) = aws_env.executions()
    aws_env.sfn.stop_execution(executionArn=first["executionArn"])
    # When the session is woken
    orch.wake(rec.id)
    # Then a new execution owns it
    names = [e["name"] for e in aws_env.executions()]
    assert names == [f"{rec.id}-0-1", f"{rec.id}-0-2"]
    assert _doc(aws_env, rec.id)[EXECUTION] == f"{rec.id}-0-2"


def test_a_claim_whose_start_never_happened_is_claimed_anew(aws_env: AwsEnv) -> None:
    # Given a record claimed by a wake that crashed before StartExecution
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    mutate(aws_env.deps.runtime.resources, rec, lambda r: r.doc.update({EXECUTION: f"{rec.id}-0-1", "_wakes": 1}))
    # When it is woken again, then it starts an execution of its own
    orch.wake(rec.id)
    assert [e["name"] for e in aws_env.executions()] == [f"{rec.id}-0-2"]


def test_a_run_handed_over_to_its_continuation_is_joined_by_wakes_before_and_after_it_starts(
    aws_env: AwsEnv,
) -> None:
    # Given a run whose ModelTurn, at the turn limit, handed it over to a continuation (the original still runs its
    # ContinueAsNew state: here, the original is simply left running and the continuation not started yet)
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    orch.wake(rec.id)
    original = _doc(aws_env, rec.id)[EXECUTION]
    resources = aws_env.deps.runtime.resources
    successor = hand_over_run(resources, rec.id, original, 7)
    assert successor == f"{rec.id}-7-2"
    assert _doc(aws_env, rec.id)[EXECUTION] == successor and _doc(aws_env, rec.id)[CONTINUED_FROM] == original
    # When a wake comes before the continuation exists
    orch.wake(rec.id)
    # Then it joins the run (pending) rather than starting an execution beside the one about to start
    assert [e["name"] for e in aws_env.executions()] == [original]
    assert _doc(aws_env, rec.id)[WAKE_PENDING] is True
    # And once the continuation runs and the original has ended, a wake still joins it
    aws_env.sfn.start_execution(
        stateMachineArn=aws_env.state_machine_arn, name=successor, input=execution_input(rec.id, successor)
    )
    aws_env.sfn.stop_execution(executionArn=execution_arn(aws_env.state_machine_arn, original))
    orch.wake(rec.id)
    assert [e["name"] for e in aws_env.executions()] == [original, successor]
    # And the original, no longer the owner, can neither hand over again nor release the continuation's run
    assert hand_over_run(resources, rec.id, original, 9) is None
    assert finish_run(resources, rec.id, original) is False
    assert _doc(aws_env, rec.id)[EXECUTION] == successor


def test_a_continuation_that_never_started_is_released_by_its_predecessors_failure(aws_env: AwsEnv) -> None:
    # Given a run handed over to a continuation whose StartExecution then failed (ContinueAsNew caught the error)
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    orch.wake(rec.id)
    original = _doc(aws_env, rec.id)[EXECUTION]
    resources = aws_env.deps.runtime.resources
    assert hand_over_run(resources, rec.id, original, 3) is not None
    # When the original's ReportFailure releases its run
    release_failed_run(resources, rec.id, original)
    # Then the claim is gone and the next wake starts a new execution at once
    assert EXECUTION not in _doc(aws_env, rec.id) and CONTINUED_FROM not in _doc(aws_env, rec.id)
    aws_env.sfn.stop_execution(executionArn=execution_arn(aws_env.state_machine_arn, original))
    orch.wake(rec.id)
    assert len(aws_env.executions()) == 2 and _doc(aws_env, rec.id)[EXECUTION] == aws_env.executions()[-1]["name"]


def test_an_interrupt_before_the_continuation_starts_stops_the_execution_about_to_start_it(aws_env: AwsEnv) -> None:
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    orch.wake(rec.id)
    original = _doc(aws_env, rec.id)[EXECUTION]
    assert hand_over_run(aws_env.deps.runtime.resources, rec.id, original, 3) is not None
    orch.interrupt(rec.id)
    first, fresh = aws_env.executions()
    assert (first["name"], first["status"]) == (original, "ABORTED") and fresh["status"] == "RUNNING"
    assert _doc(aws_env, rec.id)[EXECUTION] == fresh["name"] and CONTINUED_FROM not in _doc(aws_env, rec.id)


def test_interrupt_stops_the_execution_and_starts_a_fresh_one(aws_env: AwsEnv) -> None:
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    orch.wake(rec.id)
    orch.interrupt(rec.id)
    first, second = aws_env.executions()
    assert (first["status"], second["status"]) == ("ABORTED", "RUNNING")
    assert _doc(aws_env, rec.id)[EXECUTION] == second["name"]
    # the stopped execution's late ModelTurn cannot release the new owner's run
    assert finish_run(aws_env.deps.runtime.resources, rec.id, first["name"]) is False
    assert _doc(aws_env, rec.id)[EXECUTION] == second["name"]


def test_forget_stops_the_execution_and_tolerates_none(aws_env: AwsEnv) -> None:
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    orch.forget(rec.id)  # nothing runs: nothing to stop
    orch.wake(rec.id)
    orch.forget(rec.id)
    assert [e["status"] for e in aws_env.executions()] == ["ABORTED"]
    orch.forget("sesn_missing")


def test_wake_of_a_deleted_session_starts_nothing(aws_env: AwsEnv) -> None:
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    mutate(aws_env.deps.runtime.resources, rec, lambda r: r.doc.update({"_deleted": True}))
    orch.wake(rec.id)
    orch.wake("sesn_missing")
    assert aws_env.executions() == []


def test_ownership_watch_cancels_when_another_execution_takes_over(aws_env: AwsEnv) -> None:
    orch, rec = _orchestrator(aws_env), _session(aws_env)
    orch.wake(rec.id)
    name = _doc(aws_env, rec.id)[EXECUTION]
    resources = aws_env.deps.runtime.resources
    with ownership_watch(resources, rec.id, name, poll_seconds=0.05) as token:
        time.sleep(0.2)
        assert not token.cancelled
        orch.interrupt(rec.id)
        assert token.wait(5.0) and token.cancelled
    with ownership_watch(resources, rec.id, None, poll_seconds=0.05) as unwatched:
        time.sleep(0.1)
        assert not unwatched.cancelled


class _SpentTokens:
    """A Step Functions client whose tokens have all timed out."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.calls = 0

    def send_task_success(self, **_: Any) -> None:
        self.calls += 1
        raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "SendTaskSuccess")


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"])
def test_releasing_a_spent_token_is_quiet_and_clears_it(aws_env: AwsEnv, code: str) -> None:
    rec = _session(aws_env)
    mutate(aws_env.deps.runtime.resources, rec, lambda r: r.doc.update({TOKEN_FIELD: "old-token"}))
    sfn = _SpentTokens(code)
    assert release_tool_wait(aws_env.deps.runtime.resources, sfn, rec.id) is False  # type: ignore[arg-type]
    assert sfn.calls == 1 and TOKEN_FIELD not in _doc(aws_env, rec.id)


def test_a_step_functions_failure_on_release_is_service_unavailable(aws_env: AwsEnv) -> None:
    rec = _session(aws_env)
    mutate(aws_env.deps.runtime.resources, rec, lambda r: r.doc.update({TOKEN_FIELD: "token"}))
    with pytest.raises(ServiceUnavailable, match="could not release the tool wait"):
        release_tool_wait(aws_env.deps.runtime.resources, _SpentTokens("ThrottlingException"), rec.id)  # type: ignore[arg-type]


def test_settings_come_from_the_environment(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = AwsSettings()
    assert settings.state_machine_arn == aws_env.state_machine_arn
    assert settings.model_api_key_secret_arn == aws_env.secret_arn
    assert settings.retry_base_seconds == 2  # the harness settings ride along
    assert model_api_key(settings) == "sk-test-from-secrets-manager"
    monkeypatch.delenv("MANAGED_AGENTS_RESOURCES_TABLE")
    with pytest.raises(ValidationError, match="resources_table"):
        AwsSettings()


def test_a_json_model_key_secret_is_read_by_its_api_key_field(aws_env: AwsEnv) -> None:
    import boto3

    sm = boto3.client("secretsmanager", region_name="us-east-1")
    arn = sm.create_secret(Name="json-key", SecretString='{"api_key": "sk-json"}')["ARN"]
    bad = sm.create_secret(Name="json-bad", SecretString='{"key": "sk-json"}')["ARN"]
    assert model_api_key(AwsSettings(model_api_key_secret_arn=arn)) == "sk-json"
    with pytest.raises(ValueError, match="without a string `api_key` field"):
        model_api_key(AwsSettings(model_api_key_secret_arn=bad))


def test_the_runtime_wakes_through_step_functions_only_when_configured(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from managed_agents.aws_runtime import build_aws_runtime

    assert isinstance(aws_env.deps.runtime.sessions.svc.orchestrator, StepFunctionsOrchestrator)
    assert aws_env.deps.runtime.orchestrator is None  # the embedded orchestrator slot
    assert isinstance(aws_env.deps.runtime.notifier, PollingNotifier)
    monkeypatch.delenv("MANAGED_AGENTS_STATE_MACHINE_ARN")
    assert build_aws_runtime().sessions.svc.orchestrator is None


def test_polling_subscriptions_wake_up_at_the_poll_interval() -> None:
    async def measure() -> float:
        sub = PollingNotifier(poll_seconds=0.05).subscribe("sesn_x")
        start = time.monotonic()
        await sub.wait(30.0)
        sub.close()
        return time.monotonic() - start

    assert run_on_own_loop(measure()) < 5.0
    with pytest.raises(ValueError, match="poll_seconds"):
        PollingNotifier(poll_seconds=0)
