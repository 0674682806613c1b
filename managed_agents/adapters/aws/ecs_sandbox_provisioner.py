"""The AWS sandbox provisioner: one ECS Fargate task per `cloud` session, running the official worker.

The task definition (stacks/constructs/sandbox.py) has no task role and no secrets. RunTask overrides the sandbox
container's environment with exactly what `managed_agents/sandbox/entrypoint.py` reads when
`MANAGED_AGENTS_SANDBOX_CONFIG` is not `stdin`: the work item's coordinates, its secret (the session-scoped work token,
the only credential the sandbox ever holds), the API URL, the idle timeout and the environment's packages (compressed
when that is shorter: RunTask overrides are capped at 8,192 characters; a launch whose overrides would not fit fails
with a message that says so). The init container's environment gets the API URL, the work item's ids and, when the
session has file or repository resources, the materialization token that reads them (sandbox/materials.py: the
sandbox container never holds it; the overrides carry one token, never the resources themselves, so their number
does not count against the cap). Tasks are tagged with their session and work item and started by the session id
(`startedBy`, at most 36 characters), so `stop` finds them without any state of its own.

Egress follows the environment's `config.networking`: RunTask attaches the security group of its policy
(`unrestricted`: all outbound traffic; `limited`: the deployment's limited group, outbound TCP 443 only in the CDK
stack). A security group filters addresses and ports, never hostnames: `allowed_hosts`, `allow_mcp_servers` and
`allow_package_managers` are not enforced on Fargate (docs/deploy-aws.md says what `limited` does and does not do).

A Fargate task ends on its own (idle timeout, a crash); nobody calls `on_exit` for it. A dead sandbox is noticed by
its work item's lease (no heartbeats) and, for the call in flight, by the tool-wait timeout of the session run.

`LambdaSandboxProvisioner` is the same port for callers without ECS rights (the ModelTurn Lambda): it invokes the
provisioner Lambda (functions/provisioner/handler.py), which runs an `EcsSandboxProvisioner`.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from managed_agents.adapters.aws.lambda_invoke import DEFAULT_RETRY, InvokeRefused, InvokeRetry, invoke
from managed_agents.ports import SandboxExited, SandboxLaunch
from managed_agents.sandbox.entrypoint import PACKED_PACKAGES_PREFIX
from managed_agents.sandbox.materials import INIT_TOKEN_ENV
from managed_agents.settings import EcsSandboxSettings

if TYPE_CHECKING:
    from mypy_boto3_ecs.client import ECSClient
    from mypy_boto3_lambda.client import LambdaClient

SESSION_TAG = "managed-agents:session"
WORK_TAG = "managed-agents:work"
NETWORKING_TAG = "managed-agents:networking"
NETWORKING_POLICIES = ("unrestricted", "limited")
MAX_STARTED_BY = 36
MAX_OVERRIDES_CHARS = 8192  # RunTask `overrides` (ECS API reference, TaskOverride)
INIT_CONTAINER = "init"  # the task definition's init container (stacks/constructs/sandbox.py), sandbox/materials.py


class SandboxLaunchFailed(RuntimeError):
    """RunTask did not start a task; the message says why in words a user can act on."""


def encode_packages(packages: Mapping[str, Any]) -> str:
    """The environment's packages as the entrypoint reads them: JSON, or `zlib:` + base64 of the zlib-compressed JSON
    when that is shorter (a long list; RunTask overrides are capped at 8,192 characters, ECS API reference)."""
    plain = json.dumps(packages, separators=(",", ":"))
    packed = PACKED_PACKAGES_PREFIX + base64.b64encode(zlib.compress(plain.encode(), 9)).decode()
    return packed if len(packed) < len(plain) else plain


def task_environment(spec: SandboxLaunch, *, api_url: str, idle_seconds: float) -> list[dict[str, str]]:
    """The sandbox container's environment overrides: the work coordinates and secret, nothing of the platform's."""
    values = {
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_WORK_ID": spec.work_id,
        "ANTHROPIC_ENVIRONMENT_ID": spec.environment_id,
        "ANTHROPIC_SESSION_ID": spec.session_id,
        "ANTHROPIC_WORK_SECRET": spec.secret,
        "MANAGED_AGENTS_SANDBOX_IDLE_SECONDS": f"{idle_seconds:g}",
        "MANAGED_AGENTS_SANDBOX_PACKAGES": encode_packages(spec.packages),
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def init_environment(spec: SandboxLaunch, *, api_url: str) -> list[dict[str, str]]:
    """The init container's environment overrides (sandbox/materials.py): where to read the session's resources and
    the materialization token that reads them (absent: nothing to put in place). The sandbox container never gets
    the token: a container's overrides are its own."""
    values = {
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_ENVIRONMENT_ID": spec.environment_id,
        "ANTHROPIC_WORK_ID": spec.work_id,
    }
    if spec.init_token:
        values[INIT_TOKEN_ENV] = spec.init_token
    return [{"name": k, "value": v} for k, v in values.items()]


