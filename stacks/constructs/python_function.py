"""PythonFunction: one Python Lambda as this platform runs them (ARM64, own role and log group, SnapStart where it
pays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    Annotations,
    ArnFormat,
    BundlingOptions,
    Duration,
    IgnoreMode,
    ILocalBundling,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import PlatformConfig
from stacks.lambda_bundle import LOCK_FILES, REPO_ROOT, build_bundle
from stacks.nag import acknowledge

ALIAS_NAME = "live"  # every caller invokes this alias (SnapStart restores published versions only)

# The Lambda asset's source is an allowlist of the repo: the application package, the thin entry points, and the lock
# (so a dependency change changes the asset's hash). Everything else (cdk.out, .venv, tests, .git, .data, .build,
# bench, docs, sandbox_task, caches) stays out. Gitignore syntax, last match wins.
LAMBDA_ASSET_EXCLUDE = [
    "*",
    "!managed_agents/",
    "!managed_agents/**",
    "!functions/",
    "!functions/**",
    *(f"!{name}" for name in LOCK_FILES),
    "__pycache__/",
    "*.pyc",
]


def runtime_for(config: PlatformConfig) -> lambda_.Runtime:
    return {
        "3.12": lambda_.Runtime.PYTHON_3_12,
        "3.13": lambda_.Runtime.PYTHON_3_13,
        "3.14": lambda_.Runtime.PYTHON_3_14,
    }[config.python_runtime]


@jsii.implements(ILocalBundling)
class LocalBundling:
    """CDK local bundling: builds the bundle on this machine (stacks/lambda_bundle.py); Docker is never used."""

    def __init__(self, python: str) -> None:
        self.python = python

    def try_bundle(self, output_dir: str, *_: Any, **__: Any) -> bool:
        build_bundle(Path(output_dir), self.python)
        return True


def lambda_code(config: PlatformConfig) -> lambda_.Code:
    """The one code asset every Python Lambda of the stack shares (same package, different handlers).

    `bundleDependencies` (default on): the dependencies, the code and its bytecode, built without Docker. Off: the
    application code alone, as it is in the repo (for templates that are not deployed)."""
    bundling = None
    if config.bundle_dependencies:
        runtime = runtime_for(config)
        bundling = BundlingOptions(
            # Never run: local bundling always builds (or fails with what to install). The image is a required field.
            image=runtime.bundling_image,
            local=LocalBundling(config.python_runtime),
            command=["false"],
        )
    return lambda_.Code.from_asset(
        str(REPO_ROOT), exclude=LAMBDA_ASSET_EXCLUDE, ignore_mode=IgnoreMode.GIT, bundling=bundling
    )


class PythonFunction(Construct):
    """A Python Lambda with its own least-privilege role, an explicit log group and a `live` alias.

    Every version is published and SnapStart (where on) applies to published versions only, so every caller (API
    Gateway, Step Functions, EventBridge, other Lambdas) invokes `alias`, never `$LATEST`. Active X-Ray tracing on.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        code: lambda_.Code,
        handler: str,
        description: str,
        memory_mb: int | None = None,
        timeout: Duration = Duration.seconds(60),
        environment: dict[str, str] | None = None,
        layers: list[lambda_.ILayerVersion] | None = None,
        function_name: str | None = None,
        snap_start: bool = False,
    ) -> None:
        """`function_name`: a fixed physical name, for a function whose ARN others must know without a reference
        (a reference would close a dependency cycle); see `alias_arn`. `snap_start`: a function whose cold start a
        user waits for (the API, ModelTurn), when the `snapStart` setting is on. A SnapStart version's snapshot is
        billed per GB-second for as long as the version is active, idle or not (bench/aws_cost_model.py)."""
        super().__init__(scope, id_)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=config.log_retention,
            removal_policy=config.removal,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description} (Lambda execution role)",
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        base_env = {
            "POWERTOOLS_SERVICE_NAME": "managed-agents",
            "POWERTOOLS_METRICS_NAMESPACE": "ManagedAgents",
        }
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            function_name=function_name,
            runtime=runtime_for(config),
            architecture=lambda_.Architecture.ARM_64,
            code=code,
            handler=handler,
            memory_size=memory_mb or config.function_memory_mb,
            timeout=timeout,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start and config.snap_start else None,
            # A deploy that publishes a new version deletes the previous one (not kept, as CDK does by default):
            # callers use the alias, and a superseded SnapStart version would go on paying for its snapshot.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
            environment={**base_env, **(environment or {})},
            layers=layers,
        )
        # SnapStart restores from the published version; the alias is the stable ARN every caller invokes.
        self.alias = lambda_.Alias(self, "Live", alias_name=ALIAS_NAME, version=self.function.current_version)
        Annotations.of(self.function).acknowledge_warning(
            "@aws-cdk/aws-lambda:snapStartRequirePublish",
            "Every version is published (current_version) and callers invoke only the live alias.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions (AWS service "
            "authorization reference); the statement is the one CDK adds for active tracing.",
            "Resource::*",
        )
        if config.python_runtime != "3.14":
            acknowledge(
                self.function,
                "AwsSolutions-L1",
                f"Python {config.python_runtime} is the pinned runtime (house style: Lambda and the Fargate sandbox on "
                "the same interpreter, with SnapStart); change it with the pythonRuntime context value.",
            )

    @staticmethod
    def alias_arn(scope: Construct, function_name: str) -> str:
        """The `live` alias ARN of the function with this fixed name, built from the name alone (no reference)."""
        return Stack.of(scope).format_arn(
            service="lambda",
            resource="function",
            resource_name=f"{function_name}:{ALIAS_NAME}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def add_environment(self, name: str, value: str) -> None:
        self.function.add_environment(name, value)

    def grant_invoke(self, grantee: iam.IGrantable) -> None:
        """Invoke through the alias only (SnapStart-published version), not $LATEST or other versions."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid=f"Invoke{self.node.id}",
                actions=["lambda:InvokeFunction"],
                resources=[self.alias.function_arn],
            )
        )
