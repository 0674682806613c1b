"""The synthesized "session run" definition, executed by moto's ASL interpreter with scripted task Lambdas.

This checks the state machine itself (routing, waits, task tokens, catches, continue-as-new); tests/aws runs the same
definition against the real handlers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.exceptions import JsonRESTError
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn

from stacks.asl import state_machine_definition
from tests.infra.conftest import Synth

pytestmark = pytest.mark.slow

REGION, ACCOUNT = "us-east-1", "123456789012"


@dataclass
class Lambdas:
    """Scripted ModelTurn outcomes; every invocation is recorded as (function, event)."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # Lambda API errors to answer before running anything

    def invoke(self, function_name: str, body: bytes | str) -> bytes:
        event = json.loads(body)
        name = function_name.rsplit(":", 1)[-1]
        kind = next(k for k in ("ModelTurn", "ToolWait", "ReportFailure") if name.startswith(k))
        if self.refusals:
            self.calls.append((f"refused:{kind}", event))
            raise JsonRESTError(self.refusals.pop(0), "Lambda is initializing your function.")
        self.calls.append((kind, event))
        if kind == "ModelTurn":
            out = {
                "session_id": event["session_id"],
                "turns": event["turns"] + 1,
                "wait_seconds": 0,
                "reason": "",
                "continue_as": None,
            }
            return json.dumps({**out, **self.outcomes.pop(0)}).encode()
        if kind == "ToolWait":
            self.tokens.append(event["task_token"])
        return b"null"

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]