def check_overrides_size(overrides: Mapping[str, Any]) -> None:
    """RunTask refuses overrides over 8,192 characters (their JSON); say so before ECS answers with a bare error."""
    size = len(json.dumps(overrides, separators=(",", ":")))
    if size > MAX_OVERRIDES_CHARS:
        raise SandboxLaunchFailed(
            f"the environment's packages do not fit in an ECS task launch: its settings take {size} characters "
            f"compressed, over ECS's {MAX_OVERRIDES_CHARS} for RunTask overrides; list fewer packages (or install "
            "them in a custom sandbox image, the sandboxImage setting)"
        )


class EcsSandboxProvisioner:
    def __init__(
        self,
        *,
        cluster: str,
        task_definition: str,
        container: str = "sandbox",
        init_container: str = INIT_CONTAINER,
        subnets: Sequence[str] = (),
        security_groups: Sequence[str] = (),
        limited_security_groups: Sequence[str] | None = None,
        assign_public_ip: str = "DISABLED",
        api_url: str | None = None,
        idle_seconds: float = 300.0,
        capacity_provider: str = "FARGATE",
        ecs_client: ECSClient | None = None,
    ) -> None:
        self.cluster = cluster
        self.task_definition = task_definition
        self.container = container
        self.init_container = init_container
        self.subnets = [s for s in subnets if s]
        self.security_groups = [g for g in security_groups if g]
        # None: one set of groups for every sandbox (a deployment without a separate limited group)
        limited = security_groups if limited_security_groups is None else limited_security_groups
        self.limited_security_groups = [g for g in limited if g]
        self.assign_public_ip = assign_public_ip
        self.api_url = api_url
        self.idle_seconds = idle_seconds
        self.capacity_provider = capacity_provider
        self._ecs = ecs_client

    @property
    def ecs(self) -> ECSClient:
        if self._ecs is None:
            import boto3

            self._ecs = boto3.client("ecs")
        return self._ecs

    @property
    def isolation(self) -> str:
        return "ECS Fargate task per session (own VM, no task role, no secrets; egress by security group)"

    def security_groups_for(self, networking: Mapping[str, Any]) -> list[str]:
        """The security groups of a sandbox under the environment's networking policy (absent: `unrestricted`,
        the API's default); an unknown policy is refused rather than given some egress."""
        policy = networking.get("type") or "unrestricted"
        if policy == "limited":
            return self.limited_security_groups
        if policy == "unrestricted":
            return self.security_groups
        raise SandboxLaunchFailed(
            f"the environment's networking type {policy!r} is not one of {', '.join(NETWORKING_POLICIES)}"
        )

    def launch(self, spec: SandboxLaunch, on_exit: SandboxExited) -> None:
        """RunTask; raises SandboxLaunchFailed when no task started. `on_exit` is not called (see the module doc)."""
        api_url = self.api_url or spec.api_url
        if not api_url:
            raise SandboxLaunchFailed("the provisioner does not know the API URL sandboxes call back")
        groups = self.security_groups_for(spec.networking)
        policy = str(spec.networking.get("type") or "unrestricted")
        overrides = {
            "containerOverrides": [
                {
                    "name": self.container,
                    "environment": task_environment(spec, api_url=api_url, idle_seconds=self.idle_seconds),
                },
                {"name": self.init_container, "environment": init_environment(spec, api_url=api_url)},
            ]
        }
        check_overrides_size(overrides)
        kwargs: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "count": 1,
            "startedBy": spec.session_id[:MAX_STARTED_BY],
            "overrides": overrides,
            "tags": [
                {"key": SESSION_TAG, "value": spec.session_id},
                {"key": WORK_TAG, "value": spec.work_id},
                {"key": NETWORKING_TAG, "value": policy},
            ],
            "enableECSManagedTags": True,
        }
        if self.capacity_provider == "FARGATE":
            kwargs["launchType"] = "FARGATE"
        else:  # Spot: a capacity provider strategy instead of a launch type (the cluster has the Fargate providers)
            kwargs["capacityProviderStrategy"] = [{"capacityProvider": self.capacity_provider, "weight": 1}]
        if self.subnets:
            kwargs["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": self.subnets,
                    "securityGroups": groups,
                    "assignPublicIp": self.assign_public_ip,
                }
            }
        try:
            out = self.ecs.run_task(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SandboxLaunchFailed(
                f"ECS RunTask failed ({error.get('Code', 'error')}): {error.get('Message', exc)}"
            ) from exc
        if not out.get("tasks"):
            reasons = "; ".join(
                f"{f.get('reason', 'unknown')}{' (' + f['detail'] + ')' if f.get('detail') else ''}"
                for f in out.get("failures", [])
            )
            raise SandboxLaunchFailed(f"ECS RunTask started no task: {reasons or 'no reason given'}")

    def stop(self, session_id: str, work_id: str | None) -> None:
        """StopTask for the session's running tasks (only the one serving `work_id`, when given)."""
        try:
            arns = self.ecs.list_tasks(
                cluster=self.cluster, startedBy=session_id[:MAX_STARTED_BY], desiredStatus="RUNNING"
            )["taskArns"]
            if not arns:
                return
            tasks = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns, include=["TAGS"])["tasks"]
        except ClientError as exc:
            raise SandboxLaunchFailed(f"could not list the sandbox tasks of session {session_id}: {exc}") from exc
        for task in tasks:
            tags = {t.get("key"): t.get("value") for t in task.get("tags", [])}
            if tags.get(SESSION_TAG) != session_id or (work_id is not None and tags.get(WORK_TAG) != work_id):
                continue
            try:
                self.ecs.stop_task(cluster=self.cluster, task=task["taskArn"], reason="managed-agents: work stopped")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("InvalidParameterException",):
                    raise

    def dispose(self, session_id: str) -> None:
        """Nothing to remove: a task's storage ends with the task."""


