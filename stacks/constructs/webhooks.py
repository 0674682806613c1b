"""Webhooks: delivery of webhook events on AWS (managed_agents/adapters/aws/webhook_queue.py has the design).

* the events table's stream (NEW_IMAGE) is the outbox: the relay function's event source mapping passes it only
  inserted event items of the types that cause webhooks (`OUTBOX_SOURCE_TYPES`: a filter, so the log's other events
  invoke nothing) and inserted webhook items of resource events (a second filter, on `webhook_type`); a batch that
  keeps failing is halved, retried, then recorded in the dead-letter queue;
* the delivery queue: one message per delivery to look at, delayed for retries (SQS: at most 15 minutes a hop);
  consumed by the deliver function with partial batch failures; a message that keeps failing goes to the same
  dead-letter queue, and an alarm goes off as soon as that holds a message.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from managed_agents.adapters.aws.dynamodb_event_store import WEBHOOK_TYPE
from managed_agents.services.webhooks import OUTBOX_SOURCE_TYPES, RESOURCE_EVENT_TYPES
from stacks.config import PlatformConfig
from stacks.constructs.dead_letters import watched_dead_letters
from stacks.constructs.python_function import PythonFunction

DELIVER_TIMEOUT = Duration.seconds(90)  # a batch of DELIVER_BATCH attempts, each at most the 10 s HTTP timeout
DELIVER_BATCH = 5
RELAY_RETRY_ATTEMPTS = 10
MAX_RECEIVES = 5  # a message whose handling raised this often goes to the dead-letter queue


class Webhooks(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        events_table: dynamodb.ITable,
        relay: PythonFunction,
        deliver: PythonFunction,
    ) -> None:
        super().__init__(scope, id_)
        self.dead_letters, self.failures_alarm = watched_dead_letters(
            self,
            config,
            alarm_description=(
                "Webhook delivery failed beyond its retries (a stream batch the relay could not fan out, or a delivery "
                "message that kept failing): see the webhook dead-letter queue (docs/deploy-aws.md, 'Webhooks')"
            ),
        )
        # (cdk-nag's SQS3 does not flag it: the deliveries queue's redrive policy names it as a dead-letter queue)
        self.queue = sqs.Queue(
            self,
            "Deliveries",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(DELIVER_TIMEOUT.to_seconds() * 6),  # Lambda's advice for SQS sources
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES, queue=self.dead_letters),
            removal_policy=config.removal,
        )
        relay.alias.add_event_source(
            sources.DynamoEventSource(
                events_table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=100,
                bisect_batch_on_error=True,
                retry_attempts=RELAY_RETRY_ATTEMPTS,
                on_failure=sources.SqsDlq(self.dead_letters),
                filters=[
                    lambda_.FilterCriteria.filter(
                        {
                            "eventName": lambda_.FilterRule.is_equal("INSERT"),
                            "dynamodb": {"NewImage": {"type": {"S": lambda_.FilterRule.or_(*OUTBOX_SOURCE_TYPES)}}},
                        }
                    ),
                    # the webhook items of resource events (agent.created, ...; dynamodb_event_store.webhook_item)
                    lambda_.FilterCriteria.filter(
                        {
                            "eventName": lambda_.FilterRule.is_equal("INSERT"),
                            "dynamodb": {
                                "NewImage": {WEBHOOK_TYPE: {"S": lambda_.FilterRule.or_(*sorted(RESOURCE_EVENT_TYPES))}}
                            },
                        }
                    ),
                ],
            )
        )
        deliver.alias.add_event_source(
            sources.SqsEventSource(self.queue, batch_size=DELIVER_BATCH, report_batch_item_failures=True)
        )
        for fn in (relay, deliver):  # the relay queues new deliveries, the deliverer their next attempts
            fn.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="QueueDeliveries", actions=["sqs:SendMessage"], resources=[self.queue.queue_arn]
                )
            )
