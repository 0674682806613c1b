"""Webhook delivery on AWS (template assertions, `aws_cdk.assertions`): the events table's stream is the outbox, its
filtered event source mapping feeds the relay, the delivery queue feeds the deliverer with partial batch failures,
and failures end in a dead-letter queue with an alarm (stacks/constructs/webhooks.py)."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template

from managed_agents.adapters.aws.dynamodb_event_store import TTL_ATTRIBUTE, WEBHOOK_TYPE
from managed_agents.services.webhooks import OUTBOX_SOURCE_TYPES, RESOURCE_EVENT_TYPES
from managed_agents.settings import WEBHOOK_QUEUE_URL_ENV, WEBHOOK_SECRET_PREFIX_ENV
from stacks.asl import logical_id
from stacks.constructs.webhooks import DELIVER_BATCH, MAX_RECEIVES
from tests.infra.conftest import Synth


def _id(synth: Synth, path: str) -> str:
    return logical_id(synth.template, path)


def test_the_events_table_streams_new_images(default_synth: Synth) -> None:
    template = Template.from_json(default_synth.template)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": Match.array_with([{"AttributeName": "session_id", "KeyType": "HASH"}]),
            "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
            # (the webhook items of resource events expire; event items carry no such attribute)
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        },
    )


def test_the_relay_reads_only_inserted_events_that_cause_webhooks(default_synth: Synth) -> None:
    template = Template.from_json(default_synth.template)
    dead_letters = _id(default_synth, "Webhooks/DeadLetters/Resource")
    events_table = _id(default_synth, "Data/EventsTable/Resource")
    mappings = template.find_resources(
        "AWS::Lambda::EventSourceMapping",
        {"Properties": {"EventSourceArn": {"Fn::GetAtt": [events_table, "StreamArn"]}}},
    )
    (mapping,) = mappings.values()
    props: dict[str, Any] = mapping["Properties"]
    events, resources = [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]]
    assert events == {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": list(OUTBOX_SOURCE_TYPES)}}}}
    assert resources == {
        "eventName": ["INSERT"],
        "dynamodb": {"NewImage": {WEBHOOK_TYPE: {"S": sorted(RESOURCE_EVENT_TYPES)}}},
    }
    assert all(len(f["Pattern"]) <= 4096 for f in props["FilterCriteria"]["Filters"])  # (Lambda's limit per filter)
    assert props["BisectBatchOnFunctionError"] is True and props["MaximumRetryAttempts"] >= 1
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [dead_letters, "Arn"]}}}
    assert _id(default_synth, "WebhookRelay/Live/Resource") in json.dumps(props["FunctionName"])


def test_the_deliverer_drains_the_queue_with_partial_failures_and_a_dead_letter_queue(default_synth: Synth) -> None:
    template = Template.from_json(default_synth.template)
    queue = _id(default_synth, "Webhooks/Deliveries/Resource")
    dead_letters = _id(default_synth, "Webhooks/DeadLetters/Resource")
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
            "BatchSize": DELIVER_BATCH,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "FunctionName": Match.object_like(
                {"Fn::Join": Match.array_with([Match.array_with([Match.string_like_regexp(":live")])])}
            ),
        },
    )
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dead_letters, "Arn"]},
                "maxReceiveCount": MAX_RECEIVES,
            },
            "SqsManagedSseEnabled": True,
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dead_letters, "QueueName"]}}]},
    )


def test_both_functions_know_the_queue_and_may_only_send_to_it(default_synth: Synth) -> None:
    template = Template.from_json(default_synth.template)
    queue = _id(default_synth, "Webhooks/Deliveries/Resource")
    for name in ("WebhookRelay", "WebhookDeliver"):
        fn = default_synth.template["Resources"][_id(default_synth, f"{name}/Function/Resource")]
        assert fn["Properties"]["Environment"]["Variables"][WEBHOOK_QUEUE_URL_ENV] == {"Ref": queue}, name
        role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        template.has_resource_properties(
            "AWS::IAM::Policy",
            {
                "Roles": [{"Ref": role}],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            {
                                "Sid": "QueueDeliveries",
                                "Effect": "Allow",
                                "Action": "sqs:SendMessage",
                                "Resource": {"Fn::GetAtt": [queue, "Arn"]},
                            }
                        ]
                    )
                },
            },
        )


def test_signing_secrets_are_in_secrets_manager_for_the_api_and_the_deliverer_only(default_synth: Synth) -> None:
    resources = default_synth.template["Resources"]
    granted: dict[str, list[str]] = {}
    for name in ("Api/ApiFunction", "WebhookDeliver", "WebhookRelay", "McpProxy", "ModelTurn"):
        fn = resources[_id(default_synth, f"{name}/Function/Resource")]
        role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        for res in resources.values():
            if res["Type"] == "AWS::IAM::Policy" and {"Ref": role} in res["Properties"]["Roles"]:
                for st in res["Properties"]["PolicyDocument"]["Statement"]:
                    if st.get("Sid") == "WebhookSigningSecrets":
                        actions = st["Action"]
                        granted[name] = sorted([actions] if isinstance(actions, str) else actions)
                        assert "webhook/*" in json.dumps(st["Resource"])
        if name in ("Api/ApiFunction", "WebhookDeliver"):
            assert fn["Properties"]["Environment"]["Variables"][WEBHOOK_SECRET_PREFIX_ENV] == "managed-agents/webhook/"
    assert granted == {
        "Api/ApiFunction": [
            "secretsmanager:CreateSecret",
            "secretsmanager:DeleteSecret",
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
        ],
        "WebhookDeliver": ["secretsmanager:GetSecretValue"],
    }
