"""AWS adapters in-process on moto: DynamoDB, S3, Secrets Manager and Step Functions, plus the scripted model."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from managed_agents.adapters.aws.dynamodb_event_store import create_events_table
from managed_agents.adapters.aws.dynamodb_resource_store import create_resources_table
from managed_agents.aws_runtime import (
    EVENTS_TABLE_ENV,
    MODEL_API_KEY_SECRET_ARN_ENV,
    RESOURCES_TABLE_ENV,
    SPILL_BUCKET_ENV,
    STATE_MACHINE_ARN_ENV,
    AwsDeps,
    lambda_deps,
)
from managed_agents.settings import FILES_BUCKET_ENV
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.contract.conftest import fake_aws_env

REGION = "us-east-1"
# A stand-in definition: these tests drive the task handlers themselves; the real ASL comes from stacks/.
_DEFINITION = {"StartAt": "Hold", "States": {"Hold": {"Type": "Pass", "End": True}}}


@dataclass
class FakeLambdaContext:
    function_name: str = "model-turn"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:model-turn"
    aws_request_id: str = "req-test"
    remaining_ms: int = 900_000  # the stack's ModelTurn timeout

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class AwsEnv:
    deps: AwsDeps
    model: ScriptedModelServer
    sfn: Any
    state_machine_arn: str
    secret_arn: str

    def executions(self) -> list[dict[str, Any]]:
        out = self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]
        return sorted(out, key=lambda e: e["startDate"])


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    """Tables, bucket, model-key secret and a state machine in moto; the Lambda environment pointing at them."""
    fake_aws_env(monkeypatch)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_DEV", "true")
    monkeypatch.setenv("MANAGED_AGENTS_RETRY_BASE_SECONDS", "2")
    monkeypatch.setenv("MANAGED_AGENTS_TOOL_TIMEOUT_SECONDS", "120")
    suffix = uuid.uuid4().hex[:10]
    with ScriptedModelServer(fallback="error") as model, mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        sm = boto3.client("secretsmanager", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        create_resources_table(ddb, f"resources-{suffix}")
        create_events_table(ddb, f"events-{suffix}")
        s3.create_bucket(Bucket=f"spill-{suffix}")
        s3.create_bucket(Bucket=f"files-{suffix}")
        secret_arn = sm.create_secret(Name=f"model-key-{suffix}", SecretString="sk-test-from-secrets-manager")["ARN"]
        machine = sfn.create_state_machine(
            name=f"session-run-{suffix}",
            definition=json.dumps(_DEFINITION),
            roleArn="arn:aws:iam::123456789012:role/session-run",
        )["stateMachineArn"]
        monkeypatch.setenv(RESOURCES_TABLE_ENV, f"resources-{suffix}")
        monkeypatch.setenv(EVENTS_TABLE_ENV, f"events-{suffix}")
        monkeypatch.setenv(SPILL_BUCKET_ENV, f"spill-{suffix}")
        monkeypatch.setenv(FILES_BUCKET_ENV, f"files-{suffix}")
        monkeypatch.setenv(STATE_MACHINE_ARN_ENV, machine)
        monkeypatch.setenv(MODEL_API_KEY_SECRET_ARN_ENV, secret_arn)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", model.base_url)
        lambda_deps.cache_clear()
        try:
            deps = lambda_deps()
            deps.clients.stepfunctions = sfn  # the ToolWait handler's client: tests hook its calls
            yield AwsEnv(deps, model, sfn, machine, secret_arn)
        finally:
            lambda_deps.cache_clear()
