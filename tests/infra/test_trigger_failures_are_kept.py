"""A trigger that fails is kept where the operator sees it (moto delivers no events: template assertions).

EventBridge rules and Scheduler invoke the trigger function asynchronously: a target DLQ only catches events that
could not be delivered, so a function that fails needs an on-failure destination of its own, or the event is gone.
"""

from __future__ import annotations

from typing import Any

from stacks.asl import logical_id
from tests.infra.conftest import Synth


def _queue(synth: Synth) -> str:
    return logical_id(synth.template, "Triggers/DeadLetters/Resource")


def _statements(synth: Synth, role: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for res in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in res["Properties"]["Roles"]:
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def _may_send(synth: Synth, role: str, queue: str) -> bool:
    return any(
        "sqs:SendMessage" in st["Action"] and st["Resource"] == {"Fn::GetAtt": [queue, "Arn"]}
        for st in _statements(synth, role)
        if st["Effect"] == "Allow"
    )


def test_a_failed_invocation_of_the_trigger_function_goes_to_the_dead_letter_queue(default_synth: Synth) -> None:
    # Given the trigger function's live alias (what the rule and schedules invoke)
    queue = _queue(default_synth)
    function = logical_id(default_synth.template, "TriggersFunction/Function/Resource")
    alias = logical_id(default_synth.template, "TriggersFunction/Live/Resource")
    (config,) = default_synth.resources("AWS::Lambda::EventInvokeConfig").values()
    props = config["Properties"]
    # Then its asynchronous invocations are retried twice within an hour, then sent to the dead-letter queue
    assert props["FunctionName"] == {"Ref": function}
    assert props["Qualifier"] == {"Fn::Select": [7, {"Fn::Split": [":", {"Ref": alias}]}]}
    assert (props["MaximumRetryAttempts"], props["MaximumEventAgeInSeconds"]) == (2, 3600)
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [queue, "Arn"]}}}
    # And the function's role may send there (Lambda sends the record with it)
    role = default_synth.template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    assert _may_send(default_synth, role, queue)


def test_undeliverable_events_and_schedule_runs_go_to_the_same_queue_and_an_alarm_watches_it(
    default_synth: Synth,
) -> None:
    queue = _queue(default_synth)
    # The rule's target dead-letters to it
    (rule,) = [r for r in default_synth.resources("AWS::Events::Rule").values() if "EventBusName" in r["Properties"]]
    (target,) = rule["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
    # A schedule's DeadLetterConfig sends with the schedule role, which may send to it
    scheduler_role = logical_id(default_synth.template, "Triggers/SchedulerRole/Resource")
    assert _may_send(default_synth, scheduler_role, queue)
    # And an alarm goes off as soon as the queue holds a message
    (alarm,) = [
        a
        for a in default_synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Dimensions", [{}])[0].get("Value") == {"Fn::GetAtt": [queue, "QueueName"]}
    ]
    props = alarm["Properties"]
    assert props["Namespace"] == "AWS/SQS" and props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    # And the queue's URL and ARN are outputs
    outputs = default_synth.template["Outputs"]
    assert outputs["TriggerDeadLetterQueueArn"]["Value"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert outputs["TriggerDeadLetterQueueUrl"]["Value"] == {"Ref": queue}
