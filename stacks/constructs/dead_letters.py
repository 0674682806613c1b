"""A dead-letter queue an operator is told about: the queue and an alarm that goes off at its first message.

Created in the caller's scope under fixed construct ids ("DeadLetters", "FailuresAlarm"), so the triggers' and the
webhooks' queues keep their logical ids.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import PlatformConfig


def watched_dead_letters(
    scope: Construct, config: PlatformConfig, *, alarm_description: str
) -> tuple[sqs.Queue, cloudwatch.Alarm]:
    queue = sqs.Queue(
        scope,
        "DeadLetters",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        removal_policy=config.removal,
    )
    alarm = cloudwatch.Alarm(
        scope,
        "FailuresAlarm",
        alarm_description=alarm_description,
        metric=queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
        ),
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    return queue, alarm
