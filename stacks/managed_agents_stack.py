"""ManagedAgentsStack: composes the constructs, makes the cross-construct grants and emits the outputs.

Who may do what (every role is its own, least privilege; `live` aliases are the only invoke targets). Each grant is
exercised by a scenario run with IAM enforced on these policies (tests/aws/test_iam_enforced_scenarios.py). Events:
read (slices, by id, spilled payloads), append (with `spill`: payloads over the item limit), delete; resources: read
always, and the writes named:

| principal | may |
| --- | --- |
| API Lambda | events read/append/spill/delete, resources put/update/delete, files bucket objects read/write/delete, |
|            | read the admin key secret, invoke the |
|            | provisioner, delete (never read or write) vault secrets, no use of the vault key, invoke the MCP |
|            | proxy (vault secret writes and credential validation), start/stop/describe session-run executions, |
|            | send task results |
| event-stream Lambda | events read, resources read |
| ModelTurn | events read/append/spill, resources put/update, files bucket objects read (file blocks), |
|           | read the model key, invoke the MCP proxy and the |
|           | provisioner |
| ReportFailure | events append, resources update, start/describe session-run executions (a wake that came during |
|               | the failed run starts a new one) |
| ToolWait | events read, resources update, send task results |
| MCP proxy | resources update (a refresh records the token's expiry on the credential), read, create and write |
|           | vault secrets (the only principal whose decrypt the vault key allows, which writes need too) |
| provisioner | Run/List/Stop/DescribeTasks of the sandbox task, PassRole of its execution role |
| triggers | events append/spill, resources put/update, start session-run executions, send to the trigger DLQ |
| reaper | events read/append, resources update, start/describe session-run executions, send task results, |
|        | invoke the provisioner (stop the lost sandbox), manage deployment schedules (re-sync failed syncs) |
| webhook relay | resources put (delivery records), send to the delivery queue; (Lambda, for its event source: |
|               | read the events table's stream, send failed batches to the webhook dead-letter queue) |
| webhook deliverer | resources update (deliveries, an endpoint's disabling), send to the delivery queue; (Lambda, |
|                   | for its event source: receive and delete the queue's messages) |
| sandbox task | nothing: no task role |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from aws_cdk import CfnElement, CfnOutput, Duration, Fn, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks import config as names
from stacks.config import PlatformConfig
from stacks.constructs.api import Api
from stacks.constructs.data import Data
from stacks.constructs.python_function import PythonFunction, lambda_code
from stacks.constructs.sandbox import Sandbox
from stacks.constructs.secrets import Secrets
from stacks.constructs.session_loop import SessionLoop, executions_arn, state_machine_arn
from stacks.constructs.triggers import Triggers
from stacks.constructs.webhooks import DELIVER_TIMEOUT, Webhooks
from stacks.constructs.work_reaper import WorkReaper
from stacks.nag import acknowledge, arn_finding


class ManagedAgentsStack(Stack):
    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        self.config = config
        code = lambda_code(config)

        self.data = Data(self, "Data", config=config)
        self.secrets = Secrets(self, "Secrets", config=config)
        self.sandbox = Sandbox(self, "Sandbox", config=config)
        sm_arn = state_machine_arn(self, config)
        data_env = {
            names.ENV_EVENTS_TABLE: self.data.events_table.table_name,
            names.ENV_RESOURCES_TABLE: self.data.resources_table.table_name,
            names.ENV_SPILL_BUCKET: self.data.spill_bucket.bucket_name,
            # Every function names the one blob bucket (files, skills, outputs); only the roles granted below may use
            # it, so a function that reaches for blobs without a grant fails loudly instead of reading elsewhere.
            names.ENV_FILES_BUCKET: self.data.files_bucket.bucket_name,
        }

        def function(id_: str, handler: str, description: str, **kw: Any) -> PythonFunction:
            return PythonFunction(self, id_, config=config, code=code, handler=handler, description=description, **kw)

        # MCP proxy: the only reader of vault credentials, and the writer of their values (for the API too).
        self.mcp_proxy = function(
            "McpProxy",
            "functions.mcp_proxy.handler.handler",
            "MCP proxy: resolves vault credentials and calls MCP servers and web tools for the harness",
            timeout=Duration.seconds(120),
            environment={
                names.ENV_RESOURCES_TABLE: self.data.resources_table.table_name,
                names.ENV_VAULT_SECRET_PREFIX: self.secrets.vault_prefix,
                names.ENV_VAULT_KMS_KEY_ARN: self.secrets.vault_key.key_arn,
            },
        )
        self.data.grant_resources(self.mcp_proxy.role, write=["update"])  # an OAuth refresh's new expiry
        # a failed refresh's vault_credential.refresh_failed: a webhook item in the events table (the outbox), put in
        # the write that marks the credential
        self.mcp_proxy.add_environment(names.ENV_EVENTS_TABLE, self.data.events_table.table_name)
        self.data.grant_webhook_items(self.mcp_proxy.role)
        self.secrets.allow_vault_reader(self.mcp_proxy.role)

        # Provisioner: one Fargate sandbox task per session. Its fixed name lets the API know its ARN without a
        # reference: the provisioner's environment holds the API URL, so a reference back would be a cycle.
        provisioner_name = f"{config.prefix}-provisioner"
        self.provisioner = function(
            "Provisioner",
            "functions.provisioner.handler.handler",
            "Sandbox provisioner: starts and stops the per-session Fargate task running the official worker",
            timeout=Duration.seconds(60),
            function_name=provisioner_name,
            environment={
                names.ENV_RESOURCES_TABLE: self.data.resources_table.table_name,
                names.ENV_ECS_CLUSTER: self.sandbox.cluster.cluster_name,
                names.ENV_SANDBOX_TASK_DEFINITION: self.sandbox.task_definition.ref,
                names.ENV_SANDBOX_CONTAINER: names.SANDBOX_CONTAINER_NAME,
                names.ENV_SANDBOX_SUBNETS: Fn.join(",", self.sandbox.subnet_ids),
                names.ENV_SANDBOX_SECURITY_GROUP: self.sandbox.unrestricted_security_group.security_group_id,
                names.ENV_SANDBOX_LIMITED_SECURITY_GROUP: self.sandbox.limited_security_group.security_group_id,
                names.ENV_SANDBOX_ASSIGN_PUBLIC_IP: "ENABLED" if self.sandbox.assign_public_ip else "DISABLED",
                names.ENV_SANDBOX_CAPACITY_PROVIDER: "FARGATE_SPOT" if config.sandbox_spot else "FARGATE",
            },
        )
        self.sandbox.grant_run(self.provisioner.role)
        provisioner_arn = PythonFunction.alias_arn(self, provisioner_name)

        # The session loop's Lambdas and the state machine.
        self.model_turn = function(
            "ModelTurn",
            "functions.model_turn.handler.handler",
            "ModelTurn: one harness turn (the code the embedded orchestrator calls)",
            memory_mb=config.model_turn_memory_mb,
            timeout=Duration.seconds(config.model_turn_timeout_seconds),
            snap_start=True,  # a session's time to first token waits for its init (importing the model SDK: ~1 s)
            environment={
                **data_env,
                **config.harness_environment(),
                **({"ANTHROPIC_BASE_URL": config.anthropic_base_url} if config.anthropic_base_url else {}),
                names.ENV_MODEL_KEY_SECRET_ARN: self.secrets.model_key.secret_arn,
                names.ENV_MCP_PROXY_FUNCTION: self.mcp_proxy.alias.function_arn,
                names.ENV_PROVISIONER_FUNCTION: self.provisioner.alias.function_arn,
            },
        )
        self.data.grant_events(self.model_turn.role, read=True, append=True, spill=True)
        # the harness inlines file blocks (image, document) into model requests
        self.data.grant_files(self.model_turn.role, read=True)
        self.data.grant_resources(self.model_turn.role, write=["put", "update"])
        self._grant_read_secret(self.model_turn.role, self.secrets.model_key.secret_arn, "ReadModelKey")
        self.secrets.deny_vault_reads(self.model_turn.role)
        self.mcp_proxy.grant_invoke(self.model_turn.role)
        self.provisioner.grant_invoke(self.model_turn.role)
        # Threads: a coordinator's turn starts its child threads' runs, a child that finished wakes its session's run
        # (one execution per thread, harness/threads.py; a session waiting on tool results is released from ToolWait).
        self.model_turn.add_environment(names.ENV_STATE_MACHINE_ARN, sm_arn)
        self._grant_wake(self.model_turn.role, sm_arn)
        self._grant_describe_runs(self.model_turn.role)
        self._grant_task_response(self.model_turn.role)

        self.report_failure = function(
            "ReportFailure",
            "functions.model_turn.handler.report_failure",
            "ReportFailure: appends session.error and idle when a session run fails",
            timeout=Duration.seconds(60),
            environment={**data_env, names.ENV_STATE_MACHINE_ARN: sm_arn},
        )
        self.data.grant_events(self.report_failure.role, append=True)  # session.error and idle: never spilled
        self.data.grant_resources(self.report_failure.role, write=["update"])
        # It releases the failed run; a wake that came during the failed turn starts a new execution.
        self._grant_wake(self.report_failure.role, sm_arn)
        self._grant_describe_runs(self.report_failure.role)

        self.tool_wait = function(
            "ToolWait",
            "functions.tool_wait.handler.handler",
            "ToolWait: stores the task token the API releases when built-in tool results are logged",
            timeout=Duration.seconds(30),
            environment=data_env,
        )
        self.data.grant_events(self.tool_wait.role, read=True)
        self.data.grant_resources(self.tool_wait.role, write=["update"])
        self._grant_task_response(self.tool_wait.role)

        self.session_loop = SessionLoop(
            self,
            "SessionLoop",
            config=config,
            model_turn=self.model_turn,
            report_failure=self.report_failure,
            tool_wait=self.tool_wait,
        )

        # The API.
        self.api = Api(
            self,
            "Api",
            config=config,
            code=code,
            environment={
                **data_env,
                names.ENV_STATE_MACHINE_ARN: sm_arn,
                names.ENV_ADMIN_KEY_SECRET_ARN: self.secrets.admin_key.secret_arn,
                names.ENV_VAULT_SECRET_PREFIX: self.secrets.vault_prefix,
                names.ENV_WEBHOOK_SECRET_PREFIX: self.secrets.webhook_prefix,
                # Writing a vault secret needs the vault key's decrypt and merging an update reads the stored secret:
                # only the MCP proxy may do either, so the API writes through it (and deletes by itself).
                names.ENV_MCP_PROXY_FUNCTION: self.mcp_proxy.alias.function_arn,
                # End event streams cleanly a minute before the Lambda/API Gateway stream cap (ServerSettings).
                names.ENV_SSE_MAX_SECONDS: str(max(config.api_timeout_seconds - 60, 30)),
            },
            # The event-stream function reads the log and the session and key records; it starts, wakes and
            # writes nothing (no state machine, no admin key, no vaults).
            stream_environment={**data_env, names.ENV_SSE_MAX_SECONDS: str(max(config.api_timeout_seconds - 60, 30))},
        )
        stream_role = self.api.stream_function.role
        self.data.grant_events(stream_role, read=True)
        self.data.grant_resources(stream_role)
        api_role = self.api.function.role
        self.data.grant_events(api_role, read=True, append=True, spill=True, delete=True)
        self.data.grant_resources(api_role, write=["put", "update", "delete"])
        self.data.grant_files(api_role, read=True, write=True, delete=True)  # files, skills, outputs: the APIs
        self._grant_read_secret(api_role, self.secrets.admin_key.secret_arn, "ReadAdminKey")
        self.secrets.allow_vault_remover(api_role)
        self.secrets.allow_webhook_secrets(api_role, write=True)
        self.mcp_proxy.grant_invoke(api_role)
        self._grant_wake(api_role, sm_arn)
        api_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="InterruptSessionRuns",
                actions=["states:StopExecution", "states:DescribeExecution"],
                resources=[executions_arn(self, config)],
            )
        )
        self._grant_task_response(api_role)
        # Speculative hands: the API's work service launches a `cloud` session's sandbox while its first turn runs.
        self.api.function.add_environment(names.ENV_PROVISIONER_FUNCTION, provisioner_arn)
        self._grant_invoke_provisioner(api_role, provisioner_arn)
        # The sandbox worker learns the API URL from the provisioner (a RunTask environment override). ModelTurn's work
        # service launches sandboxes through the provisioner when a tool call finds none, and hands out the URL too.
        self.provisioner.add_environment(names.ENV_API_URL, self.api.url)
        self.model_turn.add_environment(names.ENV_API_URL, self.api.url)

        # Triggers: EventBridge events and Scheduler schedules start sessions.
        self.triggers_function = function(
            "TriggersFunction",
            "functions.triggers.handler.handler",
            "Triggers: creates a session from an EventBridge event or schedule and wakes it",
            timeout=Duration.seconds(60),
            environment={**data_env, names.ENV_STATE_MACHINE_ARN: sm_arn},
        )
        self.data.grant_events(self.triggers_function.role, append=True, spill=True)  # the first message
        self.data.grant_resources(self.triggers_function.role, write=["put", "update"])
        self._grant_wake(self.triggers_function.role, sm_arn)
        self.triggers = Triggers(self, "Triggers", config=config, function=self.triggers_function)

        # Work reaper: every minute, stop work whose lease ran out and tell its session (WorkService.reap).
        self.reaper = function(
            "Reaper",
            "functions.reaper.handler.handler",
            "Work reaper: stops sandbox work whose lease ran out and answers its pending tool calls (every minute)",
            timeout=Duration.seconds(60),
            environment={
                **data_env,
                names.ENV_STATE_MACHINE_ARN: sm_arn,
                names.ENV_PROVISIONER_FUNCTION: provisioner_arn,
                names.ENV_API_URL: self.api.url,
            },
        )
        reaper_role = self.reaper.role
        # error results and session.error; and the session (record, initial events) of a deployment run cut off after
        # its claim, which the reaper finishes (DeploymentService.finish_pending_runs) as the trigger function would
        self.data.grant_events(reaper_role, read=True, append=True, spill=True)
        self.data.grant_resources(reaper_role, write=["put", "update"])
        self._grant_wake(reaper_role, sm_arn)
        self._grant_describe_runs(reaper_role)
        self._grant_task_response(reaper_role)
        self._grant_invoke_provisioner(reaper_role, provisioner_arn)
        self.work_reaper = WorkReaper(self, "WorkReaper", function=self.reaper)
        self._deployment_schedules()
        self._lifecycle_events()
        self._webhook_delivery(function, data_env)

        self._acknowledge_wildcards()
        self._outputs()

    def _lid(self, construct: Construct) -> str:
        """The logical id of an L2 construct's CloudFormation resource, as cdk-nag's findings name it."""
        return self.get_logical_id(cast(CfnElement, construct.node.default_child))

    def _lifecycle_events(self) -> None:
        """The functions that append lifecycle events (the harness's status changes, a failed run's idle, the API's
        session.updated) also put them on the platform's bus (adapters/aws/eventbridge_lifecycle.py); their
        detail-types never match the StartSession rule."""
        for fn in (self.model_turn, self.report_failure, self.api.function):  # status changes; session.updated
            fn.add_environment(names.ENV_EVENT_BUS_NAME, self.triggers.bus.event_bus_name)
            self.triggers.bus.grant_put_events_to(fn.role)

    def _webhook_delivery(self, function: Callable[..., PythonFunction], data_env: dict[str, str]) -> None:
        """Webhooks on AWS (stacks/constructs/webhooks.py): the relay fans the event log's stream out into delivery
        records (resources put) and queues them; the deliverer posts them and records each attempt (resources
        update: the delivery, and its endpoint when a delivery runs out of attempts)."""
        self.webhook_relay = function(
            "WebhookRelay",
            "functions.webhooks.handler.relay",
            "Webhook relay: fans session events from the event log's stream out into deliveries and queues them",
            timeout=Duration.seconds(60),
            environment=data_env,
        )
        self.webhook_deliver = function(
            "WebhookDeliver",
            "functions.webhooks.handler.deliver",
            "Webhook deliverer: posts queued deliveries (signed), records each attempt, queues the next retry",
            timeout=DELIVER_TIMEOUT,
            environment=data_env,
        )
        # (the relay reads a session by id and lists its workspace's endpoints; the deliverer reads by id only)
        self.data.grant_resources(self.webhook_relay.role, write=["put"], reads=["get", "list"])
        self.data.grant_resources(self.webhook_deliver.role, write=["update"], reads=["get"])
        self.webhooks = Webhooks(
            self,
            "Webhooks",
            config=self.config,
            events_table=self.data.events_table,
            relay=self.webhook_relay,
            deliver=self.webhook_deliver,
        )
        for fn in (self.webhook_relay, self.webhook_deliver):
            fn.add_environment(names.ENV_WEBHOOK_QUEUE_URL, self.webhooks.queue.queue_url)
        # the deliverer signs with the endpoints' secrets (stacks/constructs/secrets.py)
        self.webhook_deliver.add_environment(names.ENV_WEBHOOK_SECRET_PREFIX, self.secrets.webhook_prefix)
        self.secrets.allow_webhook_secrets(self.webhook_deliver.role, write=False)

    def _deployment_schedules(self) -> None:
        """One EventBridge Scheduler schedule per scheduled deployment, in the triggers' schedule group, invoking the
        trigger function (adapters/aws/scheduler_deployment_schedules.py). The API creates, updates and deletes
        them with the deployment; the trigger function pauses them when a run auto-pauses its deployment."""
        group = cast(str, self.triggers.schedule_group.name)
        schedules_arn = self.format_arn(service="scheduler", resource="schedule", resource_name=f"{group}/*")
        api, trigger, reaper = self.api.function, self.triggers_function, self.reaper
        manage = [
            "scheduler:GetSchedule",
            "scheduler:CreateSchedule",
            "scheduler:UpdateSchedule",
            "scheduler:DeleteSchedule",
        ]
        # (the reaper syncs what a failed sync left behind: services/deployments.py, "Schedule sync")
        for fn, actions in (
            (api, manage),
            (reaper, manage),
            (trigger, ["scheduler:GetSchedule", "scheduler:UpdateSchedule"]),
        ):
            fn.add_environment(names.ENV_DEPLOYMENT_SCHEDULE_GROUP, group)
            fn.role.add_to_principal_policy(
                iam.PolicyStatement(sid="DeploymentSchedules", actions=actions, resources=[schedules_arn])
            )
            fn.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="PassScheduleRole",
                    actions=["iam:PassRole"],
                    resources=[self.triggers.scheduler_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
                )
            )
        for fn in (api, reaper):
            fn.add_environment(names.ENV_DEPLOYMENT_SCHEDULE_ROLE_ARN, self.triggers.scheduler_role.role_arn)
            fn.add_environment(names.ENV_DEPLOYMENT_SCHEDULE_TARGET_ARN, trigger.alias.function_arn)
            fn.add_environment(names.ENV_DEPLOYMENT_SCHEDULE_DEAD_LETTER_ARN, self.triggers.dead_letters.queue_arn)

    def _grant_wake(self, role: iam.IRole, sm_arn: str) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="WakeSessionRuns", actions=["states:StartExecution"], resources=[sm_arn])
        )

    def _grant_describe_runs(self, role: iam.IRole) -> None:
        """DescribeExecution: a wake checks whether the execution that owns a session's run still runs."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DescribeSessionRuns",
                actions=["states:DescribeExecution"],
                resources=[executions_arn(self, self.config)],
            )
        )

    def _grant_invoke_provisioner(self, role: iam.IRole, provisioner_arn: str) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="InvokeProvisioner", actions=["lambda:InvokeFunction"], resources=[provisioner_arn])
        )

    def _grant_read_secret(self, role: iam.IRole, secret_arn: str, sid: str) -> None:
        """GetSecretValue of one secret, the only call made on it (grant_read adds DescribeSecret too)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(sid=sid, actions=["secretsmanager:GetSecretValue"], resources=[secret_arn])
        )

    def _grant_task_response(self, role: iam.IRole) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReleaseToolWaitTokens",
                actions=["states:SendTaskSuccess"],
                resources=["*"],
            )
        )

    def _acknowledge_wildcards(self) -> None:
        spill_objects = f"Resource::<{self._lid(self.data.spill_bucket)}.Arn>/*"
        resources_index = f"Resource::<{self._lid(self.data.resources_table)}.Arn>/index/*"
        vault_secrets = arn_finding(self, "secretsmanager", f"secret:{self.secrets.vault_prefix}*")
        task_response = (
            "states:SendTaskSuccess supports no resource-level permissions (IAM accepts only `*` for it); the task "
            "token in the call is the capability."
        )
        spill = (
            "Object-level access to the platform's own spill bucket: payload keys are per session and event id, "
            "created at run time, so no fixed object ARN exists (readers get s3:GetObject only)."
        )
        vault = (
            "Vault credential secrets are created per credential at run time under the vault name prefix; reads and "
            "writes of their values are further limited by the vault key policy to the MCP proxy."
        )
        executions = (
            f"Session-run executions are created at run time; the statement names the executions of the one state "
            f"machine {self.session_loop.state_machine.node.id} only."
        )
        executions_finding = arn_finding(self, "states", f"execution:{self.config.prefix}-session-run:*")
        tasks_finding = arn_finding(self, "ecs", f"task/<{self._lid(self.sandbox.cluster)}>/*")
        index = (
            "Query on the resources table's own secondary indexes (by_time, lookup1..3): the statement covers that "
            "one table's indexes only, and Query is its only action."
        )
        event_log_users = (
            self.model_turn,
            self.report_failure,
            self.triggers_function,
            self.api.function,
            self.api.stream_function,
            self.tool_wait,
            self.reaper,
        )
        files_objects = f"Resource::<{self._lid(self.data.files_bucket)}.Arn>/*"
        files = (
            "Object-level access to the platform's own files bucket: blob keys are per workspace and file, skill or "
            "output id, created at run time, so no fixed object ARN exists."
        )
        for fn in (self.api.function, self.model_turn):
            acknowledge(fn.role, "AwsSolutions-IAM5", files, files_objects)
        for fn in event_log_users:
            if fn is not self.report_failure:  # (it appends small events only: no spilled payload to read or write)
                acknowledge(fn.role, "AwsSolutions-IAM5", spill, spill_objects)
        for fn in (*event_log_users, self.mcp_proxy, self.webhook_relay):
            acknowledge(fn.role, "AwsSolutions-IAM5", index, resources_index)
        for fn in (self.tool_wait, self.api.function, self.reaper, self.model_turn):
            acknowledge(fn.role, "AwsSolutions-IAM5", task_response, "Resource::*")
        for fn in (self.api.function, self.mcp_proxy):  # (ModelTurn's statement on the prefix is a Deny)
            acknowledge(fn.role, "AwsSolutions-IAM5", vault, vault_secrets)
        webhook_secrets = arn_finding(self, "secretsmanager", f"secret:{self.secrets.webhook_prefix}*")
        webhook = (
            "Webhook signing secrets are created per endpoint at run time under the webhook name prefix; the "
            "statement covers that prefix only."
        )
        for fn in (self.api.function, self.webhook_deliver):
            acknowledge(fn.role, "AwsSolutions-IAM5", webhook, webhook_secrets)
        for fn in (self.api.function, self.reaper, self.report_failure, self.model_turn):
            acknowledge(fn.role, "AwsSolutions-IAM5", executions, executions_finding)
        acknowledge(
            self.provisioner.role,
            "AwsSolutions-IAM5",
            "Sandbox tasks are started at run time, one per session; the statement covers tasks of the sandbox "
            "cluster only (and ecs:cluster is pinned by condition).",
            tasks_finding,
        )
        acknowledge(
            self.provisioner.role,
            "AwsSolutions-IAM5",
            "ecs:ListTasks (how the provisioner finds a session's tasks to stop them) names no task; its statement is "
            "pinned to the sandbox cluster by the ecs:cluster condition.",
            "Resource::*",
        )

        schedules = (
            "Deployment schedules are created at run time, one per scheduled deployment and named after it; the "
            "statement covers the schedules of the platform's own schedule group only."
        )
        schedules_finding = arn_finding(self, "scheduler", f"schedule/{self.triggers.schedule_group.name}/*")
        for fn in (self.api.function, self.triggers_function, self.reaper):
            acknowledge(fn.role, "AwsSolutions-IAM5", schedules, schedules_finding)

    def _outputs(self) -> None:
        outputs = {
            "ApiUrl": (self.api.url, "base_url for the official SDK: Anthropic(base_url=ApiUrl, api_key=...)"),
            "AdminApiKeySecretArn": (self.secrets.admin_key.secret_arn, "The first (admin) API key"),
            "ModelApiKeySecretArn": (self.secrets.model_key.secret_arn, "Put the Anthropic API key here"),
            "EventsTableName": (self.data.events_table.table_name, "Event log table"),
            "ResourcesTableName": (self.data.resources_table.table_name, "Resources table"),
            "SpillBucketName": (self.data.spill_bucket.bucket_name, "Large event payloads"),
            "FilesBucketName": (self.data.files_bucket.bucket_name, "Files, skill archives and session outputs"),
            "StateMachineArn": (self.session_loop.state_machine.state_machine_arn, "session run"),
            "SandboxClusterName": (self.sandbox.cluster.cluster_name, "Fargate sandboxes"),
            "EventBusName": (self.triggers.bus.event_bus_name, "Put StartSession events here"),
            "TriggersFunctionArn": (self.triggers_function.alias.function_arn, "Target of schedules"),
            "ScheduleGroupName": (self.triggers.schedule_group.ref, "Create schedules in this group"),
            "SchedulerRoleArn": (self.triggers.scheduler_role.role_arn, "Role schedules assume"),
            "TriggerDeadLetterQueueArn": (
                self.triggers.dead_letters.queue_arn,
                "Failed triggers (a schedule's DeadLetterConfig goes here too)",
            ),
            "TriggerDeadLetterQueueUrl": (self.triggers.dead_letters.queue_url, "Read failed triggers here"),
        }
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)
