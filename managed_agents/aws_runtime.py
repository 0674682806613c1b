"""The AWS composition root: the same `Runtime` as the embedded one, on DynamoDB, S3 and Step Functions.

Environment (set by the CDK stack on the API and task Lambdas):

| variable | what |
| --- | --- |
| `MANAGED_AGENTS_RESOURCES_TABLE` | the resources table (`create_resources_table` schema) |
| `MANAGED_AGENTS_EVENTS_TABLE` | the events table (`create_events_table` schema) |
| `MANAGED_AGENTS_SPILL_BUCKET` | S3 bucket for event payloads over the item limit |
| `MANAGED_AGENTS_STATE_MACHINE_ARN` | the "session run" state machine; unset: no orchestrator (nothing runs turns) |
| `MANAGED_AGENTS_STREAM_POLL_SECONDS` | how often an open event stream re-reads the log (default 0.5) |
| `MODEL_API_KEY_SECRET_ARN` | Secrets Manager secret holding the model API key (ModelTurn Lambda only) |
| `ANTHROPIC_BASE_URL` | any Anthropic-compatible endpoint (the SDK's own variable), optional |
| `MANAGED_AGENTS_API_URL` | the API's base URL, which sandbox workers call back |
| `MANAGED_AGENTS_PROVISIONER_FUNCTION` | the provisioner Lambda; set: `cloud` sessions get Fargate sandboxes |

plus the sandbox variables and every `MANAGED_AGENTS_*` harness and server setting: all of them are declared in
`managed_agents/settings.py` (`AwsSettings`); the names are re-exported here for stacks/config.py.

The API Lambda needs no state machine ARN at import time and the task Lambdas need no model until their first
invocation, so nothing here calls AWS when imported (SnapStart snapshots stay free of secrets).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore
from managed_agents.adapters.aws.dynamodb_resource_store import DynamoDbResourceStore
from managed_agents.adapters.aws.ecs_sandbox_provisioner import LambdaSandboxProvisioner
from managed_agents.adapters.aws.polling_notifier import PollingNotifier
from managed_agents.adapters.aws.step_functions_orchestrator import StepFunctionsOrchestrator
from managed_agents.domain.clock import Clock, SystemClock
from managed_agents.harness.turn import HarnessDeps
from managed_agents.ports import ModelClient
from managed_agents.services.agents import AgentService
from managed_agents.services.common import Services
from managed_agents.services.environments import EnvironmentService
from managed_agents.services.keys import KeyService
from managed_agents.services.sessions import SessionService
from managed_agents.services.work import WorkService, WorkSettings
from managed_agents.settings import (
    EVENTS_TABLE_ENV,
    MODEL_API_KEY_SECRET_ARN_ENV,
    RESOURCES_TABLE_ENV,
    SPILL_BUCKET_ENV,
    STATE_MACHINE_ARN_ENV,
    STREAM_POLL_SECONDS_ENV,
    AwsSettings,
)
from managed_agents.wiring import Runtime

__all__ = [
    "EVENTS_TABLE_ENV",
    "MODEL_API_KEY_SECRET_ARN_ENV",
    "RESOURCES_TABLE_ENV",
    "SPILL_BUCKET_ENV",
    "STATE_MACHINE_ARN_ENV",
    "STREAM_POLL_SECONDS_ENV",
    "AwsClients",
    "AwsDeps",
    "AwsSettings",
    "build_aws_deps",
    "build_aws_runtime",
    "lambda_deps",
    "model_api_key",
]

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_stepfunctions.client import SFNClient

SECRET_MAX_AGE_SECONDS = 300


@dataclass
class AwsClients:
    """boto3 clients, created on first use unless injected (tests pass moto-backed ones)."""

    dynamodb: DynamoDBClient | None = None
    s3: S3Client | None = None
    stepfunctions: SFNClient | None = None
    secretsmanager: SecretsManagerClient | None = None
    lambda_: LambdaClient | None = None

    def sfn(self) -> SFNClient:
        if self.stepfunctions is None:
            import boto3

            self.stepfunctions = boto3.client("stepfunctions")
        return self.stepfunctions


def build_aws_runtime(
    settings: AwsSettings | None = None,
    *,
    clients: AwsClients | None = None,
    clock: Clock | None = None,
) -> Runtime:
    """The API's runtime on AWS. `Runtime.orchestrator` (the embedded one) is None; the services wake sessions
    through the Step Functions orchestrator when a state machine is configured."""
    settings = settings or AwsSettings()  # required fields come from the environment
    clients = clients or AwsClients()
    clock = clock or SystemClock()
    resources = DynamoDbResourceStore(table_name=settings.resources_table, dynamodb_client=clients.dynamodb)
    events = DynamoDbEventStore(
        table_name=settings.events_table,
        bucket_name=settings.spill_bucket,
        dynamodb_client=clients.dynamodb,
        s3_client=clients.s3,
        clock=clock,
    )
    notifier = PollingNotifier(settings.stream_poll_seconds)
    orchestrator = None
    if settings.state_machine_arn:
        orchestrator = StepFunctionsOrchestrator(
            state_machine_arn=settings.state_machine_arn,
            resources=resources,
            events=events,
            sfn_client=clients.stepfunctions,
        )
    svc = Services(resources, clock, orchestrator)
    provisioner = (
        LambdaSandboxProvisioner(function_name=settings.provisioner_function, lambda_client=clients.lambda_)
        if settings.provisioner_function
        else None
    )
    work_settings = WorkSettings(
        lease_ttl_seconds=settings.work_lease_ttl_seconds,
        start_timeout_seconds=settings.sandbox_start_timeout_seconds,
        api_url=settings.sandbox_api_url or settings.api_url,
    )
    # Launches run in the request's thread: a Lambda freezes threads left running after its response.
    work = WorkService(svc, events, notifier, work_settings, provisioner, background_launch=False)
    sessions = SessionService(svc, events, notifier)
    # Speculative hands and stop-on-delete need a provisioner; without one, the ModelTurn Lambda provisions.
    sessions.work = work if provisioner is not None else None
    return Runtime(
        settings=settings,
        resources=resources,
        events=events,
        notifier=notifier,
        clock=clock,
        keys=KeyService(resources, clock),
        agents=AgentService(svc),
        environments=EnvironmentService(svc),
        sessions=sessions,
        orchestrator=None,
        work=work,
    )


def model_api_key(settings: AwsSettings, *, secrets_client: SecretsManagerClient | None = None) -> str | None:
    """The model API key: from Secrets Manager through Powertools Parameters (cached 5 min), else ANTHROPIC_API_KEY.

    The secret is either the bare key or a JSON object with an `api_key` field.
    """
    if not settings.model_api_key_secret_arn:
        return os.environ.get("ANTHROPIC_API_KEY")
    from aws_lambda_powertools.utilities import parameters

    kwargs: dict[str, Any] = {"max_age": SECRET_MAX_AGE_SECONDS}
    if secrets_client is not None:
        kwargs["boto3_client"] = secrets_client
    raw = str(parameters.get_secret(settings.model_api_key_secret_arn, **kwargs)).strip()
    if raw.startswith("{"):
        value = json.loads(raw).get("api_key")
        if not isinstance(value, str) or not value:
            raise ValueError(f"secret {settings.model_api_key_secret_arn} is JSON without a string `api_key` field")
        return value
    return raw


@dataclass
class AwsDeps:
    """What a task Lambda needs, built once per container on the first invocation."""

    settings: AwsSettings
    clients: AwsClients
    runtime: Runtime
    model: ModelClient | None = None
    _harness: HarnessDeps | None = field(default=None, repr=False)

    @property
    def harness(self) -> HarnessDeps:
        if self._harness is None:
            model = self.model or AnthropicMessagesModel(
                api_key=model_api_key(self.settings, secrets_client=self.clients.secretsmanager),
                base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
                timeout=self.settings.model_timeout_seconds,
            )
            rt = self.runtime
            hands = rt.work.ensure_for_session if rt.work is not None else None
            self._harness = HarnessDeps(
                rt.events, rt.resources, model, rt.clock, self.settings, rt.notifier, hands=hands
            )
        return self._harness


def build_aws_deps(
    settings: AwsSettings | None = None, *, clients: AwsClients | None = None, model: ModelClient | None = None
) -> AwsDeps:
    settings = settings or AwsSettings()
    clients = clients or AwsClients()
    return AwsDeps(settings, clients, build_aws_runtime(settings, clients=clients), model)


@functools.cache
def lambda_deps() -> AwsDeps:
    """The container's deps (handlers call this; tests call `lambda_deps.cache_clear()` between environments)."""
    return build_aws_deps()
