"""The synthesized "session run" state machine, executed by moto with OUR Lambda handlers, driven by the official SDK.

The definition comes from the template `python app.py` writes (stacks/asl.py resolves its intrinsics to ARNs made
here), so this test breaks when the stack changes. moto runs it (`execute_state_machine`); every Lambda invocation,
from the state machine or from our code (the ModelTurn's work service invoking the provisioner), is dispatched by
function name to the real handler in-process. DynamoDB, S3, Secrets Manager, Step Functions and ECS are moto; the
model is the scripted Messages server over HTTP; the API is the API Lambda's ASGI app (`lambda_app`) on loopback.
A Fargate task is played by the official worker (managed_agents/sandbox/entrypoint.py) as a subprocess whose
environment is exactly the container overrides of the ECS RunTask call the provisioner made.

Each test reports, per execution, the states entered (get_execution_history), as the cost model's counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import boto3
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.botocore_stubber import BotocoreStubber
from moto.ecs.models import EC2ContainerServiceBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn

import functions.provisioner.handler as provisioner_handler
from functions.model_turn.handler import handler as model_turn_handler
from functions.model_turn.handler import report_failure as report_failure_handler
from functions.tool_wait.handler import handler as tool_wait_handler
from managed_agents.adapters.aws.dynamodb_event_store import create_events_table
from managed_agents.adapters.aws.dynamodb_resource_store import create_resources_table
from managed_agents.api.lambda_app import create_lambda_app
from managed_agents.aws_runtime import lambda_deps
from managed_agents.sandbox import entrypoint
from managed_agents.settings import (
    API_URL_ENV,
    ECS_CLUSTER_ENV,
    EVENTS_TABLE_ENV,
    MODEL_API_KEY_SECRET_ARN_ENV,
    PROVISIONER_FUNCTION_ENV,
    RESOURCES_TABLE_ENV,
    SANDBOX_SECURITY_GROUP_ENV,
    SANDBOX_SUBNETS_ENV,
    SANDBOX_TASK_DEFINITION_ENV,
    SPILL_BUCKET_ENV,
    STATE_MACHINE_ARN_ENV,
)
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from stacks.asl import logical_id, state_machine_definition
from tests.e2e.conftest import wait_until
from tests.infra.conftest import Synth, default_synth, synth_variant  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

REGION, ACCOUNT = "us-east-1", "123456789012"
BASH = "echo from-fargate > f.txt && cat f.txt"
FUNCTIONS = ("ModelTurn", "ReportFailure", "ToolWait", "Provisioner")
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "req-test"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"


class MotoLock:
    """Serializes moto requests (its backends take no lock), but never across one of our handlers: a handler runs
    inside the Lambda request that invoked it and must let other threads (the API, the ownership watcher) reach
    moto meanwhile, as they would reach AWS."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.local = threading.local()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        process_request: Callable[..., Any] = BotocoreStubber.process_request
        outer = self

        def serialized(self: BotocoreStubber, request: Any) -> Any:
            with outer.lock:
                outer.local.depth = getattr(outer.local, "depth", 0) + 1
                try:
                    return process_request(self, request)
                finally:
                    outer.local.depth -= 1

        monkeypatch.setattr(BotocoreStubber, "process_request", serialized)

    def released(self, fn: Callable[[], Any]) -> Any:
        depth = getattr(self.local, "depth", 0)
        for _ in range(depth):
            self.lock.release()
        self.local.depth = 0
        try:
            return fn()
        finally:
            for _ in range(depth):
                self.lock.acquire()
            self.local.depth = depth


