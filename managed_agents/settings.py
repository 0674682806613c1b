"""Every environment variable the platform reads, declared once (style: settings.py).

The model endpoint and key are the official SDK's own variables, `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL`
(any Anthropic-compatible endpoint); the SDK reads them itself. Everything else is `MANAGED_AGENTS_*`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MANAGED_AGENTS_"


class HarnessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    max_tokens: int = Field(8192, description="max_tokens of each model request")
    model_max_attempts: int = Field(4, ge=1, description="attempts per model request before retries_exhausted")
    retry_base_seconds: float = Field(1.0, ge=0, description="first backoff after a retryable model error")
    retry_max_seconds: float = Field(30.0, ge=0, description="cap of the exponential backoff")
    model_timeout_seconds: float = Field(600.0, gt=0, description="read timeout of one model request")
    tool_timeout_seconds: float = Field(300.0, gt=0, description="how long a sandbox tool call may wait for its result")
    web_search_url: str | None = Field(
        None,
        description="web_search provider: a SearXNG-compatible JSON endpoint, called as GET URL?q=QUERY&format=json"
        " (unset: web_search is not offered)",
    )
    compaction_threshold_tokens: int = Field(
        160_000, ge=1000, description="compact the context when a request would exceed this many tokens"
    )
    usage_event_seconds: float = Field(
        60.0,
        gt=0,
        description="a session.usage snapshot after a model request when the last is this old (budgeted"
        " sessions get one after every request)",
    )
    outcome_heartbeat_seconds: float = Field(
        10.0, gt=0, description="span.outcome_evaluation_ongoing every this long while an outcome's grader runs"
    )
    compaction_max_per_turn: int = Field(
        8, ge=1, description="compactions one turn may make before it ends in compaction_limit_reached_error"
    )


class ServerSettings(HarnessSettings):
    data_dir: str = Field(".data", description="embedded runtime: where the SQLite file and admin key live")
    sse_ping_seconds: float = Field(15.0, gt=0, description="keep-alive interval of event streams")
    sse_max_seconds: float = Field(0.0, ge=0, description="close streams cleanly after this long (0 = never)")
    max_concurrent_sessions: int = Field(256, ge=1, description="harness worker threads of the embedded runtime")
    step_slots: int = Field(
        2,
        ge=1,
        description="embedded runtime: harness steps of a process that run at once between their waits on the model"
        " or a tool (adapters/local/in_process_orchestrator.py StepSlots; the others wait their turn, at most"
        " step_slot_wait_seconds)",
    )
    step_slot_wait_seconds: float = Field(
        1.0, ge=0, description="how long a harness step waits at most for a step slot before it runs anyway"
    )
    request_priority_seconds: float = Field(
        1.0,
        ge=0,
        description="embedded runtime: how long a harness step or an event stream's write waits at most while the"
        " server answers requests (requests first under a burst; 0 = no wait)",
    )
    log_level: str = Field("INFO")
    # the API's door (api/edge.py, api/server.py): limits checked before a request reaches its handler
    max_request_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="largest request body (413 above it); a route may set its own (api/edge.py MAX_BODY_EXTRA)",
    )
    max_file_bytes: int = Field(
        500 * 1024 * 1024,
        ge=1,
        description="largest file the Files API stores (413 above it); on AWS a direct upload is also bounded by"
        " max_request_bytes (the Lambda request cap)",
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="embedded server: largest request line plus headers (431 above it)"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="embedded server: a connection must send a complete request head within this"
    )
    keep_alive_seconds: float = Field(
        75.0,
        gt=0,
        description="embedded server: an idle kept-alive connection is closed after this long; longer than clients'"
        " own idle expiry (httpx's, hence the anthropic SDK's, is 5 s), so a client never sends a request on a"
        " connection the server is closing at that moment",
    )
    request_deadline_seconds: float = Field(
        30.0,
        gt=0,
        description="a request's handler must finish within this: a read is then a 504, a write still waiting for a"
        " thread or the database a 503 with nothing done (streams and long polls are not bounded by it)",
    )
    api_read_threads: int = Field(32, ge=1, description="worker threads for the API's reads (GET)")
    api_write_threads: int = Field(
        16,
        ge=1,
        description="worker threads for the API's writes: apart from reads' so that reads never queue behind them",
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0, description="a request body must arrive within this after its headers (400 request_body_timeout)"
    )
    # sandboxes (hands): the work queue and the embedded provisioner of `cloud` environments
    sandbox_api_url: str | None = Field(
        None, description="the API base URL sandboxes call back (serve sets it from --host/--port when unset)"
    )
    work_lease_ttl_seconds: int = Field(60, ge=2, le=3600, description="lease of a work item between heartbeats")
    run_lease_seconds: float = Field(
        15.0,
        ge=0.3,
        le=3600,
        description="embedded runtime: a session's run lease (serve --workers N); a process that dies holding it"
        " has its sessions taken over by another once it expires; renewed every third of it",
    )
    sandbox_isolation: str = Field(
        "auto",
        pattern="^(auto|bubblewrap|none)$",
        description="cloud sandboxes: auto, bubblewrap when installed, else they are refused; bubblewrap, required at"
        " start-up; none, the operator opts in to unisolated sandboxes (tools run as the server's user)",
    )
    sandbox_idle_seconds: float = Field(300.0, gt=0, description="a sandbox stops after this long idle")
    sandbox_start_timeout_seconds: float = Field(
        900.0, gt=0, description="a cloud sandbox must start heartbeating within this (package installs included)"
    )
    sandbox_start_delay_seconds: float = Field(0.0, ge=0, description="artificial provisioning delay (benchmarks)")
    deployment_max_jitter_seconds: float = Field(
        10.0, ge=0, le=300, description="a scheduled deployment run starts up to this long after its cron instant"
    )
    deployment_catch_up_seconds: float = Field(
        86_400.0, ge=0, description="embedded: cron ticks missed while the server was down fire if at most this old"
    )
    deployment_run_grace_seconds: float = Field(
        60.0,
        ge=0,
        description="a deployment run claimed this long ago without its outcome (its fire was cut off) is finished by"
        " the periodic pass (embedded: the scheduler; AWS: the reaper function, every minute)",
    )
    webhook_allow_loopback: bool = Field(True, description="deliver webhooks to loopback addresses (local development)")
    webhook_allow_private: bool = Field(
        False, description="deliver webhooks to private, link-local and reserved addresses"
    )
    webhook_retry_base_seconds: float = Field(5.0, ge=0, description="first retry delay of a failed webhook delivery")
    webhook_retry_max_seconds: float = Field(3600.0, ge=0, description="cap of the webhook retry backoff")
    webhook_max_attempts: int = Field(16, ge=1, le=100, description="a delivery's attempts before it fails")
    webhook_poll_seconds: float = Field(0.25, gt=0, description="embedded: the deliverer looks for work this often")
    deployment_tick_seconds: float = Field(1.0, gt=0, description="embedded: how often to look for due ticks")


# -- the AWS deployment (read by managed_agents/aws_runtime.py; the CDK stack sets them, stacks/config.py) -----------
RESOURCES_TABLE_ENV = f"{ENV_PREFIX}RESOURCES_TABLE"
EVENTS_TABLE_ENV = f"{ENV_PREFIX}EVENTS_TABLE"
SPILL_BUCKET_ENV = f"{ENV_PREFIX}SPILL_BUCKET"
FILES_BUCKET_ENV = f"{ENV_PREFIX}FILES_BUCKET"
STATE_MACHINE_ARN_ENV = f"{ENV_PREFIX}STATE_MACHINE_ARN"
STREAM_POLL_SECONDS_ENV = f"{ENV_PREFIX}STREAM_POLL_SECONDS"
MODEL_API_KEY_SECRET_ARN_ENV = "MODEL_API_KEY_SECRET_ARN"
API_URL_ENV = f"{ENV_PREFIX}API_URL"
PROVISIONER_FUNCTION_ENV = f"{ENV_PREFIX}PROVISIONER_FUNCTION"
ECS_CLUSTER_ENV = f"{ENV_PREFIX}ECS_CLUSTER"
SANDBOX_TASK_DEFINITION_ENV = f"{ENV_PREFIX}SANDBOX_TASK_DEFINITION"
SANDBOX_CONTAINER_ENV = f"{ENV_PREFIX}SANDBOX_CONTAINER"
SANDBOX_SUBNETS_ENV = f"{ENV_PREFIX}SANDBOX_SUBNETS"
SANDBOX_SECURITY_GROUP_ENV = f"{ENV_PREFIX}SANDBOX_SECURITY_GROUP"
SANDBOX_LIMITED_SECURITY_GROUP_ENV = f"{ENV_PREFIX}SANDBOX_LIMITED_SECURITY_GROUP"
ADMIN_KEY_SECRET_ARN_ENV = f"{ENV_PREFIX}ADMIN_KEY_SECRET_ARN"
SANDBOX_ASSIGN_PUBLIC_IP_ENV = f"{ENV_PREFIX}SANDBOX_ASSIGN_PUBLIC_IP"
MCP_PROXY_FUNCTION_ENV = f"{ENV_PREFIX}MCP_PROXY_FUNCTION"
VAULT_SECRET_PREFIX_ENV = f"{ENV_PREFIX}VAULT_SECRET_PREFIX"
VAULT_KMS_KEY_ARN_ENV = f"{ENV_PREFIX}VAULT_KMS_KEY_ARN"
EVENT_BUS_NAME_ENV = f"{ENV_PREFIX}EVENT_BUS_NAME"
WEBHOOK_QUEUE_URL_ENV = f"{ENV_PREFIX}WEBHOOK_QUEUE_URL"
WEBHOOK_SECRET_PREFIX_ENV = f"{ENV_PREFIX}WEBHOOK_SECRET_PREFIX"
DEPLOYMENT_SCHEDULE_GROUP_ENV = f"{ENV_PREFIX}DEPLOYMENT_SCHEDULE_GROUP"
DEPLOYMENT_SCHEDULE_ROLE_ARN_ENV = f"{ENV_PREFIX}DEPLOYMENT_SCHEDULE_ROLE_ARN"
DEPLOYMENT_SCHEDULE_TARGET_ARN_ENV = f"{ENV_PREFIX}DEPLOYMENT_SCHEDULE_TARGET_ARN"
DEPLOYMENT_SCHEDULE_DEAD_LETTER_ARN_ENV = f"{ENV_PREFIX}DEPLOYMENT_SCHEDULE_DEAD_LETTER_ARN"


# What the API Lambda accepts: below Lambda's 6,291,456-byte invocation payload limit by the room API Gateway's proxy
# event takes besides the body (headers twice, the request context, JSON escaping of the body: a few KB to tens of KB).
LAMBDA_MAX_REQUEST_BYTES = 6_000_000


class AwsSettings(ServerSettings):
    """The API, task and trigger Lambdas (the fields a Lambda does not use stay unset)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True)

    webhook_allow_loopback: bool = Field(False, description="AWS: the web_fetch policy as is, loopback refused")
    event_bus_name: str | None = Field(
        None, description="the platform's EventBridge bus: session lifecycle events are put on it (unset: not)"
    )
    webhook_queue_url: str | None = Field(
        None, description="the SQS queue of webhook deliveries (functions/webhooks; unset: no webhook is sent)"
    )
    deployment_schedule_group: str | None = Field(
        None, description="the EventBridge Scheduler group of deployment schedules (unset: deployments are manual)"
    )
    deployment_schedule_role_arn: str | None = Field(None, description="the role deployment schedules assume")
    deployment_schedule_target_arn: str | None = Field(None, description="what they invoke: the trigger function")
    deployment_schedule_dead_letter_arn: str | None = Field(None, description="where undeliverable runs go")
    resources_table: str = Field(min_length=3, description="DynamoDB resources table")
    events_table: str = Field(min_length=3, description="DynamoDB events table")
    spill_bucket: str = Field(min_length=3, description="S3 bucket of spilled event payloads")
    files_bucket: str | None = Field(
        None,
        description="S3 bucket of the blob store (files, skill archives, outputs); unset: no blob store (the files,"
        " skills and outputs features answer that they are not configured)",
    )
    state_machine_arn: str | None = Field(None, description="the session-run state machine (wake = StartExecution)")
    max_request_bytes: int | None = Field(
        LAMBDA_MAX_REQUEST_BYTES,
        ge=1024,
        description="API Lambda: largest request body (413 above it). A Lambda invocation carries at most 6 MB"
        " (6,291,456 bytes), the request's headers and API Gateway's event fields included, so the body gets less",
    )
    stream_poll_seconds: float = Field(0.5, gt=0, description="event streams re-read the log this often")
    steps_per_model_turn: int = Field(
        32,
        ge=1,
        description="ModelTurn Lambda: harness steps chained in one invocation (while one more model request fits"
        " in its remaining time); each step returned to the state machine instead costs a transition and an invoke",
    )
    tool_wait_inline_seconds: float = Field(
        3.0,
        ge=0,
        description="ModelTurn Lambda: how long it waits in the invocation for the sandbox's built-in tool results"
        " before handing the wait to the state machine (the ToolWait task and its token: 2 transitions and an invoke,"
        " worth about 3.7 s of a 1 GB Lambda); 0 hands every wait over",
    )
    model_api_key_secret_arn: str | None = Field(
        None,
        validation_alias=MODEL_API_KEY_SECRET_ARN_ENV,
        description="Secrets Manager secret with the model API key",
    )
    admin_key_secret_arn: str | None = Field(
        None,
        description="API Lambda: Secrets Manager secret whose value is registered as the admin API key on the first"
        " request (managed_agents/api/admin_bootstrap.py)",
    )
    # sandboxes: the API URL they call back, and how they are started
    api_url: str | None = Field(None, description="the platform API's base URL (sandbox workers call it)")
    provisioner_function: str | None = Field(
        None, description="the provisioner Lambda: callers without ECS rights launch sandboxes through it"
    )
    # vaults: the API only deletes credential secrets; the MCP proxy Lambda alone writes and reads them (vault key)
    mcp_proxy_function: str | None = Field(
        None, description="the MCP proxy Lambda: MCP tools, credential validation, credential secret writes"
    )
    vault_secret_prefix: str | None = Field(
        None, description="Secrets Manager name prefix of vault credential secrets (unset: no vaults)"
    )
    webhook_secret_prefix: str | None = Field(
        None,
        description="Secrets Manager name prefix of webhook signing secrets (unset: kept in the endpoint's record)",
    )


