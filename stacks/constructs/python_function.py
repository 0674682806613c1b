"""PythonFunction: one Python Lambda as this platform runs them (ARM64, SnapStart, own role and log group)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, ArnFormat, BundlingOptions, Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import PlatformConfig
from stacks.nag import acknowledge

REPO_ROOT = Path(__file__).resolve().parents[2]
ALIAS_NAME = "live"  # every caller invokes this alias (SnapStart restores published versions only)

# The Lambda asset is an allowlist of the repo: the application package and the thin entry points. Everything else
# (cdk.out, .venv, tests, .git, .data, bench, docs, sandbox_task, caches) stays out. Gitignore syntax, last match wins.
LAMBDA_ASSET_EXCLUDE = [
    "*",
    "!managed_agents/",
    "!managed_agents/**",
    "!functions/",
    "!functions/**",
    "__pycache__/",
    "*.pyc",
]

ASSET_OUTPUT = "/asset-output"
TASK_ROOT = "/var/task"  # where Lambda puts the asset


def bytecode_script(out: str) -> str:
    """Shell commands that replace every `__pycache__` under `out` with bytecode compiled once, at build time.

    /var/task is read-only: without bytecode in the asset, every cold start compiles each module it imports from
    source (about twice the import time, see bench/lambda_cold_path.py). `unchecked-hash` pycs hold a source hash
    instead of an mtime and are loaded without looking at the source; the file names they record are the deployed ones
    (`-s {out} -p /var/task`), and PYTHONHASHSEED=0 fixes the order of set constants, so the output does not depend on
    when or where it was built. The interpreter is the build image's, which is the function's runtime (the pyc name
    carries its version: cpython-313).
    """
    return (
        f"find {out} -name __pycache__ -prune -exec rm -rf {{}} +; "
        "PYTHONHASHSEED=0 python -m compileall -q -j 0 --invalidation-mode unchecked-hash "
        f"-s {out} -p {TASK_ROOT} {out}"
    )


# Run inside the Lambda Python build image when `bundleDependencies` is on: the locked runtime dependencies (with the
# `aws` extra) installed as aarch64 wheels for the function's Python, then the project itself, then functions/, then
# their bytecode.
_BUNDLE_SCRIPT = (
    "set -euo pipefail; "
    "pip install --no-cache-dir --quiet uv; "
    "uv export --frozen --no-dev --extra aws --no-emit-project --no-hashes -o /tmp/requirements.txt; "
    f"pip install --no-cache-dir --quiet -r /tmp/requirements.txt -t {ASSET_OUTPUT} "
    "--platform manylinux2014_aarch64 --implementation cp --python-version {python} --only-binary=:all:; "
    f"pip install --no-cache-dir --quiet --no-deps . -t {ASSET_OUTPUT}; "
    f"cp -r functions {ASSET_OUTPUT}/; " + bytecode_script(ASSET_OUTPUT).replace("{", "{{").replace("}", "}}")
)


def runtime_for(config: PlatformConfig) -> lambda_.Runtime:
    return {
        "3.12": lambda_.Runtime.PYTHON_3_12,
        "3.13": lambda_.Runtime.PYTHON_3_13,
        "3.14": lambda_.Runtime.PYTHON_3_14,
    }[config.python_runtime]


def lambda_code(config: PlatformConfig) -> lambda_.Code:
    """The one code asset every Python Lambda of the stack shares (same package, different handlers)."""
    bundling = None
    if config.bundle_dependencies:
        runtime = runtime_for(config)
        bundling = BundlingOptions(
            image=runtime.bundling_image,
            command=["bash", "-c", _BUNDLE_SCRIPT.format(python=config.python_runtime)],
            user="root",
        )
    return lambda_.Code.from_asset(
        str(REPO_ROOT), exclude=LAMBDA_ASSET_EXCLUDE, ignore_mode=IgnoreMode.GIT, bundling=bundling
    )


class PythonFunction(Construct):
    """A Python Lambda with its own least-privilege role, an explicit log group and a `live` alias.

    SnapStart applies to published versions only, so every caller (API Gateway, Step Functions, EventBridge,
    other Lambdas) invokes `alias`, never `$LATEST`. Active X-Ray tracing on.
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
    ) -> None:
        """`function_name`: a fixed physical name, for a function whose ARN others must know without a reference
        (a reference would close a dependency cycle); see `alias_arn`."""
        super().__init__(scope, id_)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=config.log_retention,
            removal_policy=RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN,
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
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if config.snap_start else None,
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