@dataclass
class Sandboxes:
    """Fargate stand-in: each RunTask starts the official worker with the task's environment overrides."""

    root: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, task_arn: str, overrides: dict[str, Any]) -> None:
        (container,) = overrides["containerOverrides"]
        env = {e["name"]: e["value"] for e in container["environment"]}
        self.runs.append({"container": container["name"], "environment": env})
        workdir = self.root / env["ANTHROPIC_SESSION_ID"]
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "LANG": "C.UTF-8"}
        proc_env = {**base, **env, "MANAGED_AGENTS_SANDBOX_WORKDIR": str(workdir)}
        log = open(self.root / f"{env['ANTHROPIC_WORK_ID']}.log", "wb")
        self.procs[task_arn] = subprocess.Popen(
            [sys.executable, entrypoint.__file__], env=proc_env, stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self, task_arn: str) -> None:
        proc = self.procs.get(task_arn)
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class Platform:
    client: anthropic.Anthropic
    model: ScriptedModelServer
    sfn: Any
    state_machine_arn: str
    sandboxes: Sandboxes
    invocations: list[str]

    def executions(self) -> list[dict[str, Any]]:
        out = self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]
        return sorted(out, key=lambda e: e["startDate"])

    def settled(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until `count` executions exist and none runs; return them, oldest first."""

        def done() -> list[dict[str, Any]] | None:
            ex = self.executions()
            return ex if len(ex) >= count and all(e["status"] != "RUNNING" for e in ex) else None

        result: list[dict[str, Any]] = wait_until(done, timeout, interval=0.1)
        return result

    def states(self, execution_arn: str) -> list[str]:
        """The states an execution entered, in order (one entry per state transition)."""
        history = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]

    def report(self, label: str, executions: list[dict[str, Any]], turns: int) -> list[list[str]]:
        per = [self.states(e["executionArn"]) for e in executions]
        transitions = sum(len(s) for s in per)
        print(
            json.dumps(
                {
                    "scenario": label,
                    "executions": len(per),
                    "state_transitions": transitions,
                    "model_turns": turns,
                    "transitions_per_turn": round(transitions / max(turns, 1), 2),
                    "lambda_invocations": dict(Counter(self.invocations)),
                    "states": [dict(Counter(s)) for s in per],
                }
            )
        )
        return per

    def session(self, tools: list[Any], env_type: str = "cloud") -> str:
        agent = self.client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=tools)
        env = self.client.beta.environments.create(name="e", config={"type": env_type})
        return self.client.beta.sessions.create(agent=agent.id, environment_id=env.id).id

    def say(self, sid: str, text: str) -> None:
        self.client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
        )

    def events(self, sid: str) -> list[Any]:
        return list(self.client.beta.sessions.events.list(sid, limit=1000))

    def wait_idle(self, sid: str, count: int = 1, timeout: float = 60) -> list[Any]:
        def done() -> list[Any] | None:
            evs = self.events(sid)
            return evs if sum(e.type == "session.status_idle" for e in evs) >= count else None

        result: list[Any] = wait_until(done, timeout, interval=0.1)
        return result


def _patch_moto(monkeypatch: pytest.MonkeyPatch, lock: MotoLock, sandboxes: Sandboxes, calls: list[str]) -> None:
    handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {
        "ModelTurn": model_turn_handler,
        "ReportFailure": report_failure_handler,
        "ToolWait": tool_wait_handler,
        "Provisioner": provisioner_handler.handler,
    }

    def invoke(
        _self: Any, function_name: str, _qualifier: Any, body: Any, _headers: Any, response_headers: Any
    ) -> bytes:
        name = function_name.rsplit(":", 1)[-1]
        kind = next(k for k in FUNCTIONS if name.startswith(k))
        calls.append(kind)
        event = json.loads(body)
        try:
            result = lock.released(lambda: handlers[kind](event, FakeLambdaContext(name)))
        except Exception as exc:  # a Lambda's unhandled error: FunctionError + the error document
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)

    # moto 5 passes the optimized states:startExecution parameters in their ASL spelling (`Input`, `StateMachineArn`)
    # where boto3 wants `input`, `stateMachineArn` (see tests/infra/test_session_run_asl_in_moto.py). And without a
    # `Name` it names every started execution "None" (a second continue-as-new then fails ExecutionAlreadyExists);
    # Step Functions generates a unique name, as this does.
    original = state_task_service_sfn.StateTaskServiceSfn._eval_service_task

    def eval_service_task(self: Any, **kwargs: Any) -> Any:
        params = {k[:1].lower() + k[1:]: v for k, v in kwargs.pop("normalised_parameters").items()}
        if "stateMachineArn" in params and not params.get("name"):
            params["name"] = str(uuid.uuid4())
        return original(self, normalised_parameters=params, **kwargs)

    monkeypatch.setattr(state_task_service_sfn.StateTaskServiceSfn, "_eval_service_task", eval_service_task)

    run_task = EC2ContainerServiceBackend.run_task
    stop_task = EC2ContainerServiceBackend.stop_task

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        tasks = run_task(self, *args, **kwargs)
        overrides = kwargs.get("overrides") if "overrides" in kwargs else args[3]
        for task in tasks:
            sandboxes.start(task.task_arn, overrides)
        return tasks

    def stop(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        task = stop_task(self, cluster_str, task_str, reason)
        sandboxes.stop(task.task_arn)
        return task

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", run)
    monkeypatch.setattr(EC2ContainerServiceBackend, "stop_task", stop)


def _platform(synth: Synth, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Platform]:
    for name, value in _FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_DEV", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ManagedAgentsTest")
    monkeypatch.setenv("MANAGED_AGENTS_RETRY_BASE_SECONDS", "1")
    monkeypatch.setenv("MANAGED_AGENTS_RETRY_MAX_SECONDS", "1")
    monkeypatch.setenv("MANAGED_AGENTS_TOOL_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("MANAGED_AGENTS_STREAM_POLL_SECONDS", "0.1")
    lock = MotoLock()
    lock.install(monkeypatch)
    sandboxes = Sandboxes(tmp_path / "sandboxes")
    sandboxes.root.mkdir()
    calls: list[str] = []
    _patch_moto(monkeypatch, lock, sandboxes, calls)
    template = synth.template
    refs = {
        logical_id(template, f"{n}/Live/Resource"): f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{n}"
        for n in ("ModelTurn", "ReportFailure", "ToolWait")
    }
    definition = state_machine_definition(template, refs=refs, region=REGION, account=ACCOUNT)
    machine = next(r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine")
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with ScriptedModelServer(fallback="error") as model, mock_aws(config=config):  # type: ignore[arg-type]
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_resources_table(ddb, f"resources-{suffix}")
        create_events_table(ddb, f"events-{suffix}")
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=f"spill-{suffix}")
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=f"model-key-{suffix}", SecretString="sk-test-from-secrets-manager"
        )["ARN"]
        ecs = boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName=f"sandboxes-{suffix}")
        task_def = ecs.register_task_definition(
            family=f"sandbox-{suffix}",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="1024",
            memory="2048",
            # (moto sums container-level cpu/memory even for Fargate; the stack sets them on the task only)
            containerDefinitions=[
                {"name": "sandbox", "image": "sandbox:test", "essential": True, "cpu": 1024, "memory": 2048}
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as CDK's VPC (moto needs it)
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName=f"sandbox-{suffix}", Description="sandbox", VpcId=vpc)["GroupId"]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name=machine["Properties"]["StateMachineName"],
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/session-run",
        )["stateMachineArn"]
        for name, value in {
            RESOURCES_TABLE_ENV: f"resources-{suffix}",
            EVENTS_TABLE_ENV: f"events-{suffix}",
            SPILL_BUCKET_ENV: f"spill-{suffix}",
            STATE_MACHINE_ARN_ENV: arn,
            MODEL_API_KEY_SECRET_ARN_ENV: secret,
            "ANTHROPIC_BASE_URL": model.base_url,
            API_URL_ENV: api_url,
            PROVISIONER_FUNCTION_ENV: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:Provisioner",
            ECS_CLUSTER_ENV: f"sandboxes-{suffix}",
            SANDBOX_TASK_DEFINITION_ENV: task_def,
            SANDBOX_SUBNETS_ENV: subnet,
            SANDBOX_SECURITY_GROUP_ENV: group,
        }.items():
            monkeypatch.setenv(name, value)
        lambda_deps.cache_clear()
        provisioner_handler.provisioner.cache_clear()
        app = create_lambda_app()
        rt = app.state.runtime
        ws = rt.keys.create_workspace("default")
        _, admin_key = rt.keys.create_key(ws, name="admin")
        try:
            with UvicornThread(app, port):
                client = anthropic.Anthropic(base_url=api_url, api_key=admin_key, max_retries=0)
                yield Platform(client, model, sfn, arn, sandboxes, calls)
        finally:
            sandboxes.close()
            lambda_deps.cache_clear()
            provisioner_handler.provisioner.cache_clear()


@pytest.fixture
def platform(default_synth: Synth, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Platform]:  # noqa: F811
    yield from _platform(default_synth, monkeypatch, tmp_path)


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


def test_a_built_in_tool_runs_in_the_sandbox_task_and_releases_the_tool_wait(platform: Platform) -> None:
    # Given an agent with the sandbox toolset in a cloud environment, whose model runs bash and then answers
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
    # And the official worker ran bash and posted the result, which released the ToolWait task token
    result = next(e for e in events if e.type == "user.tool_result")
    assert not result.is_error
    assert "from-fargate" in "".join(getattr(c, "text", "") for c in result.content)
    assert (platform.sandboxes.root / sid / "f.txt").read_text().strip() == "from-fargate"
    assert events[-1].stop_reason.type == "end_turn"
    (execution,) = platform.settled(1)
    assert execution["status"] == "SUCCEEDED"
    (states,) = platform.report("built_in_tool", [execution], turns=2)
    assert states.count("ToolWait") >= 1 and states[-1] == "Parked"
    assert "Provisioner" in platform.invocations


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
    synth_variant: Callable[[dict[str, Any]], Synth],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Platform]:
    yield from _platform(synth_variant({"maxTurnsPerExecution": 1}), monkeypatch, tmp_path)


def test_a_long_run_continues_as_a_new_execution(short_platform: Platform) -> None:
    # Given a stack whose executions restart after every turn that runs again (maxTurnsPerExecution=1)
    platform = short_platform
    platform.model.push("first", "second")
    sid = platform.session([])
    # When two messages are answered
    platform.say(sid, "one")
    platform.wait_idle(sid)
    platform.say(sid, "two")
    events = platform.wait_idle(sid, count=2)
    # Then runs crossed the turn limit through ContinueAsNew, and every execution ended cleanly
    executions = platform.settled(4)
    assert len(executions) == 4 and all(e["status"] == "SUCCEEDED" for e in executions)
    per = dict(
        zip((e["name"] for e in executions), platform.report("continue_as_new", executions, turns=2), strict=True)
    )
    claimed = [e for e in executions if e["name"].startswith(f"{sid}-")]
    continued = [e for e in executions if not e["name"].startswith(f"{sid}-")]
    assert len(claimed) == 2 and len(continued) == 2
    assert all(per[e["name"]][-1] == "Continued" and "ContinueAsNew" in per[e["name"]] for e in claimed)
    assert all(per[e["name"]][-1] == "Parked" for e in continued)
    # And each continued execution kept the run's owner (the name the wake claimed) and restarted its turn count
    inputs = [json.loads(platform.sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in continued]
    assert sorted(i["execution"] for i in inputs) == sorted(e["name"] for e in claimed)
    assert all(i == {"session_id": sid, "turns": 0, "execution": i["execution"]} for i in inputs)
    assert _types(events).count("agent.message") == 2