class LambdaSandboxProvisioner:
    """Launches and stops sandboxes through the provisioner Lambda (synchronous invocation: a failure is raised).
    Refusals Lambda answers before running the function (throttling, SnapStart not ready, ...) are retried with
    backoff (lambda_invoke.py)."""

    def __init__(
        self,
        *,
        function_name: str,
        lambda_client: LambdaClient | None = None,
        retry: InvokeRetry = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.function_name = function_name
        self._lambda = lambda_client
        self.retry = retry
        self._sleep = sleep

    @property
    def client(self) -> LambdaClient:
        if self._lambda is None:
            import boto3

            self._lambda = boto3.client("lambda")
        return self._lambda

    @property
    def isolation(self) -> str:
        return "ECS Fargate task per session, started by the provisioner Lambda"

    def launch(self, spec: SandboxLaunch, on_exit: SandboxExited) -> None:
        self._invoke({"action": "launch", "launch": asdict(spec)})

    def stop(self, session_id: str, work_id: str | None) -> None:
        self._invoke({"action": "stop", "session_id": session_id, "work_id": work_id})

    def dispose(self, session_id: str) -> None:
        """Nothing to remove (see EcsSandboxProvisioner.dispose)."""

    def _invoke(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        try:
            out = invoke(self.client, self.function_name, body, retry=self.retry, sleep=self._sleep)
        except InvokeRefused as exc:
            raise SandboxLaunchFailed(f"could not invoke the sandbox provisioner: {exc.describe()}") from exc
        if out.get("FunctionError"):
            body = out["Payload"].read()
            try:
                message = str(json.loads(body).get("errorMessage") or body[:500])
            except (ValueError, AttributeError):
                message = body[:500].decode(errors="replace")
            raise SandboxLaunchFailed(message)


# -- the provisioner Lambda's requests (the contract between LambdaSandboxProvisioner and functions/provisioner) -----


class LaunchSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    work_id: str = Field(min_length=1)
    environment_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    secret: str = Field(min_length=1)
    api_url: str = ""
    packages: dict[str, Any] = Field(default_factory=dict)
    networking: dict[str, Any] = Field(default_factory=dict)
    init_token: str = ""

    def to_launch(self) -> SandboxLaunch:
        return SandboxLaunch(**self.model_dump())


class LaunchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["launch"]
    launch: LaunchSpec


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["stop"]
    session_id: str = Field(min_length=1)
    work_id: str | None = None


ProvisionerRequest = Annotated[LaunchRequest | StopRequest, Field(discriminator="action")]
PROVISIONER_REQUEST: TypeAdapter[LaunchRequest | StopRequest] = TypeAdapter(ProvisionerRequest)


def serve_provisioner_request(req: LaunchRequest | StopRequest, provisioner: EcsSandboxProvisioner) -> dict[str, Any]:
    """What the provisioner Lambda does with one request; errors propagate (the caller sees a FunctionError)."""
    if isinstance(req, LaunchRequest):
        provisioner.launch(req.launch.to_launch(), _no_exit)
        return {"action": "launch", "session_id": req.launch.session_id, "work_id": req.launch.work_id}
    provisioner.stop(req.session_id, req.work_id)
    return {"action": "stop", "session_id": req.session_id, "work_id": req.work_id}


def _no_exit(work_id: str, code: int, detail: str) -> None:
    """Fargate tasks end asynchronously; the work lease notices a dead one."""


def provisioner_from_settings(
    settings: EcsSandboxSettings, *, ecs_client: ECSClient | None = None
) -> EcsSandboxProvisioner:
    return EcsSandboxProvisioner(
        cluster=settings.ecs_cluster,
        task_definition=settings.sandbox_task_definition,
        container=settings.sandbox_container,
        subnets=[s.strip() for s in settings.sandbox_subnets.split(",")],
        security_groups=[settings.sandbox_security_group] if settings.sandbox_security_group else [],
        limited_security_groups=(
            [settings.sandbox_limited_security_group] if settings.sandbox_limited_security_group else None
        ),
        assign_public_ip=settings.sandbox_assign_public_ip,
        api_url=settings.api_url,
        idle_seconds=settings.sandbox_idle_seconds,
        capacity_provider=settings.sandbox_capacity_provider,
        ecs_client=ecs_client,
    )
