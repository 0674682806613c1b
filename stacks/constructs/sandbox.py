"""Sandbox: the VPC, the ECS cluster and the Fargate task definition of the per-session sandbox (official worker).

The task definition has NO task role (the worker holds no AWS credentials at all) and NO secrets; its execution role
only pulls the image and writes the container's logs. The provisioner Lambda passes the session-scoped work token
and the API URL as container environment overrides at RunTask time. Egress follows the session's environment
(`config.networking`): one security group per policy, capped by `sandboxNetworking`.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, IgnoreMode, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import SANDBOX_CONTAINER_NAME, SANDBOX_INIT_CONTAINER_NAME, PlatformConfig
from stacks.constructs.python_function import REPO_ROOT
from stacks.nag import acknowledge

# The image's build context is the repo root restricted to what sandbox_task/Dockerfile copies (the lock: the SDK's
# version).
SANDBOX_IMAGE_EXCLUDE = [
    "*",
    "!sandbox_task/",
    "!sandbox_task/**",
    "!pyproject.toml",
    "!uv.lock",
    "!managed_agents/",
    "!managed_agents/sandbox/",
    "!managed_agents/sandbox/entrypoint.py",
    "!managed_agents/sandbox/materials.py",
]
# The task volumes the init container fills and the sandbox container uses (sandbox/materials.py): name → path
SANDBOX_VOLUMES = {"session": "/mnt/session", "workspace": "/workspace"}


class Sandbox(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        removal = config.removal
        retention = config.log_retention

        if config.vpc_id:
            self.vpc: ec2.IVpc = ec2.Vpc.from_lookup(self, "Vpc", vpc_id=config.vpc_id)
            self.subnet_selection = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
            self.assign_public_ip = False
        else:
            public_only = config.nat_gateways == 0
            subnets = [ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)]
            if not public_only:
                subnets.append(
                    ec2.SubnetConfiguration(
                        name="sandbox", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                    )
                )
            vpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=config.max_azs,
                nat_gateways=config.nat_gateways,
                subnet_configuration=subnets,
                restrict_default_security_group=False,
            )
            flow_logs = logs.LogGroup(self, "FlowLogs", retention=retention, removal_policy=removal)
            vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))
            self.vpc = vpc
            # Without a NAT gateway the tasks run in public subnets with a public IP (outbound only: the security
            # group admits no inbound traffic); with one they run in private subnets.
            self.assign_public_ip = public_only
            self.subnet_selection = ec2.SubnetSelection(
                subnet_type=ec2.SubnetType.PUBLIC if public_only else ec2.SubnetType.PRIVATE_WITH_EGRESS
            )

        # One security group per networking policy; the provisioner attaches the one of the session's environment at
        # RunTask. `limited`: outbound TCP 443 only. The worker reaches the platform API, the image registry and
        # CloudWatch Logs over HTTPS; DNS goes to the VPC resolver, which security groups do not filter. A security
        # group cannot filter hostnames: allowed_hosts is not enforced (docs/deploy-aws.md).
        self.limited_security_group = ec2.SecurityGroup(
            self,
            "LimitedSecurityGroup",
            vpc=self.vpc,
            description="Sandboxes of limited-networking environments: no inbound; outbound HTTPS (TCP 443) only",
            allow_all_outbound=False,
        )
        self.limited_security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS")
        # `sandboxNetworking=limited` caps every sandbox at the limited group: no unrestricted group exists then.
        self.unrestricted_security_group = self.limited_security_group
        if config.sandbox_networking == "unrestricted":
            self.unrestricted_security_group = ec2.SecurityGroup(
                self,
                "SecurityGroup",
                vpc=self.vpc,
                description="Sandboxes of unrestricted-networking environments: no inbound; all outbound",
                allow_all_outbound=True,
            )

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=f"{config.prefix}-sandboxes",
            vpc=self.vpc,
            container_insights_v2=(
                ecs.ContainerInsights.ENABLED if config.container_insights else ecs.ContainerInsights.DISABLED
            ),
            # FARGATE and FARGATE_SPOT associated: RunTask picks one (sandboxSpot; the provisioner's strategy)
            enable_fargate_capacity_providers=config.sandbox_spot,
        )
        if not config.container_insights:
            acknowledge(
                self.cluster,
                "AwsSolutions-ECS4",
                "Container Insights is a setting (containerInsights=true): its per-task metrics are billed as custom "
                "metrics and log ingestion while sandboxes run, about a tenth of an active session-hour's cost "
                "(bench/aws_cost_model.py); task logs and ECS's own CPU/memory metrics stay on.",
            )
        self.log_group = logs.LogGroup(self, "Logs", retention=retention, removal_policy=removal)
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Sandbox task execution role: pull the sandbox image and write its logs, nothing else",
        )
        self.log_group.grant_write(self.execution_role)
        self.image_uri = self._image(config, stack)

        self.task_definition = ecs.CfnTaskDefinition(
            self,
            "TaskDefinition",
            family=f"{config.prefix}-sandbox",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(config.sandbox_cpu),
            memory=str(config.sandbox_memory_mb),
            runtime_platform=ecs.CfnTaskDefinition.RuntimePlatformProperty(
                cpu_architecture=sandbox_architecture(config), operating_system_family="LINUX"
            ),
            execution_role_arn=self.execution_role.role_arn,
            # No task_role_arn: the sandbox gets no AWS credentials. No secrets, no environment: the provisioner
            # overrides the environment per task with the session-scoped work token and the API URL.
            # Two containers of one image sharing the task volumes: `init` (sandbox/materials.py, not essential)
            # puts the session's resources in place with the materialization token only it is given at RunTask;
            # `sandbox` (the official worker) starts once `init` exited 0 and never holds that token.
            volumes=[ecs.CfnTaskDefinition.VolumeProperty(name=name) for name in SANDBOX_VOLUMES],
            container_definitions=[
                ecs.CfnTaskDefinition.ContainerDefinitionProperty(
                    name=SANDBOX_INIT_CONTAINER_NAME,
                    image=self.image_uri,
                    essential=False,
                    entry_point=["python", "/opt/sandbox/materials.py"],
                    mount_points=self._mount_points(),
                    stop_timeout=30,
                    log_configuration=self._logs(stack, "init"),
                ),
                ecs.CfnTaskDefinition.ContainerDefinitionProperty(
                    name=SANDBOX_CONTAINER_NAME,
                    image=self.image_uri,
                    essential=True,
                    depends_on=[
                        ecs.CfnTaskDefinition.ContainerDependencyProperty(
                            container_name=SANDBOX_INIT_CONTAINER_NAME, condition="SUCCESS"
                        )
                    ],
                    mount_points=self._mount_points(),
                    linux_parameters=ecs.CfnTaskDefinition.LinuxParametersProperty(init_process_enabled=True),
                    stop_timeout=30,
                    log_configuration=self._logs(stack, "sandbox"),
                ),
            ],
        )
        self.task_definition.node.add_dependency(self.execution_role)
        self.subnet_ids = self.vpc.select_subnets(subnet_type=self.subnet_selection.subnet_type).subnet_ids

    @staticmethod
    def _mount_points() -> list[ecs.CfnTaskDefinition.MountPointProperty]:
        return [
            ecs.CfnTaskDefinition.MountPointProperty(source_volume=name, container_path=path, read_only=False)
            for name, path in SANDBOX_VOLUMES.items()
        ]

    def _logs(self, stack: Stack, prefix: str) -> ecs.CfnTaskDefinition.LogConfigurationProperty:
        return ecs.CfnTaskDefinition.LogConfigurationProperty(
            log_driver="awslogs",
            options={
                "awslogs-group": self.log_group.log_group_name,
                "awslogs-region": stack.region,
                "awslogs-stream-prefix": prefix,
            },
        )

    def _image(self, config: PlatformConfig, stack: Stack) -> str:
        if config.sandbox_image:
            repo_arn = _ecr_repository_arn(config.sandbox_image, stack)
            if repo_arn is not None:
                ecr.Repository.from_repository_arn(self, "ImageRepository", repo_arn).grant_pull(self.execution_role)
                self._acknowledge_ecr_token()
            return config.sandbox_image
        asset = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(REPO_ROOT),
            file="sandbox_task/Dockerfile",
            exclude=SANDBOX_IMAGE_EXCLUDE,
            ignore_mode=IgnoreMode.GIT,
            platform=ecr_assets.Platform.LINUX_ARM64,
        )
        asset.repository.grant_pull(self.execution_role)
        self._acknowledge_ecr_token()
        return asset.image_uri

    def _acknowledge_ecr_token(self) -> None:
        acknowledge(
            self.execution_role,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken supports no resource-level permissions; image pulls themselves are limited "
            "to the sandbox image repository.",
            "Resource::*",
        )

    def grant_run(self, role: iam.IRole) -> None:
        """What EcsSandboxProvisioner calls: RunTask of the sandbox task definition in this cluster, ListTasks (how
        `stop` finds a session's tasks), StopTask/DescribeTasks of its tasks, and PassRole of the execution role only
        (there is no task role to pass)."""
        stack = Stack.of(self)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="RunSandboxTask",
                actions=["ecs:RunTask"],
                resources=[self.task_definition.ref],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        tasks_arn = stack.format_arn(
            service="ecs",
            resource="task",
            resource_name=f"{self.cluster.cluster_name}/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ManageSandboxTasks",
                actions=["ecs:StopTask", "ecs:DescribeTasks"],
                resources=[tasks_arn],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        # ListTasks names no task (its resource would be the cluster's container instances, which Fargate has
        # none of): all resources, pinned to this cluster by the ecs:cluster condition.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListSandboxTasks",
                actions=["ecs:ListTasks"],
                resources=["*"],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TagSandboxTasksAtLaunch",
                actions=["ecs:TagResource"],
                resources=[tasks_arn],
                conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PassSandboxExecutionRole",
                actions=["iam:PassRole"],
                resources=[self.execution_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )
        self.tasks_arn = tasks_arn


def _ecr_repository_arn(image: str, stack: Stack) -> str | None:
    """`123456789012.dkr.ecr.eu-west-1.amazonaws.com/name:tag` → the repository ARN; None for other registries."""
    host, _, path = image.partition("/")
    if ".dkr.ecr." not in host or not path:
        return None
    account, _, rest = host.partition(".dkr.ecr.")
    region = rest.split(".", 1)[0]
    name = path.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return f"arn:{stack.partition}:ecr:{region}:{account}:repository/{name}"


def sandbox_architecture(config: PlatformConfig) -> str:
    """ARM64 (Graviton, about 20% cheaper than x86 on demand), on Fargate and on Fargate Spot alike: Spot runs Linux
    ARM64 tasks on platform version 1.4.0 and later (ECS API reference, CapacityProviderStrategyItem), which is what
    LATEST resolves to."""
    return "ARM64"