class McpProxyLambdaSettings(BaseSettings):
    """The MCP proxy Lambda: the one reader of vault credential secrets (functions/mcp_proxy)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    resources_table: str = Field(min_length=3, description="DynamoDB resources table (sessions, vault credentials)")
    events_table: str | None = Field(
        None,
        description="DynamoDB events table, where a failed OAuth refresh puts its vault_credential.refresh_failed"
        " webhook item (the webhook outbox; unset: no webhook)",
    )
    vault_secret_prefix: str = Field(min_length=1, description="Secrets Manager name prefix of vault secrets")
    vault_kms_key_arn: str | None = Field(None, description="the KMS key of vault secrets")
    mcp_call_timeout_seconds: float = Field(
        100.0, gt=0, description="longest MCP tools/call (also capped by the invocation's remaining time)"
    )
    mcp_idle_seconds: float = Field(300.0, gt=0, description="a warm MCP connection unused this long is closed")
    mcp_max_connections: int = Field(64, ge=1, description="warm MCP connections kept by one proxy container")


class EcsSandboxSettings(BaseSettings):
    """The provisioner Lambda: where and how sandbox tasks run (ECS RunTask)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    api_url: str | None = Field(None, description="the platform API's base URL (sandbox workers call it)")
    ecs_cluster: str = Field(min_length=1, description="ECS cluster of the sandbox tasks")
    sandbox_task_definition: str = Field(min_length=1, description="the sandbox task definition (family:rev or ARN)")
    sandbox_container: str = Field("sandbox", description="the container of the task definition to override")
    sandbox_subnets: str = Field("", description="comma-separated subnet ids of the sandbox tasks")
    sandbox_security_group: str | None = Field(
        None, description="the security group of sandboxes whose environment's networking is `unrestricted`"
    )
    sandbox_limited_security_group: str | None = Field(
        None,
        description="the security group of sandboxes whose environment's networking is `limited` (unset: the same"
        " group as `unrestricted` ones, i.e. one group for every sandbox)",
    )
    sandbox_assign_public_ip: str = Field("DISABLED", pattern="^(ENABLED|DISABLED)$")
    sandbox_capacity_provider: str = Field(
        "FARGATE",
        pattern="^(FARGATE|FARGATE_SPOT)$",
        description="FARGATE_SPOT: sandboxes on spare capacity at a discount; an interruption (two minutes' notice)"
        " is a lost sandbox: its pending calls get error results and the next call gets a fresh one",
    )
    sandbox_idle_seconds: float = Field(300.0, gt=0, description="a sandbox task stops itself after this long idle")
