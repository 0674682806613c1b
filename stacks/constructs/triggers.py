"""Triggers: sessions started by EventBridge events and by EventBridge Scheduler schedules.

* a custom event bus and a rule on `detail-type` = `triggerDetailType` whose target is the triggers Lambda
  (functions/triggers/handler.py): it creates a session from `detail` (agent, environment, initial message) and wakes
  it. Undeliverable events go to an encrypted dead-letter queue.
* a Scheduler schedule group and the role schedules assume to invoke the same Lambda; a schedule's input is an event
  of the same shape (`{"detail-type": ..., "detail": {...}}`).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import PlatformConfig
from stacks.constructs.python_function import PythonFunction
from stacks.nag import acknowledge


class Triggers(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig, function: PythonFunction) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.bus = events.EventBus(self, "Bus", event_bus_name=f"{config.prefix}-bus")
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.dead_letters,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the start-session rule target (events EventBridge could "
            "not deliver); nothing consumes it automatically, so it needs no DLQ of its own.",
        )
        self.rule = events.Rule(
            self,
            "StartSessionRule",
            event_bus=self.bus,
            description="Start a session from an event (detail: agent, environment, initial message)",
            event_pattern=events.EventPattern(detail_type=[config.trigger_detail_type]),
            targets=[
                targets.LambdaFunction(
                    function.alias,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=4,
                    max_event_age=Duration.hours(1),
                )
            ],
        )

        self.schedule_group = scheduler.CfnScheduleGroup(self, "ScheduleGroup", name=f"{config.prefix}-schedules")
        group_schedules_arn = stack.format_arn(
            service="scheduler", resource="schedule", resource_name=f"{config.prefix}-schedules/*"
        )
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            description="Assumed by EventBridge Scheduler schedules of this platform to start sessions",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": group_schedules_arn},
                },
            ),
        )
        function.grant_invoke(self.scheduler_role)
