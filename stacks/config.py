"""Deployment settings read from CDK context, and the names the stack shares with the Lambda code.

Every setting has a default here, so `python app.py` synthesizes with no context at all. Override any of them with
`cdk deploy -c key=value` (strings; numbers and booleans are parsed) or in the `context` block of cdk.json.

| context key | default | what it sets |
| --- | --- | --- |
| `stackName` | `ManagedAgents` | CloudFormation stack name |
| `prefix` | `managed-agents` | prefix of every physical name (secrets, state machine, bus, log groups, cluster, |
| | | the provisioner function `{prefix}-provisioner`) |
| `logRetentionDays` | `30` | retention of every log group (a CloudWatch value: 1, 3, 5, 7, 14, 30, 60, 90, ...) |
| `removalPolicy` | `retain` | `retain` keeps the data (tables, buckets, secrets, key, log groups) on `cdk destroy` |
| | | and on updates that remove it, never after a failed first deploy (`RetainExceptOnCreate`; the |
| | | deletion-protected tables: `Retain`); `destroy` deletes all of it |
| `pythonRuntime` | `3.13` | Lambda Python runtime (3.12+: SnapStart for Python needs 3.12 or later) |
| `snapStart` | `true` | SnapStart on the API and ModelTurn functions, whose cold starts users wait for (every |
| | | function is called through its `live` alias); `false`: none (regions without SnapStart) |
| `bundleDependencies` | `true` | the Lambda asset holds the locked runtime dependencies, built without Docker |
| `lwaLayerArn` | LWA arm64 layer v`lwaLayerVersion` | Lambda Web Adapter layer of the API Lambda |
| `lwaLayerVersion` | `30` | version of the public arm64 LWA layer (account 753240598075) in the deploy region |
| `apiStageName` | `live` | API Gateway stage; the SDK's `base_url` is the stage URL |
| `apiThrottleRate`, `apiThrottleBurst` | `50`, `100` | stage-wide throttling (requests per second, burst) |
| `apiTimeoutSeconds` | `900` | integration timeout of the streamed (SSE) API responses |
| `apiExecutionLogging` | `true` | API Gateway execution logs (ERROR level; creates the account-level CloudWatch role) |
| `wafWebAclArn` | none | a regional WAFv2 web ACL to associate with the API stage |
| `apiMemoryMb`, `modelTurnMemoryMb`, `functionMemoryMb` | `512`, `192`, `256` | Lambda memory sizes (peaks |
| | | measured: API ~85 MB, ModelTurn ~128 MB, the others <= 70 MB; memory also sets the CPU share) |
| `streamMemoryMb` | `128` | memory of the event-stream Lambda (`GET .../events/stream`, peak ~78 MB): an open |
| | | stream is billed for its whole duration while it mostly waits between log reads |
| `modelTurnTimeoutSeconds` | `900` | ModelTurn Lambda timeout (one model request may stream for minutes) |
| `maxTurnsPerExecution` | `50` | continue-as-new: a new execution after this many turns (history limit) |
| `toolHeartbeatSeconds` | `0` | heartbeat of the tool-wait task (0: none; the wait_seconds timeout still applies) |
| `sandboxCpu`, `sandboxMemoryMb` | `1024`, `2048` | Fargate sandbox task size (ARM64) |
| `sandboxSpot` | `false` | `true`: sandboxes run on Fargate Spot, still ARM64 (up to 70% off; an interruption, with |
| | | two minutes' notice, is a lost sandbox: error results for its pending calls, a fresh one next) |
| `sandboxImage` | built from sandbox_task/ | an image URI to use instead of building sandbox_task/Dockerfile |
| | | (linux/arm64) |
| `containerInsights` | `false` | CloudWatch Container Insights on the sandbox cluster (per-task CPU, memory, |
| | | network metrics; billed as custom metrics and log ingestion while tasks run) |
| `sandboxNetworking` | `unrestricted` | sandbox egress cap: `unrestricted` (each environment's `networking` picks its |
| | | security group: all outbound, or HTTPS 443 only for `limited`) or `limited` (every sandbox 443 only) |
| `vpcId` | none (a new VPC) | an existing VPC (looked up: needs account/region at synth) |
| `natGateways`, `maxAzs` | `0`, `2` | new VPC: 0 NAT gateways puts sandboxes in public subnets with a public IP |
| `anthropicBaseUrl` | none | `ANTHROPIC_BASE_URL` of the ModelTurn Lambda (any Anthropic-compatible endpoint) |
| `harness` | `{}` | model defaults: any `HarnessSettings` field, e.g. `{"max_tokens": 16000}` |
| `triggerDetailType` | `StartSession` | EventBridge `detail-type` that starts a session from an event |
| `nag` | `true` | run cdk-nag AwsSolutions checks at synth (findings fail the synth) |
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Node

from managed_agents.aws_runtime import (
    EVENTS_TABLE_ENV,
    MODEL_API_KEY_SECRET_ARN_ENV,
    RESOURCES_TABLE_ENV,
    SPILL_BUCKET_ENV,
    STATE_MACHINE_ARN_ENV,
)
from managed_agents.settings import (
    DEPLOYMENT_SCHEDULE_DEAD_LETTER_ARN_ENV,
    DEPLOYMENT_SCHEDULE_GROUP_ENV,
    DEPLOYMENT_SCHEDULE_ROLE_ARN_ENV,
    DEPLOYMENT_SCHEDULE_TARGET_ARN_ENV,
    ENV_PREFIX,
    EVENT_BUS_NAME_ENV,
    FILES_BUCKET_ENV,
    WEBHOOK_QUEUE_URL_ENV,
    WEBHOOK_SECRET_PREFIX_ENV,
    HarnessSettings,
)

# Lambda environment variable names. The first five are the AWS composition root's (managed_agents/aws_runtime.py);
# the rest have no reader yet and are proposed here for the code that will read them.
# TODO(settings): all of them belong in managed_agents/settings.py (style: env vars are declared once there).
ENV_EVENTS_TABLE = EVENTS_TABLE_ENV
ENV_RESOURCES_TABLE = RESOURCES_TABLE_ENV
ENV_SPILL_BUCKET = SPILL_BUCKET_ENV
ENV_FILES_BUCKET = FILES_BUCKET_ENV
ENV_STATE_MACHINE_ARN = STATE_MACHINE_ARN_ENV
ENV_MODEL_KEY_SECRET_ARN = MODEL_API_KEY_SECRET_ARN_ENV
ENV_ADMIN_KEY_SECRET_ARN = f"{ENV_PREFIX}ADMIN_KEY_SECRET_ARN"
ENV_SSE_MAX_SECONDS = f"{ENV_PREFIX}SSE_MAX_SECONDS"  # ServerSettings.sse_max_seconds
ENV_VAULT_SECRET_PREFIX = f"{ENV_PREFIX}VAULT_SECRET_PREFIX"
ENV_VAULT_KMS_KEY_ARN = f"{ENV_PREFIX}VAULT_KMS_KEY_ARN"
ENV_MCP_PROXY_FUNCTION = f"{ENV_PREFIX}MCP_PROXY_FUNCTION"
ENV_PROVISIONER_FUNCTION = f"{ENV_PREFIX}PROVISIONER_FUNCTION"
ENV_ECS_CLUSTER = f"{ENV_PREFIX}ECS_CLUSTER"
ENV_SANDBOX_TASK_DEFINITION = f"{ENV_PREFIX}SANDBOX_TASK_DEFINITION"
ENV_SANDBOX_CONTAINER = f"{ENV_PREFIX}SANDBOX_CONTAINER"
ENV_SANDBOX_SUBNETS = f"{ENV_PREFIX}SANDBOX_SUBNETS"
ENV_SANDBOX_SECURITY_GROUP = f"{ENV_PREFIX}SANDBOX_SECURITY_GROUP"
ENV_SANDBOX_LIMITED_SECURITY_GROUP = f"{ENV_PREFIX}SANDBOX_LIMITED_SECURITY_GROUP"
ENV_SANDBOX_ASSIGN_PUBLIC_IP = f"{ENV_PREFIX}SANDBOX_ASSIGN_PUBLIC_IP"
ENV_SANDBOX_CAPACITY_PROVIDER = f"{ENV_PREFIX}SANDBOX_CAPACITY_PROVIDER"
ENV_API_URL = f"{ENV_PREFIX}API_URL"
ENV_DEPLOYMENT_SCHEDULE_GROUP = DEPLOYMENT_SCHEDULE_GROUP_ENV
ENV_EVENT_BUS_NAME = EVENT_BUS_NAME_ENV
ENV_WEBHOOK_QUEUE_URL = WEBHOOK_QUEUE_URL_ENV
ENV_WEBHOOK_SECRET_PREFIX = WEBHOOK_SECRET_PREFIX_ENV
ENV_DEPLOYMENT_SCHEDULE_ROLE_ARN = DEPLOYMENT_SCHEDULE_ROLE_ARN_ENV
ENV_DEPLOYMENT_SCHEDULE_TARGET_ARN = DEPLOYMENT_SCHEDULE_TARGET_ARN_ENV
ENV_DEPLOYMENT_SCHEDULE_DEAD_LETTER_ARN = DEPLOYMENT_SCHEDULE_DEAD_LETTER_ARN_ENV

# Regions the stack deploys to as it is: Lambda SnapStart (every Python Lambda, on published versions; Lambda guide,
# "Supported Regions": every commercial region but Asia Pacific (New Zealand, Taipei)) and the public arm64 Lambda Web
# Adapter layer of the API functions (account 753240598075; awslabs/aws-lambda-web-adapter publishes it in these
# commercial regions, not in China, GovCloud or the newest regions). cfn-lint checks the template in each of them
# (tests/infra/test_app_synth_checks.py). Elsewhere in the commercial partition: `-c lwaLayerArn=` a layer you publish
# from the adapter's release (and `-c snapStart=false` where SnapStart is missing).
SUPPORTED_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2", "ap-southeast-1",
    "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-east-1", "me-south-1", "me-central-1", "af-south-1",
)  # fmt: skip

# Persisted names (compatibility data: changing one needs a migration note). ASL state names of "session run":
STATE_MODEL_TURN = "ModelTurn"
STATE_NEXT_STEP = "NextStep"
STATE_RETRY_WAIT = "RetryWait"
STATE_TOOL_WAIT = "ToolWait"
STATE_CONTINUE_AS_NEW = "ContinueAsNew"
STATE_CONTINUED = "Continued"
STATE_PARKED = "Parked"
STATE_UNKNOWN_OUTCOME = "UnknownOutcome"
STATE_REPORT_FAILURE = "ReportFailure"
STATE_FAILED = "Failed"
# ModelTurn outcomes the Choice state routes on.
OUTCOMES = ("run_again", "retry_after", "wait_for_tools", "parked")
# The sandbox container's name in the task definition (the provisioner overrides its environment).
SANDBOX_CONTAINER_NAME = "sandbox"
SANDBOX_INIT_CONTAINER_NAME = "init"  # puts session resources in place (managed_agents/sandbox/materials.py)
# The resources table's TTL attribute (epoch seconds): items that should expire (work leases, task tokens) set it.
RESOURCES_TTL_ATTRIBUTE = "expires_at"

# CloudWatch Logs retention periods (days) and their aws_logs.RetentionDays member names.
_LOG_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH", 60: "TWO_MONTHS",
    90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS", 1827: "FIVE_YEARS",
    2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")


class ConfigError(ValueError):
    """A context value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class PlatformConfig:
    stack_name: str = "ManagedAgents"
    prefix: str = "managed-agents"
    log_retention_days: int = 30
    removal_policy: str = "retain"
    python_runtime: str = "3.13"
    snap_start: bool = True
    bundle_dependencies: bool = True
    lwa_layer_arn: str | None = None
    lwa_layer_version: int = 30
    api_stage_name: str = "live"
    api_throttle_rate: int = 50
    api_throttle_burst: int = 100
    api_timeout_seconds: int = 900
    api_execution_logging: bool = True
    waf_web_acl_arn: str | None = None
    api_memory_mb: int = 512
    stream_memory_mb: int = 128
    # ModelTurn mostly waits for the model's stream: its peak (bench/lambda_cold_path.py, ~128 MB) with half again of
    # headroom for the folded states it keeps (aws_runtime.LAMBDA_STATE_CACHE_SESSIONS)
    model_turn_memory_mb: int = 192
    function_memory_mb: int = 256
    model_turn_timeout_seconds: int = 900
    max_turns_per_execution: int = 50
    tool_heartbeat_seconds: int = 0
    sandbox_cpu: int = 1024
    sandbox_memory_mb: int = 2048
    sandbox_image: str | None = None
    sandbox_spot: bool = False
    container_insights: bool = False
    sandbox_networking: str = "unrestricted"
    vpc_id: str | None = None
    nat_gateways: int = 0
    max_azs: int = 2
    anthropic_base_url: str | None = None
    harness: dict[str, Any] = field(default_factory=dict)
    trigger_detail_type: str = "StartSession"
    nag: bool = True

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigError(f"prefix: {self.prefix!r} must be 3-32 lowercase letters, digits or '-'")
        if self.log_retention_days not in _LOG_RETENTION:
            raise ConfigError(f"logRetentionDays: {self.log_retention_days} is not one of {sorted(_LOG_RETENTION)}")
        if self.removal_policy not in ("retain", "destroy"):
            raise ConfigError(f"removalPolicy: {self.removal_policy!r} must be 'retain' or 'destroy'")
        if self.python_runtime not in ("3.12", "3.13", "3.14"):
            raise ConfigError(f"pythonRuntime: {self.python_runtime!r} must be 3.12, 3.13 or 3.14 (SnapStart)")
        if self.sandbox_networking not in ("unrestricted", "limited"):
            raise ConfigError(f"sandboxNetworking: {self.sandbox_networking!r} must be 'unrestricted' or 'limited'")
        if self.max_turns_per_execution < 1:
            raise ConfigError("maxTurnsPerExecution: must be at least 1")
        if not 1 <= self.model_turn_timeout_seconds <= 900 or not 1 <= self.api_timeout_seconds <= 900:
            raise ConfigError("modelTurnTimeoutSeconds/apiTimeoutSeconds: 1..900 (the Lambda maximum)")
        for key, mb in (("apiMemoryMb", self.api_memory_mb), ("streamMemoryMb", self.stream_memory_mb)):
            if not 128 <= mb <= 10240:
                raise ConfigError(f"{key}: {mb} must be 128..10240 (Lambda memory, MB)")
        if self.tool_heartbeat_seconds < 0:
            raise ConfigError("toolHeartbeatSeconds: must be 0 (off) or positive")
        if self.nat_gateways < 0 or not 1 <= self.max_azs <= 6:
            raise ConfigError("natGateways must be >= 0 and maxAzs 1..6")
        # Fargate's valid CPU/memory pairs (MiB); ARM64 supports the same table.
        valid_memory = {
            256: range(512, 2049, 512),
            512: range(1024, 4097, 1024),
            1024: range(2048, 8193, 1024),
            2048: range(4096, 16385, 1024),
            4096: range(8192, 30721, 1024),
            8192: range(16384, 61441, 4096),
            16384: range(32768, 122881, 8192),
        }
        if self.sandbox_cpu not in valid_memory or self.sandbox_memory_mb not in valid_memory[self.sandbox_cpu]:
            raise ConfigError(
                f"sandboxCpu/sandboxMemoryMb: {self.sandbox_cpu}/{self.sandbox_memory_mb} is not a Fargate size"
            )
        unknown = set(self.harness) - set(HarnessSettings.model_fields)
        if unknown:
            raise ConfigError(
                f"harness: unknown settings {sorted(unknown)}; known: {sorted(HarnessSettings.model_fields)}"
            )
        HarnessSettings.model_validate(self.harness)  # same bounds as the runtime (raises ValidationError)

    @property
    def destroy_on_removal(self) -> bool:
        return self.removal_policy == "destroy"

    @property
    def removal(self) -> RemovalPolicy:
        """What `cdk destroy` (or an update that drops it) does with a resource holding data. Retained resources have
        no fixed physical name, so a retained one never blocks the next deploy; and a failed first deploy deletes what
        it created (RetainExceptOnCreate), so its retry starts clean."""
        return RemovalPolicy.DESTROY if self.destroy_on_removal else RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE

    @property
    def table_removal(self) -> RemovalPolicy:
        """The tables: deletion-protected while retained, so CloudFormation could not delete one after a failed
        create either (a rollback would fail); `Retain` keeps a failed first deploy's empty tables instead
        (docs/deploy-aws.md says how to remove them)."""
        return RemovalPolicy.DESTROY if self.destroy_on_removal else RemovalPolicy.RETAIN

    @property
    def log_retention(self) -> logs.RetentionDays:
        return logs.RetentionDays[_LOG_RETENTION[self.log_retention_days]]

    def harness_environment(self) -> dict[str, str]:
        """The `harness` context as the MANAGED_AGENTS_* variables HarnessSettings reads."""
        return {f"{ENV_PREFIX}{name.upper()}": str(value) for name, value in sorted(self.harness.items())}

    @classmethod
    def from_context(cls, node: Node) -> PlatformConfig:
        """Read every setting from CDK context (`-c key=value` arrives as a string; cdk.json values keep their type)."""
        values: dict[str, Any] = {}
        for name, default in _fields_with_defaults().items():
            raw = node.try_get_context(_camel(name))
            if raw is None:
                continue
            values[name] = _coerce(_camel(name), raw, default)
        return cls(**values)


def _fields_with_defaults() -> dict[str, Any]:
    defaults = PlatformConfig()
    return {f.name: getattr(defaults, f.name) for f in fields(PlatformConfig)}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _coerce(key: str, raw: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "1", "yes"):
            return True
        if str(raw).lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}: {raw!r} is not a boolean")
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: {raw!r} is not an integer") from exc
    if isinstance(default, dict):
        value = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a JSON object")
        return value
    return str(raw)
