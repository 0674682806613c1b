"""The whole AWS platform in one process: the synthesized "session run" state machine run by moto with OUR handlers.

`aws_platform(synth, tmp_path)` is a context manager usable from any fixture (or a bench script):

- DynamoDB tables, the S3 spill bucket, the model-key secret, an ECS cluster + Fargate task definition, a VPC subnet
  and security group: all moto (`mock_aws` with `execute_state_machine`);
- the state machine definition taken from the synthesized template (stacks/asl.py resolves its intrinsics to the
  ARNs made here), so a test breaks when the stack changes;
- every Lambda invocation, from the state machine or from our code (the work service invoking the provisioner),
  dispatched by function name to the real handler in `functions/`, in-process;
- a Fargate task played by the official worker (managed_agents/sandbox/entrypoint.py) as a subprocess whose
  environment is exactly the container overrides of the ECS RunTask call the provisioner made;
- the model: the scripted Messages server over HTTP; the API: the API Lambda's ASGI app (`create_lambda_app`) on
  loopback, driven by the official SDK;
- webhook delivery: the events table's stream and the delivery queue, which moto does not deliver to functions:
  `Platform.pump_webhooks()` plays the two event source mappings once (the stream records that pass the synthesized
  mapping's filter to functions/webhooks `relay`; the due queue messages to `deliver`, deleting those it did not
  report as failed); a cancelled transaction leaves the stream as DynamoDB does (moto's rollback did not:
  `keep_streams_through_cancelled_transactions`);
- with `reap_every=seconds`, the EventBridge schedule rule of the work reaper (moto delivers no events): a thread
  that invokes functions/reaper's handler that often (the stack's rule: every minute);
- IAM enforced (tests/aws/iam.py): each function's calls are signed by a moto role holding the actions of its
  synthesized role, the API's by the API function's (the event-stream route: the stream function's), the state
  machine's by its own; a call a role is not allowed fails as on AWS, and any such denial fails the block at its end
  (`iam_without` takes actions away from roles, for tests that show a scenario needs them; it implies no check).

The environment (fake AWS credentials, short retry settings, table names, ...) is set for the duration of the block
and restored afterwards; `env` overrides any of it (or adds `MANAGED_AGENTS_*` settings).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import boto3
import moto.kms.models as moto_kms
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.botocore_stubber import BotocoreStubber
from moto.dynamodb.models import DynamoDBBackend
from moto.ecs.models import EC2ContainerServiceBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

import functions.mcp_proxy.handler as mcp_proxy_handler
import functions.provisioner.handler as provisioner_handler
import functions.reaper.handler as reaper_handler
import functions.triggers.handler as triggers_handler
import functions.webhooks.handler as webhooks_handler
from functions.model_turn.handler import handler as model_turn_handler
from functions.model_turn.handler import report_failure as report_failure_handler
from functions.tool_wait.handler import handler as tool_wait_handler
from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore, create_events_table
from managed_agents.adapters.aws.dynamodb_resource_store import DynamoDbResourceStore, create_resources_table
from managed_agents.adapters.aws.s3_blob_store import S3BlobStore
from managed_agents.adapters.publishing_event_store import PublishingEventStore
from managed_agents.api.lambda_app import create_lambda_app
from managed_agents.aws_runtime import lambda_deps
from managed_agents.sandbox import entrypoint, materials
from managed_agents.settings import (
    API_URL_ENV,
    DEPLOYMENT_SCHEDULE_GROUP_ENV,
    DEPLOYMENT_SCHEDULE_ROLE_ARN_ENV,
    DEPLOYMENT_SCHEDULE_TARGET_ARN_ENV,
    ECS_CLUSTER_ENV,
    EVENT_BUS_NAME_ENV,
    EVENTS_TABLE_ENV,
    FILES_BUCKET_ENV,
    MCP_PROXY_FUNCTION_ENV,
    MODEL_API_KEY_SECRET_ARN_ENV,
    PROVISIONER_FUNCTION_ENV,
    RESOURCES_TABLE_ENV,
    SANDBOX_SECURITY_GROUP_ENV,
    SANDBOX_SUBNETS_ENV,
    SANDBOX_TASK_DEFINITION_ENV,
    SPILL_BUCKET_ENV,
    STATE_MACHINE_ARN_ENV,
    VAULT_KMS_KEY_ARN_ENV,
    VAULT_SECRET_PREFIX_ENV,
    WEBHOOK_QUEUE_URL_ENV,
    WEBHOOK_SECRET_PREFIX_ENV,
)
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from managed_agents.wiring import Runtime
from stacks.asl import logical_id, state_machine_definition
from tests.aws.iam import PRINCIPAL, IamEnforcement, acting_as
from tests.e2e.conftest import wait_until
from tests.infra.conftest import Synth

__all__ = [
    "ACCOUNT",
    "FUNCTIONS",
    "REGION",
    "FakeLambdaContext",
    "MotoLock",
    "Platform",
    "Sandboxes",
    "WebhookPumps",
    "aws_platform",
]

REGION, ACCOUNT = "us-east-1", "123456789012"
FUNCTIONS = ("ModelTurn", "ReportFailure", "ToolWait", "Provisioner", "McpProxy", "Reaper")
log = logging.getLogger(__name__)
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
# Short enough for tests; `env=` overrides them.
DEFAULT_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "ManagedAgentsTest",
    "MANAGED_AGENTS_RETRY_BASE_SECONDS": "1",
    "MANAGED_AGENTS_RETRY_MAX_SECONDS": "1",
    "MANAGED_AGENTS_TOOL_TIMEOUT_SECONDS": "60",
    "MANAGED_AGENTS_STREAM_POLL_SECONDS": "0.1",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # the VPC needs none; loading ~7,800 AMIs costs ~0.5 s per platform
}


@dataclass
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "req-test"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000  # a fresh invocation of the stack's 900 s ModelTurn (ModelTurn chains steps while time allows)


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


@functools.cache
def mount_namespaces() -> list[str] | None:
    """The `unshare` command that gives a process a private mount namespace here (root: a mount namespace; otherwise
    a user namespace that owns one), or None where the machine allows neither."""
    tool = shutil.which("unshare")
    if tool is None or sys.platform != "linux":
        return None
    cmd = [tool, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        cmd[1:1] = ["--user", "--map-root-user"]
    probe = subprocess.run([*cmd, "--", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True, check=False)
    return cmd if probe.returncode == 0 else None


def with_memory_mount(memory: Path, argv: list[str]) -> list[str] | None:
    """`argv` run with `memory` at /mnt/memory, as the sandbox container has its own (the image's directory, in the
    task's writable layer: fresh per task, sandbox/Dockerfile): in a private mount namespace whose /mnt is a tmpfs
    holding only that bind (so the host's /mnt is neither shown nor touched); `exec`, so the process stopped and
    signalled is the entrypoint itself. None where there are no mount namespaces, or the process needs the host's
    /mnt."""
    unshare = mount_namespaces()
    if unshare is None or any(Path(p).resolve().is_relative_to("/mnt") for p in (memory, *argv)):
        return None
    script = 'mount -t tmpfs -o mode=755 tmpfs /mnt && mkdir /mnt/memory && mount --bind "$0" /mnt/memory && exec "$@"'
    return [*unshare, "--", "sh", "-c", script, str(memory), *argv]


@dataclass
class Sandboxes:
    """Fargate stand-in: each RunTask runs the task's init container (managed_agents/sandbox/materials.py) with its
    environment overrides, then, once it exited 0 (the task definition's `dependsOn: SUCCESS`), the official worker
    with the sandbox container's. Both as subprocesses, in a thread (the init program calls the API, which calls
    moto: RunTask must return first); the task volumes are the session's working directory (`/mnt/session` →
    `<workdir>/mnt/session`). The sandbox container's own /mnt/memory (where the worker mounts the session's memory
    stores, the image turning memory on) is a fresh directory per task bound there in a mount namespace
    (`with_memory_mount`); where the machine has none, the worker runs without memory (`memory` is False)."""

    root: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)
    closing: bool = False

    @property
    def memory(self) -> bool:
        """Whether the tasks' worker mounts memory stores (at /mnt/memory of a mount namespace of its own)."""
        return mount_namespaces() is not None

    def start(self, task_arn: str, overrides: dict[str, Any]) -> None:
        containers = {
            c["name"]: {e["name"]: e["value"] for e in c["environment"]} for c in overrides["containerOverrides"]
        }
        env, init_env = containers["sandbox"], containers.get("init")
        self.runs.append({"container": "sandbox", "environment": env, "init": init_env})
        workdir = self.root / env["ANTHROPIC_SESSION_ID"]
        workdir.mkdir(parents=True, exist_ok=True)
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "LANG": "C.UTF-8"}
        proc_env = {**base, **env, "MANAGED_AGENTS_SANDBOX_WORKDIR": str(workdir)}
        proc_env["MANAGED_AGENTS_SANDBOX_ROOT"] = str(workdir)
        proc_env["MANAGED_AGENTS_SANDBOX_OUTPUTS"] = str(workdir / "mnt/session/outputs")  # the image's ENV
        proc_env["MANAGED_AGENTS_SANDBOX_INPUTS"] = "1"  # the image's ENV
        log_path = self.root / f"{env['ANTHROPIC_WORK_ID']}.log"
        memory = self.root / "memory" / task_arn.rsplit("/", 1)[-1]
        argv = with_memory_mount(memory, [sys.executable, entrypoint.__file__])
        if argv is not None:
            memory.mkdir(parents=True)
            proc_env["MANAGED_AGENTS_SANDBOX_MEMORY"] = "1"  # the image's ENV
        argv = argv or [sys.executable, entrypoint.__file__]

        def run() -> None:
            with open(log_path, "ab") as log:
                if init_env is not None:
                    init = subprocess.Popen(
                        [sys.executable, materials.__file__],
                        env={**base, **init_env, "MANAGED_AGENTS_INIT_ROOT": str(workdir)},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                    self.procs[task_arn] = init
                    if init.wait() != 0:
                        return
                if task_arn in self.stopped or self.closing:
                    return
                self.procs[task_arn] = subprocess.Popen(argv, env=proc_env, stdout=log, stderr=subprocess.STDOUT)

        thread = threading.Thread(target=run, name=f"task-{task_arn[-8:]}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def stop(self, task_arn: str) -> None:
        self.stopped.add(task_arn)
        proc = self.procs.get(task_arn)
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def close(self) -> None:
        self.closing = True
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                proc.terminate()
        for thread in self.threads:
            thread.join(30)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@dataclass
class Platform:
    client: anthropic.Anthropic
    model: ScriptedModelServer
    sfn: Any
    state_machine_arn: str
    sandboxes: Sandboxes
    invocations: list[str]
    url: str = ""
    admin_key: str = ""
    runtime: Runtime | None = None  # the API Lambda's runtime (the app served on `url`)
    iam: IamEnforcement | None = None
    reap: Callable[[], None] = lambda: None  # one run of the work reaper's schedule, now
    cluster: str = ""  # the ECS cluster of the sandbox tasks
    webhook_pumps: WebhookPumps | None = None

    def pump_webhooks(self) -> tuple[int, int]:
        """One poll of each webhook event source mapping: (stream records relayed, queue messages delivered)."""
        assert self.webhook_pumps is not None
        return self.webhook_pumps.stream_once(), self.webhook_pumps.queue_once()

    def ecs(self) -> Any:
        return boto3.client("ecs", region_name=REGION)

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Invoke one of the stack's Lambdas (e.g. "ToolWait") as the state machine would; its result document."""
        out = boto3.client("lambda", region_name=REGION).invoke(
            FunctionName=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}", Payload=json.dumps(event).encode()
        )
        assert "FunctionError" not in out, out["Payload"].read()
        return json.loads(out["Payload"].read())

    def trigger(self, event: dict[str, Any]) -> dict[str, Any]:
        """Deliver an EventBridge event or a Scheduler input to the triggers function, as its role."""
        self.invocations.append("Triggers")
        with acting_as("Triggers"):
            result: dict[str, Any] = triggers_handler.handler(event, FakeLambdaContext("TriggersFunction"))
        return result

    def stored_bytes(self) -> bytes:
        """Everything persisted in the platform's stores: every item of both tables, every spilled object and every
        blob (files, skill archives, outputs)."""
        rt = self.runtime
        assert rt is not None and isinstance(rt.resources, DynamoDbResourceStore)
        events = rt.events.inner if isinstance(rt.events, PublishingEventStore) else rt.events
        assert isinstance(events, DynamoDbEventStore)
        ddb, s3 = boto3.client("dynamodb", region_name=REGION), boto3.client("s3", region_name=REGION)
        out = []
        for table in (rt.resources.table_name, events.table_name):
            for page in ddb.get_paginator("scan").paginate(TableName=table):
                out.append(json.dumps(page["Items"], default=str).encode())
        buckets = [events.bucket_name] + ([rt.blobs.bucket] if isinstance(rt.blobs, S3BlobStore) else [])
        for bucket in buckets:
            for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in listing.get("Contents", []):
                    out.append(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        return b"".join(out)

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
        config: Any = {"type": env_type}
        env = self.client.beta.environments.create(name="e", config=config)
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


def filter_matches(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """An event source mapping's filter pattern (the subset the stack uses: nested keys, lists of accepted values)."""
    for key, rule in pattern.items():
        value = record.get(key)
        if isinstance(rule, Mapping):
            if not isinstance(value, Mapping) or not filter_matches(rule, value):
                return False
        elif value not in rule:
            return False
    return True


class WebhookPumps:
    """The webhook functions' event source mappings, which moto does not run: the stream (with the synthesized filter)
    to `relay`, the delivery queue to `deliver` (tests/aws/platform.py docstring)."""

    def __init__(self, template: Mapping[str, Any], table: str, queue_url: str, calls: list[str], inflight: Any):
        mappings = [
            r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
        ]
        stream = next(m for m in mappings if "FilterCriteria" in m)
        self.patterns = [json.loads(f["Pattern"]) for f in stream["FilterCriteria"]["Filters"]]
        self.stream_batch = int(stream["BatchSize"])
        self.queue_batch = int(next(m for m in mappings if "FunctionResponseTypes" in m)["BatchSize"])
        self.table, self.queue_url, self.calls, self.inflight = table, queue_url, calls, inflight
        self.iterators: dict[str, str] = {}
        self.lock = threading.Lock()

    def stream_once(self) -> int:
        ddb = boto3.client("dynamodb", region_name=REGION)
        # (moto serves the stream on the regional endpoint only, not the account-based one botocore now picks)
        streams = boto3.client(
            "dynamodbstreams", region_name=REGION, endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com"
        )
        arn = ddb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        records: list[dict[str, Any]] = []
        with self.lock:
            for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
                sid = shard["ShardId"]
                if sid not in self.iterators:
                    self.iterators[sid] = streams.get_shard_iterator(
                        StreamArn=arn, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
                    )["ShardIterator"]
                out = streams.get_records(ShardIterator=self.iterators[sid])
                self.iterators[sid] = out["NextShardIterator"]
                records += [r for r in out["Records"] if any(filter_matches(p, r) for p in self.patterns)]
        for i in range(0, len(records), self.stream_batch):
            self.calls.append("WebhookRelay")
            with self.inflight, acting_as("WebhookRelay"):
                webhooks_handler.relay(
                    {"Records": json.loads(json.dumps(records[i : i + self.stream_batch], default=str))},
                    FakeLambdaContext("WebhookRelay"),
                )
        return len(records)

    def queue_once(self) -> int:
        sqs = boto3.client("sqs", region_name=REGION)
        messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self.queue_batch).get(
            "Messages", []
        )
        if not messages:
            return 0
        event = {
            "Records": [
                {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"]} for m in messages
            ]
        }
        self.calls.append("WebhookDeliver")
        with self.inflight, acting_as("WebhookDeliver"):
            result = webhooks_handler.deliver(event, FakeLambdaContext("WebhookDeliver"))
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)


class _InFlight:
    """Counts handler invocations running now, so that teardown can wait for them: a handler still running after
    `mock_aws` ends would send its boto3 calls to the real AWS endpoints."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    def __enter__(self) -> None:
        with self.cond:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.count -= 1
            self.cond.notify_all()

    def drained(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count == 0, timeout)


def keep_streams_through_cancelled_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled TransactWriteItems leaves a table's stream as it was, as on DynamoDB (which emits no record for a
    transaction that did not commit). moto applies the transaction's items one by one (a Put to a streamed table adds
    its stream record) and, when one fails, rolls back by putting a deep copy of each table, taken before, in place of
    the live one: the live shard, with the cancelled Put's record, goes with the replaced table, while the shard
    iterators already handed out keep reading it. A reader then gets the record of a write that never happened and
    none of the writes after (they go to the copy's shard). Here the live shard stays, without the cancelled
    records, on the restored table."""
    transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        shards = {
            name: (table.stream_shard, len(table.stream_shard.items))
            for name, table in self.tables.items()
            if table.stream_shard is not None
        }
        try:
            transact(self, transact_items)
        except Exception:
            for name, (shard, length) in shards.items():
                restored = self.tables.get(name)
                if restored is not None and restored.stream_shard is not shard:
                    del shard.items[length:]
                    shard.table = restored
                    restored.stream_shard = shard
            raise

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", transact_write_items)


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()
_session_client = boto3.session.Session.client


def _shared_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """One boto3 client per (service, region, options) for the test process, whichever platform asks. Creating a client
    copies its session's event hooks and builds the client class (~10-15 ms of CPU each): the platform made 16 and its
    handlers as many again per test (py-spy, the AWS leg of test_agents_api.py: 9% of the file's CPU). A client holds
    no per-platform state: moto routes its calls to the backends of the `mock_aws` block running, the region comes from
    the key, and IAM enforcement signs each call as the principal making it whatever credentials the client holds."""

    def client(self: boto3.session.Session, service_name: str, region_name: str | None = None, **kwargs: Any) -> Any:
        config = kwargs.get("config")
        options = sorted(config._user_provided_options.items()) if config is not None else None
        region = region_name or self.region_name or os.environ.get("AWS_DEFAULT_REGION")
        rest = sorted((k, v) for k, v in kwargs.items() if k != "config" and v is not None)
        key = (service_name, region, repr(options), repr(rest))
        with _clients_lock:
            if key not in _clients:
                _clients[key] = _session_client(self, service_name, region_name=region, **kwargs)
            return _clients[key]

    monkeypatch.setattr(boto3.session.Session, "client", client)


_valid_definitions: set[str] = set()
_parsed_programs: dict[str, Any] = {}


def _parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto parses a state machine's definition with ANTLR at CreateStateMachine, to validate it, and again at the
    start of every execution (~90 ms of CPU each for the session run's; a session test starts several executions, and
    an interrupt's new run waits for it). Each definition is validated and parsed once per test process; an execution
    evaluates a deep copy of the parsed program (~8 ms), as fresh as a new parse: the program's components keep state
    while they run (a retrier's attempt count), so executions must not share one."""
    validate = StepFunctionsParserBackend._validate_definition

    def validated_once(definition: str) -> None:
        if definition not in _valid_definitions:
            validate(definition=definition)
            _valid_definitions.add(definition)

    def parsed_once(worker: ExecutionWorker) -> Any:
        definition = worker._evaluation_details.state_machine_details.definition
        program = _parsed_programs.get(definition)
        if program is None:
            program = _parsed_programs.setdefault(definition, AmazonStateLanguageParser.parse(definition)[0])
        return copy.deepcopy(program)

    monkeypatch.setattr(StepFunctionsParserBackend, "_validate_definition", staticmethod(validated_once))
    monkeypatch.setattr(ExecutionWorker, "_get_evaluation_entrypoint", parsed_once)


@functools.cache
def _unused_private_key() -> Any:
    return moto_kms.generate_private_key("RSA_2048")


def _patch_moto(
    monkeypatch: pytest.MonkeyPatch, lock: MotoLock, sandboxes: Sandboxes, calls: list[str], inflight: _InFlight
) -> None:
    keep_streams_through_cancelled_transactions(monkeypatch)
    _shared_clients(monkeypatch)
    _parsed_once(monkeypatch)
    # moto makes an RSA-2048 private key for every KMS key, a symmetric one too (where it is never used: encryption
    # uses the key's material): ~0.1-0.3 s of CPU per platform for the vault key. Symmetric keys share one.
    make_private_key = moto_kms.generate_private_key

    def private_key(key_spec: str) -> Any:
        if key_spec == "SYMMETRIC_DEFAULT":
            return _unused_private_key()
        return make_private_key(key_spec)

    monkeypatch.setattr(moto_kms, "generate_private_key", private_key)
    handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {
        "ModelTurn": model_turn_handler,
        "ReportFailure": report_failure_handler,
        "ToolWait": tool_wait_handler,
        "Provisioner": provisioner_handler.handler,
        "McpProxy": mcp_proxy_handler.handler,
    }

    def invoke(
        _self: Any, function_name: str, _qualifier: Any, body: Any, _headers: Any, response_headers: Any
    ) -> bytes:
        name = function_name.rsplit(":", 1)[-1]
        kind = next(k for k in FUNCTIONS if name.startswith(k))
        calls.append(kind)
        event = json.loads(body)
        try:
            with inflight, acting_as(kind):
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

    # moto sets an execution's evaluation environment on the execution's own thread, after StartExecution returned;
    # a StopExecution in between fails inside moto (AttributeError: 'NoneType' object has no attribute 'set_stop'),
    # which Step Functions never does: an interrupt sent right after a message hit it. The stop waits for the env.
    worker_stop = ExecutionWorker.stop

    def stop_when_started(self: Any, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + 10
        while getattr(self, "env", None) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return worker_stop(self, *args, **kwargs)

    monkeypatch.setattr(ExecutionWorker, "stop", stop_when_started)

    run_task = EC2ContainerServiceBackend.run_task
    stop_task = EC2ContainerServiceBackend.stop_task

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        tasks = run_task(self, *args, **kwargs)
        overrides: dict[str, Any] = kwargs["overrides"] if "overrides" in kwargs else args[3]
        for task in tasks:
            sandboxes.start(task.task_arn, overrides)
        return tasks

    def stop(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        task = stop_task(self, cluster_str, task_str, reason)
        sandboxes.stop(task.task_arn)
        return task

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", run)
    monkeypatch.setattr(EC2ContainerServiceBackend, "stop_task", stop)


def _reset_mcp_proxy() -> None:
    """Close the MCP proxy container's warm connections and forget it (its environment is per platform)."""
    if mcp_proxy_handler.proxy.cache_info().currsize:
        mcp_proxy_handler.proxy().close()
    mcp_proxy_handler.proxy.cache_clear()


@contextmanager
def aws_platform(
    synth: Synth,
    tmp_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    model: ScriptedModelServer | None = None,
    reap_every: float | None = None,
    iam_without: Mapping[str, frozenset[str]] | None = None,
) -> Iterator[Platform]:
    """The platform for the block: `synth` is the synthesized app (tests/infra/conftest.py `default_synth` or a
    `synth_variant(...)`), `tmp_path` holds the sandboxes' working directories and logs, `env` overrides the
    Lambda/API environment (e.g. `{"MANAGED_AGENTS_SSE_PING_SECONDS": "0.5"}`), `model` is a running scripted model
    server to use (default: a fresh one for the block), `reap_every` runs the work reaper's schedule that often
    (default: never, as the counts of a scenario must not include it)."""
    with pytest.MonkeyPatch.context() as monkeypatch, ExitStack() as stack:
        if model is None:
            model = stack.enter_context(ScriptedModelServer(fallback="error"))
        yield from _platform(synth, monkeypatch, tmp_path, dict(env or {}), model, reap_every, iam_without)


class _Schedule:
    """An EventBridge schedule rule's stand-in: invokes `fn` every `seconds` on a thread until the block ends. A failed
    run is logged and not retried (the stack's rule has retry_attempts=0: the next run comes anyway)."""

    def __init__(self, seconds: float | None, fn: Callable[[], Any]) -> None:
        self.seconds, self.fn = seconds, fn
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="schedule-rule", daemon=True)

    def _loop(self) -> None:
        assert self.seconds is not None
        while not self.stop.wait(self.seconds):
            try:
                self.fn()
            except Exception:
                log.exception("scheduled invocation failed")

    def __enter__(self) -> _Schedule:
        if self.seconds is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(30)


def _platform(
    synth: Synth,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    model: ScriptedModelServer,
    reap_every: float | None,
    iam_without: Mapping[str, frozenset[str]] | None,
) -> Iterator[Platform]:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in {**_FAKE_AWS, **DEFAULT_ENV}.items():
        monkeypatch.setenv(name, value)
    lock = MotoLock()
    lock.install(monkeypatch)
    sandboxes = Sandboxes(tmp_path / "sandboxes")
    sandboxes.root.mkdir(parents=True, exist_ok=True)
    calls: list[str] = []
    inflight = _InFlight()
    _patch_moto(monkeypatch, lock, sandboxes, calls, inflight)
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
    config: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with mock_aws(config=config):
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_resources_table(ddb, f"resources-{suffix}")
        create_events_table(ddb, f"events-{suffix}")
        # (the stack's events table has a stream: the webhook outbox)
        ddb.update_table(
            TableName=f"events-{suffix}", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        )
        webhook_queue = boto3.client("sqs", region_name=REGION).create_queue(QueueName=f"webhooks-{suffix}")
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=f"spill-{suffix}")
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=f"files-{suffix}")
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
                {"name": "init", "image": "sandbox:test", "essential": False, "cpu": 0, "memory": 128},
                {"name": "sandbox", "image": "sandbox:test", "essential": True, "cpu": 1024, "memory": 1920},
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        # the vault key (the stack's VaultKey): vault secrets are encrypted with it, as in the stack
        vault_key = boto3.client("kms", region_name=REGION).create_key(Description="vault")["KeyMetadata"]["Arn"]
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as CDK's VPC (moto needs it)
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName=f"sandbox-{suffix}", Description="sandbox", VpcId=vpc)["GroupId"]
        # the Triggers construct's bus (lifecycle events are put on it) and schedule group (deployment schedules)
        boto3.client("events", region_name=REGION).create_event_bus(Name=f"bus-{suffix}")
        boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=f"schedules-{suffix}")
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
            FILES_BUCKET_ENV: f"files-{suffix}",
            STATE_MACHINE_ARN_ENV: arn,
            MODEL_API_KEY_SECRET_ARN_ENV: secret,
            "ANTHROPIC_BASE_URL": model.base_url,
            API_URL_ENV: api_url,
            PROVISIONER_FUNCTION_ENV: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:Provisioner",
            ECS_CLUSTER_ENV: f"sandboxes-{suffix}",
            SANDBOX_TASK_DEFINITION_ENV: task_def,
            SANDBOX_SUBNETS_ENV: subnet,
            SANDBOX_SECURITY_GROUP_ENV: group,
            MCP_PROXY_FUNCTION_ENV: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:McpProxy",
            VAULT_SECRET_PREFIX_ENV: f"ma-{suffix}/vault/",
            WEBHOOK_SECRET_PREFIX_ENV: f"ma-{suffix}/webhook/",
            VAULT_KMS_KEY_ARN_ENV: vault_key,
            EVENT_BUS_NAME_ENV: f"bus-{suffix}",
            DEPLOYMENT_SCHEDULE_GROUP_ENV: f"schedules-{suffix}",
            DEPLOYMENT_SCHEDULE_ROLE_ARN_ENV: f"arn:aws:iam::{ACCOUNT}:role/deployment-schedules",
            DEPLOYMENT_SCHEDULE_TARGET_ARN_ENV: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:Triggers",
            WEBHOOK_QUEUE_URL_ENV: webhook_queue["QueueUrl"],
            **env,
        }.items():
            monkeypatch.setenv(name, value)
        lambda_deps.cache_clear()
        provisioner_handler.provisioner.cache_clear()
        _reset_mcp_proxy()
        app = create_lambda_app()
        rt: Runtime = app.state.runtime
        ws = rt.keys.create_workspace("default")
        _, admin_key = rt.keys.create_key(ws, name="admin")
        iam = IamEnforcement(template, without=dict(iam_without or {}))
        iam.provision(REGION)
        iam.install(monkeypatch)

        def reap() -> None:
            calls.append("Reaper")
            with inflight, acting_as("Reaper"):
                reaper_handler.handler(
                    {"source": "aws.events", "detail-type": "Scheduled Event"}, FakeLambdaContext("Reaper")
                )

        try:
            with iam.enforced(), UvicornThread(_AsApiFunctions(app), port):
                try:
                    with _Schedule(reap_every, reap):
                        client = anthropic.Anthropic(base_url=api_url, api_key=admin_key, max_retries=0)
                        yield Platform(
                            client,
                            model,
                            sfn,
                            arn,
                            sandboxes,
                            calls,
                            url=api_url,
                            admin_key=admin_key,
                            runtime=rt,
                            iam=iam,
                            reap=reap,
                            cluster=f"sandboxes-{suffix}",
                            webhook_pumps=WebhookPumps(
                                template, f"events-{suffix}", webhook_queue["QueueUrl"], calls, inflight
                            ),
                        )
                finally:
                    # Nothing may outlive moto: stop the runs still going and let running handlers return; stop the
                    # sandbox workers while the API is up (uvicorn's shutdown would wait for their open streams).
                    _stop_running(sfn, arn)
                    if not inflight.drained(timeout=30):
                        log.warning("handlers still running at teardown: %d", inflight.count)
                    sandboxes.close()
        finally:
            sandboxes.close()
            lambda_deps.cache_clear()
            provisioner_handler.provisioner.cache_clear()
        _reset_mcp_proxy()
        denials = iam.denials()
        if denials and not iam_without:
            missing = sorted({(d.principal, d.action) for d in denials})
            raise AssertionError(f"calls the synthesized IAM policies do not allow (principal, action): {missing}")


def _stop_running(sfn: Any, arn: str) -> None:
    """Stop the executions still running. moto fails to stop one whose worker has not started yet (AttributeError
    inside moto): try again a moment later."""
    for _ in range(50):
        try:
            for execution in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]:
                sfn.stop_execution(executionArn=execution["executionArn"], cause="platform teardown")
            return
        except AttributeError:
            threading.Event().wait(0.1)
    log.warning("could not stop the running executions at teardown")


class _AsApiFunctions:
    """The API app as the stack serves it: the event-stream route by the stream function, the rest by the API
    function; each request's AWS calls sign with that function's role."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = PRINCIPAL.set("Stream" if str(scope["path"]).endswith("/events/stream") else "Api")
        try:
            await self.app(scope, receive, send)
        finally:
            PRINCIPAL.reset(token)
