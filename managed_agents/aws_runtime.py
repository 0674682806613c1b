"""The AWS composition root: the same `Runtime` as the embedded one, on DynamoDB, S3 and Step Functions.

Environment (set by the CDK stack on the API and task Lambdas):

| variable | what |
| --- | --- |
| `MANAGED_AGENTS_RESOURCES_TABLE` | the resources table (`create_resources_table` schema) |
| `MANAGED_AGENTS_EVENTS_TABLE` | the events table (`create_events_table` schema) |
| `MANAGED_AGENTS_SPILL_BUCKET` | S3 bucket for event payloads over the item limit |
| `MANAGED_AGENTS_FILES_BUCKET` | S3 bucket of the blob store (files, skills, outputs); unset: no blob store |
| `MANAGED_AGENTS_STATE_MACHINE_ARN` | the "session run" state machine; unset: no orchestrator (nothing runs turns) |
| `MANAGED_AGENTS_STREAM_POLL_SECONDS` | how often an open event stream re-reads the log (default 0.5) |
| `MODEL_API_KEY_SECRET_ARN` | Secrets Manager secret holding the model API key (ModelTurn Lambda only) |
| `ANTHROPIC_BASE_URL` | any Anthropic-compatible endpoint (the SDK's own variable), optional |
| `MANAGED_AGENTS_API_URL` | the API's base URL, which sandbox workers call back |
| `MANAGED_AGENTS_PROVISIONER_FUNCTION` | the provisioner Lambda; set: `cloud` sessions get Fargate sandboxes |
| `MANAGED_AGENTS_ADMIN_KEY_SECRET_ARN` | API Lambda: the admin key secret, registered on the first request |
| `MANAGED_AGENTS_MCP_PROXY_FUNCTION` | the MCP proxy Lambda; set: MCP toolsets work and vault secrets can be written |
| `MANAGED_AGENTS_VAULT_SECRET_PREFIX` | Secrets Manager prefix of vault secrets; set: the vault API is served |
| `MANAGED_AGENTS_WEBHOOK_SECRET_PREFIX` | Secrets Manager prefix of webhook signing secrets (API, deliverer) |

plus the sandbox variables and every `MANAGED_AGENTS_*` harness and server setting: all of them are declared in
`managed_agents/settings.py` (`AwsSettings`); the names are re-exported here for stacks/config.py.

The API Lambda needs no state machine ARN at import time and the task Lambdas need no model until their first
invocation, so nothing here calls AWS when imported (SnapStart snapshots stay free of secrets).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore
from managed_agents.adapters.aws.dynamodb_resource_store import DynamoDbResourceStore
from managed_agents.adapters.aws.ecs_sandbox_provisioner import LambdaSandboxProvisioner
from managed_agents.adapters.aws.lambda_mcp_gateway import LambdaMcpGateway
from managed_agents.adapters.aws.polling_notifier import PollingNotifier
from managed_agents.adapters.aws.s3_blob_store import S3BlobStore
from managed_agents.adapters.aws.step_functions_orchestrator import StepFunctionsOrchestrator
from managed_agents.adapters.publishing_event_store import PublishingEventStore
from managed_agents.domain.clock import Clock, SystemClock
from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.domain.events import JsonObject
from managed_agents.harness.state_cache import StateCache
from managed_agents.harness.turn import HarnessDeps
from managed_agents.lambda_init import init_runs_ahead
from managed_agents.ports import CancelToken, ModelClient, ModelResponse, SecretPatch, StreamListener
from managed_agents.services.work import WorkSettings
from managed_agents.settings import (
    EVENTS_TABLE_ENV,
    MODEL_API_KEY_SECRET_ARN_ENV,
    RESOURCES_TABLE_ENV,
    SPILL_BUCKET_ENV,
    STATE_MACHINE_ARN_ENV,
    STREAM_POLL_SECONDS_ENV,
    AwsSettings,
)
from managed_agents.wiring import Adapters, Runtime, compose

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
    "DeferredModel",
    "build_aws_deps",
    "build_aws_runtime",
    "lambda_deps",
    "model_api_key",
    "prime_clients",
    "prime_lambda_deps",
    "sdk_model",
]

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_stepfunctions.client import SFNClient

    from managed_agents.adapters.aws.webhook_queue import SqsWebhookQueue
    from managed_agents.services.webhooks import WebhookDeliverer

SECRET_MAX_AGE_SECONDS = 300
# Folded session states a warm ModelTurn container keeps (harness/state_cache.py). A long session's state holds its
# whole conversation (megabytes with large tool results), and the function has 192 MB (stacks/config.py): a few,
# enough for the sessions whose turns come back to one container.
LAMBDA_STATE_CACHE_SESSIONS = 8
# Earlier messages' JSON a warm ModelTurn container keeps (adapters/anthropic_model.py `keep_encoded_messages`):
# the embedded server's 16 MB would also keep up to that much of evicted sessions' messages alive in 192 MB; those
# cached states' transcripts are what it can reuse
LAMBDA_ENCODED_MESSAGES_BUDGET = 2 * 1024 * 1024


@dataclass
class AwsClients:
    """boto3 clients, created on first use unless injected (tests pass moto-backed ones)."""

    dynamodb: DynamoDBClient | None = None
    s3: S3Client | None = None
    stepfunctions: SFNClient | None = None
    secretsmanager: SecretsManagerClient | None = None
    lambda_: LambdaClient | None = None
    scheduler: Any = None  # EventBridge Scheduler (deployment schedules); created on first use
    events: Any = None  # EventBridge (lifecycle events on the bus); created on first use
    sqs: Any = None  # the webhook delivery queue; created on first use

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
    # (a resource's webhook events are written to the events table with the write that causes them)
    resources = DynamoDbResourceStore(
        table_name=settings.resources_table, dynamodb_client=clients.dynamodb, outbox_table=settings.events_table
    )
    events = DynamoDbEventStore(
        table_name=settings.events_table,
        bucket_name=settings.spill_bucket,
        dynamodb_client=clients.dynamodb,
        s3_client=clients.s3,
        clock=clock,
    )
    orchestrator = None
    if settings.state_machine_arn:
        orchestrator = StepFunctionsOrchestrator(
            state_machine_arn=settings.state_machine_arn,
            resources=resources,
            events=events,
            sfn_client=clients.stepfunctions,
        )
    provisioner = (
        LambdaSandboxProvisioner(function_name=settings.provisioner_function, lambda_client=clients.lambda_)
        if settings.provisioner_function
        else None
    )
    vault_secrets, gateway = None, None
    if settings.vault_secret_prefix:
        # The API neither reads nor writes vault secrets: writing a value encrypted with the vault key needs
        # kms:Decrypt, which the key allows the MCP proxy alone, so new secrets, merges and validation all go through
        # the MCP proxy Lambda. The API only deletes them (DeleteSecret/DescribeSecret use no key): the vault service
        # calls nothing else on this store.
        from managed_agents.adapters.aws.secrets_manager_store import SecretsManagerSecretStore  # imports boto3

        vault_secrets = SecretsManagerSecretStore(prefix=settings.vault_secret_prefix, client=clients.secretsmanager)
        gateway = mcp_gateway(settings, clients)
    webhook_secrets = None
    if settings.webhook_secret_prefix:  # (the account's Secrets Manager key: stacks/constructs/secrets.py)
        from managed_agents.adapters.aws.secrets_manager_store import SecretsManagerSecretStore  # imports boto3

        webhook_secrets = SecretsManagerSecretStore(
            prefix=settings.webhook_secret_prefix, client=clients.secretsmanager
        )
    schedules = None
    if settings.deployment_schedule_group:
        from managed_agents.adapters.aws.scheduler_deployment_schedules import SchedulerDeploymentSchedules

        schedules = SchedulerDeploymentSchedules(
            client=clients.scheduler,
            group=settings.deployment_schedule_group,
            target_arn=settings.deployment_schedule_target_arn,
            role_arn=settings.deployment_schedule_role_arn,
            dead_letter_arn=settings.deployment_schedule_dead_letter_arn,
        )
    rt = compose(
        settings,
        Adapters(
            resources=resources,
            events=events,
            deployment_schedules=schedules,
            notifier=PollingNotifier(settings.stream_poll_seconds),
            clock=clock,
            blobs=S3BlobStore(bucket=settings.files_bucket, client=clients.s3) if settings.files_bucket else None,
            work=WorkSettings(
                lease_ttl_seconds=settings.work_lease_ttl_seconds,
                start_timeout_seconds=settings.sandbox_start_timeout_seconds,
                api_url=settings.sandbox_api_url or settings.api_url,
                # The provisioner Lambda gives sandboxes its own MANAGED_AGENTS_API_URL: the API Lambda cannot know
                # its URL.
                provisioner_knows_api_url=provisioner is not None,
            ),
            orchestrator=orchestrator,
            provisioner=provisioner,
            # Launches run in the request's thread: a Lambda freezes threads left running after its response.
            background_launch=False,
            # Speculative hands and stop-on-delete need a provisioner; without one, the ModelTurn Lambda provisions.
            speculative_hands=provisioner is not None,
            vault_secrets=vault_secrets,
            webhook_secrets=webhook_secrets,
            credential_secrets=gateway or _NoMcpProxy(),
            prober=gateway,
            # the sandbox task's init container puts session resources in place (sandbox/materials.py)
            init_tokens=True,
            # the events table's stream is the webhook outbox (adapters/aws/webhook_queue.py)
            stream_outbox=True,
        ),
    )
    rt.secrets = vault_secrets
    rt.sessions.states = StateCache(max_sessions=LAMBDA_STATE_CACHE_SESSIONS)  # a tool result reads the log's tail
    if settings.event_bus_name:  # lifecycle events on the bus, put by whichever function appended them
        from managed_agents.adapters.aws.eventbridge_lifecycle import EventBridgeLifecyclePublisher

        publisher = EventBridgeLifecyclePublisher(bus_name=settings.event_bus_name, client=clients.events)
        cast(PublishingEventStore, rt.events).observers.append(publisher)
    return rt


def mcp_gateway(settings: AwsSettings, clients: AwsClients) -> LambdaMcpGateway | None:
    """The MCP proxy Lambda, when one is deployed: the harness's MCP gateway, and the vault service's secret writer
    and credential prober."""
    if not settings.mcp_proxy_function:
        return None
    return LambdaMcpGateway(function_name=settings.mcp_proxy_function, lambda_client=clients.lambda_)


class _NoMcpProxy:
    """Without the MCP proxy Lambda no vault secret can be written: the API may not use the vault key, and a partial
    update would have to read the stored secret."""

    def put_secret(self, name: str, value: Mapping[str, str]) -> None:
        raise ServiceUnavailable(
            "storing a credential's secret needs the MCP proxy Lambda, the only user of the vault key"
            " (MANAGED_AGENTS_MCP_PROXY_FUNCTION is not set)"
        )

    def merge_update(self, name: str, patch: SecretPatch) -> bool:
        raise ServiceUnavailable(
            "updating a credential's secret needs the MCP proxy Lambda, the only reader of vault secrets"
            " (MANAGED_AGENTS_MCP_PROXY_FUNCTION is not set)"
        )


def model_api_key(settings: AwsSettings, *, secrets_client: SecretsManagerClient | None = None) -> str | None:
    """The model API key: from Secrets Manager through Powertools Parameters (cached 5 min), else ANTHROPIC_API_KEY.

    The secret is either the bare key or a JSON object with an `api_key` field.
    """
    if not settings.model_api_key_secret_arn:
        return os.environ.get("ANTHROPIC_API_KEY")
    from aws_lambda_powertools.utilities import parameters

    from managed_agents.adapters.aws import botocore_log_redaction

    botocore_log_redaction.install()  # the key stays out of botocore's DEBUG lines
    arn = settings.model_api_key_secret_arn
    if secrets_client is None:
        fetched: object = parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS)
    else:  # (get_secret would pass a `boto3_client` keyword on to GetSecretValue as an SDK option)
        fetched = parameters.SecretsProvider(boto3_client=secrets_client).get(arn, max_age=SECRET_MAX_AGE_SECONDS)
    raw = str(fetched).strip()
    if raw.startswith("{"):
        value = json.loads(raw).get("api_key")
        if not isinstance(value, str) or not value:
            raise ValueError(f"secret {settings.model_api_key_secret_arn} is JSON without a string `api_key` field")
        return value
    return raw


class DeferredModel:
    """The task Lambdas' model client: the SDK is imported and its client made on the first model request.

    ToolWait builds the same HarnessDeps as ModelTurn but never calls the model, so it no longer imports the SDK
    (about a second on its first invocation). The key is resolved before (`AwsDeps.harness`), so a key that cannot be
    read still fails the invocation before the turn appends anything.
    """

    def __init__(self, build: Callable[[], ModelClient]) -> None:
        self._build = build
        self._model: ModelClient | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._model is not None

    def model(self) -> ModelClient:
        with self._lock:
            if self._model is None:
                self._model = self._build()
            return self._model

    def stream_message(
        self, request: JsonObject, *, cancel: CancelToken | None = None, on_event: StreamListener | None = None
    ) -> ModelResponse:
        return self.model().stream_message(request, cancel=cancel, on_event=on_event)


@dataclass
class AwsDeps:
    """What a task Lambda needs, built once per container on the first invocation."""

    settings: AwsSettings
    clients: AwsClients
    runtime: Runtime
    model: ModelClient | None = None
    _harness: HarnessDeps | None = field(default=None, repr=False)

    @functools.cached_property
    def mcp(self) -> LambdaMcpGateway | None:
        return mcp_gateway(self.settings, self.clients)

    @functools.cached_property
    def webhooks(self) -> tuple[WebhookDeliverer, SqsWebhookQueue]:
        """The webhook functions' deliverer (the embedded one's code, without an outbox: the stream is it) and the
        delivery queue (adapters/aws/webhook_queue.py)."""
        from managed_agents.adapters.aws.webhook_queue import SqsWebhookQueue
        from managed_agents.services.webhooks import WebhookDeliverer

        if not self.settings.webhook_queue_url:
            raise RuntimeError("MANAGED_AGENTS_WEBHOOK_QUEUE_URL is not set: this function cannot deliver webhooks")
        rt = self.runtime
        deliverer = WebhookDeliverer(rt.webhooks.svc, None, rt.webhooks)
        return deliverer, SqsWebhookQueue(queue_url=self.settings.webhook_queue_url, client=self.clients.sqs)

    @property
    def harness(self) -> HarnessDeps:
        if self._harness is None:
            model = self.model
            if model is None:
                api_key = model_api_key(self.settings, secrets_client=self.clients.secretsmanager)
                model = DeferredModel(functools.partial(sdk_model, api_key, self.settings.model_timeout_seconds))
            rt = self.runtime
            hands = rt.work.ensure_for_session if rt.work is not None else None
            self._harness = HarnessDeps(
                rt.events,
                rt.resources,
                model,
                rt.clock,
                self.settings,
                rt.notifier,
                hands=hands,
                mcp=self.mcp,
                # a warm container's next ModelTurn of a session reads only the events logged since its last one;
                # a few sessions' states, not the embedded server's 1024: ModelTurn runs in 192 MB
                states=StateCache(max_sessions=LAMBDA_STATE_CACHE_SESSIONS),
                files=rt.files.read if rt.files is not None else None,
                # a session's child threads run in executions of their own (harness/threads.py)
                wake=rt.sessions.svc.orchestrator.wake if rt.sessions.svc.orchestrator is not None else None,
            )
        return self._harness


def sdk_model(api_key: str | None, timeout: float) -> ModelClient:
    """The model on the official SDK (imports it: ModelTurn only), at ANTHROPIC_BASE_URL when set."""
    from managed_agents.adapters.anthropic_model import AnthropicMessagesModel, keep_encoded_messages

    keep_encoded_messages(LAMBDA_ENCODED_MESSAGES_BUDGET)
    return AnthropicMessagesModel(
        api_key=api_key, base_url=os.environ.get("ANTHROPIC_BASE_URL") or None, timeout=timeout
    )


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


def prime_clients(rt: Runtime) -> None:
    """Create the boto3 clients of the session stores (DynamoDB) and of the orchestrator (Step Functions, where
    sessions are woken) now rather than on their first request."""
    events = rt.events.inner if isinstance(rt.events, PublishingEventStore) else rt.events
    for store in (events, rt.resources):
        if isinstance(store, DynamoDbEventStore | DynamoDbResourceStore):
            store.dynamodb.meta.service_model  # noqa: B018 -- touching the property creates the client
    if isinstance(rt.sessions.svc.orchestrator, StepFunctionsOrchestrator):
        rt.sessions.svc.orchestrator.sfn.meta.service_model  # noqa: B018


# What the model SDK imports on its first request rather than at `import anthropic`: httpx2's transport
# (httpcore2, truststore), h11, anyio's asyncio backend and the OpenTelemetry trace propagator. A name a later SDK no
# longer uses is skipped.
MODEL_REQUEST_MODULES = ("httpcore2", "h11", "anyio._backends._asyncio", "opentelemetry.propagate")


def prime_lambda_deps(*, model_sdk: bool = False, task_tokens: bool = False) -> None:
    """At an ahead-of-time init (SnapStart, provisioned concurrency), do what the first invocation would otherwise
    pay for: build the container's deps and their boto3 clients (DynamoDB; Step Functions where sessions are woken,
    or with `task_tokens` where task tokens are answered), and with `model_sdk`, in a function that has a model key
    (ModelTurn), the Secrets Manager client the key is read with, the Lambda clients of the sandbox provisioner and
    the MCP proxy, and the model SDK with what its first request imports. An on-demand init skips this (its first
    invocation follows at once and would pay the same), and so do tests and tools that import a handler.

    Nothing here sends a request or reads a secret (the model key is read on the first invocation), so the snapshot
    holds no secret: creating a boto3 client loads its service model and resolves credentials.
    """
    if not init_runs_ahead():
        return
    deps = lambda_deps()
    prime_clients(deps.runtime)
    if task_tokens:
        deps.clients.sfn().meta.service_model  # noqa: B018
    if model_sdk and (deps.settings.model_api_key_secret_arn or os.environ.get("ANTHROPIC_API_KEY")):
        _prime_model_turn(deps)


def _prime_model_turn(deps: AwsDeps) -> None:
    if deps.settings.model_api_key_secret_arn:
        import boto3
        from aws_lambda_powertools.utilities import parameters  # noqa: F401 -- model_api_key's reader

        from managed_agents.adapters.aws import botocore_log_redaction

        botocore_log_redaction.install()
        if deps.clients.secretsmanager is None:
            deps.clients.secretsmanager = boto3.client("secretsmanager")
    provisioner = deps.runtime.work.provisioner if deps.runtime.work is not None else None
    for function in (provisioner, deps.mcp):
        if isinstance(function, LambdaSandboxProvisioner | LambdaMcpGateway):
            function.client.meta.service_model  # noqa: B018
    import managed_agents.adapters.anthropic_model  # noqa: F401 -- importing the SDK is the ~1 s worth snapshotting

    for name in MODEL_REQUEST_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
