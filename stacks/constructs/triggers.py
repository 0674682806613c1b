"""Triggers: sessions started by EventBridge events and by EventBridge Scheduler schedules.

* a custom event bus and a rule on `detail-type` = `triggerDetailType` whose target is the triggers Lambda
  (functions/triggers/handler.py), which starts what the event's `detail` asks for (managed_agents/services/
  triggers.py has the shapes);
* a Scheduler schedule group and the role schedules assume to invoke the same Lambda with their input;
* one dead-letter queue for every trigger that failed, wherever it failed: events the rule could not deliver (the
  target's DLQ), invocations the function failed after Lambda's retries (the alias's on-failure destination: the
  rule and Scheduler both invoke asynchronously, so a failure is otherwise dropped silently), and schedule runs
  Scheduler could not deliver (a schedule's DeadLetterConfig; the schedule role may send to the queue). An alarm
  goes off as soon as the queue holds a message.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from stacks.config import PlatformConfig
from stacks.constructs.dead_letters import watched_dead_letters
from stacks.constructs.python_function import PythonFunction
from stacks.nag import acknowledge

# Lambda's asynchronous retries of a failed trigger (the maximum): a transient failure (DynamoDB throttled, Step
# Functions unavailable) gets two more tries, a minute and two apart; starting is idempotent on the event's key.
TRIGGER_RETRY_ATTEMPTS = 2
TRIGGER_MAX_EVENT_AGE = Duration.hours(1)


class Triggers(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig, function: PythonFunction) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.bus = events.EventBus(self, "Bus", event_bus_name=f"{config.prefix}-bus")
        self.dead_letters, self.failures_alarm = watched_dead_letters(
            self,
            config,
            alarm_description=(
                "A trigger (EventBridge event or Scheduler run) failed: its event and the error are in the trigger "
                "dead-letter queue (docs/deploy-aws.md, 'Sessions from events and schedules')"
            ),
        )
        acknowledge(
            self.dead_letters,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of every trigger (undeliverable events, failed invocations, "
            "undeliverable schedule runs); nothing consumes it automatically, so it needs no DLQ of its own.",
        )
        self.rule = events.Rule(
            self,
            "StartSessionRule",
            event_bus=self.bus,
            description="Start a session from an event (detail: agent, environment, first message)",
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
        # Both the rule and Scheduler invoke asynchronously: what the function fails ends here, not nowhere.
        function.alias.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=TRIGGER_RETRY_ATTEMPTS,
            max_event_age=TRIGGER_MAX_EVENT_AGE,
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
        # A schedule's DeadLetterConfig sends with the schedule's role (Scheduler user guide, "Configuring a
        # schedule's dead-letter queue").
        self.dead_letters.grant_send_messages(self.scheduler_role)