@dataclass
class Machine:
    sfn: Any
    arn: str
    lambdas: Lambdas

    def run(self, name: str, *, release_tools: bool = False, timeout: float = 30) -> dict[str, Any]:
        arn = self.sfn.start_execution(
            stateMachineArn=self.arn,
            name=name,
            input=json.dumps({"session_id": "sesn_1", "turns": 0, "execution": name}),
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if release_tools and self.lambdas.tokens:
                self.sfn.send_task_success(taskToken=self.lambdas.tokens.pop(0), output='{"released":true}')
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return dict(described)
            time.sleep(0.05)
        raise AssertionError(f"execution {name} still running after {timeout}s")


@pytest.fixture
def machine(default_synth: Synth, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    lambdas = Lambdas()
    monkeypatch.setattr(
        LambdaSimpleBackend,
        "invoke",
        lambda _self, function_name, _q, body, _h, _rh: lambdas.invoke(function_name, body),
    )
    # moto 5 passes the optimized states:startExecution parameters to boto3 in their ASL spelling (`Input`,
    # `StateMachineArn`) where boto3 wants `input`, `stateMachineArn`; real Step Functions accepts the ASL form.
    original = state_task_service_sfn.StateTaskServiceSfn._eval_service_task

    def eval_service_task(self: Any, **kwargs: Any) -> Any:
        params = kwargs.pop("normalised_parameters")
        return original(self, normalised_parameters={k[:1].lower() + k[1:]: v for k, v in params.items()}, **kwargs)

    monkeypatch.setattr(state_task_service_sfn.StateTaskServiceSfn, "_eval_service_task", eval_service_task)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    aliases = [lid for lid, r in default_synth.template["Resources"].items() if r["Type"] == "AWS::Lambda::Alias"]
    refs = {lid: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{lid}" for lid in aliases}
    definition = state_machine_definition(default_synth.template, refs=refs, region=REGION, account=ACCOUNT)
    name = default_synth.template["Resources"][
        next(lid for lid, r in default_synth.template["Resources"].items() if r["Type"].endswith("StateMachine"))
    ]["Properties"]["StateMachineName"]
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name=name, definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/session-run"
        )["stateMachineArn"]
        yield Machine(sfn, arn, lambdas)


def test_plain_turns_until_parked(machine: Machine) -> None:
    machine.lambdas.outcomes = [{"outcome": "run_again"}, {"outcome": "parked"}]
    assert machine.run("plain")["status"] == "SUCCEEDED"
    assert machine.lambdas.kinds() == ["ModelTurn", "ModelTurn"]
    # Each turn gets pointers only, with the turn count carried by the previous output and the owner token
    limit = {"turns_per_execution": 50}  # maxTurnsPerExecution
    assert [e for _, e in machine.lambdas.calls] == [
        {"session_id": "sesn_1", "turns": 0, "execution": "plain", **limit},
        {"session_id": "sesn_1", "turns": 1, "execution": "plain", **limit},
    ]


def test_a_snapstart_version_that_is_not_ready_is_invoked_again(machine: Machine) -> None:
    # Given a ModelTurn version idle for 14 days: Lambda refuses the first invoke while it initializes it again
    machine.lambdas.refusals = ["SnapStartNotReadyException"]
    machine.lambdas.outcomes = [{"outcome": "parked"}]
    # When a run starts
    described = machine.run("snapstart-idle")
    # Then the task's Retry invoked it again and the run ended normally, without a ReportFailure
    assert described["status"] == "SUCCEEDED"
    assert machine.lambdas.kinds() == ["refused:ModelTurn", "ModelTurn"]


def test_every_lambda_task_retries_what_lambda_refuses_before_running(default_synth: Synth) -> None:
    # Given the synthesized definition
    definition = state_machine_definition(default_synth.template, refs=_AnyRef(), region=REGION, account=ACCOUNT)
    lambda_tasks = {n: s for n, s in definition["States"].items() if "lambda:invoke" in s.get("Resource", "")}
    assert set(lambda_tasks) == {"ModelTurn", "ToolWait", "ReportFailure"}
    for name, state in lambda_tasks.items():
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        # Then each retries throttling, SnapStart not ready / timed out, and a function being updated or re-activated
        assert {
            "Lambda.TooManyRequestsException",
            "Lambda.SnapStartNotReadyException",
            "Lambda.SnapStartTimeoutException",
            "Lambda.ResourceNotReadyException",
            "Lambda.ResourceConflictException",
            "Lambda.EC2ThrottledException",
            "Lambda.ServiceException",
        } <= retried, name


class _AnyRef(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{key}"


def test_retry_after_waits_then_runs_the_turn_again(machine: Machine) -> None:
    machine.lambdas.outcomes = [{"outcome": "retry_after", "wait_seconds": 1}, {"outcome": "parked"}]
    started = time.monotonic()
    assert machine.run("retry")["status"] == "SUCCEEDED"
    assert time.monotonic() - started >= 1
    assert machine.lambdas.kinds() == ["ModelTurn", "ModelTurn"]


def test_tool_wait_is_released_by_its_task_token(machine: Machine) -> None:
    machine.lambdas.outcomes = [{"outcome": "wait_for_tools", "wait_seconds": 60}, {"outcome": "parked"}]
    assert machine.run("tools", release_tools=True)["status"] == "SUCCEEDED"
    assert machine.lambdas.kinds() == ["ModelTurn", "ToolWait", "ModelTurn"]
    assert set(machine.lambdas.calls[1][1]) == {"session_id", "task_token"}


def test_a_tool_wait_that_times_out_goes_back_to_model_turn(machine: Machine) -> None:
    machine.lambdas.outcomes = [{"outcome": "wait_for_tools", "wait_seconds": 1}, {"outcome": "parked"}]
    assert machine.run("lost-sandbox")["status"] == "SUCCEEDED"  # nobody releases the token
    assert machine.lambdas.kinds() == ["ModelTurn", "ToolWait", "ModelTurn"]


def test_a_passed_tool_deadline_skips_the_wait(machine: Machine) -> None:
    machine.lambdas.outcomes = [{"outcome": "wait_for_tools", "wait_seconds": 0}, {"outcome": "parked"}]
    assert machine.run("deadline-passed")["status"] == "SUCCEEDED"
    assert machine.lambdas.kinds() == ["ModelTurn", "ModelTurn"]


def test_an_unknown_outcome_is_reported_then_the_execution_fails(machine: Machine) -> None:
    machine.lambdas.outcomes = [{"outcome": "bogus"}]
    described = machine.run("unknown")
    assert described["status"] == "FAILED"
    assert machine.lambdas.kinds() == ["ModelTurn", "ReportFailure"]
    report = machine.lambdas.calls[1][1]
    assert report["session_id"] == "sesn_1" and report["error"]["Error"] == "UnknownOutcome"


def test_continue_as_new_starts_the_execution_model_turn_handed_the_run_to(machine: Machine) -> None:
    # Given a ModelTurn that, at the turn limit, hands the run over to a continuation it names
    machine.lambdas.outcomes = [
        {"outcome": "run_again"},
        {"outcome": "run_again", "continue_as": "long-2"},
        {"outcome": "parked"},
    ]
    # When the run goes on past that turn
    assert machine.run("long")["status"] == "SUCCEEDED"
    deadline = time.monotonic() + 30
    while len(machine.lambdas.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Then the execution of exactly that name continued from turn 0, owning the run under its own name
    assert machine.lambdas.kinds() == ["ModelTurn"] * 3
    assert machine.lambdas.calls[2][1] == {
        "session_id": "sesn_1",
        "turns": 0,
        "execution": "long-2",
        "turns_per_execution": 50,
    }
    executions = machine.sfn.list_executions(stateMachineArn=machine.arn)["executions"]
    assert sorted(e["name"] for e in executions) == ["long", "long-2"]
