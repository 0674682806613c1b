"""Deployment schedules on AWS (template assertions): the API creates, updates and deletes one EventBridge Scheduler
schedule per scheduled deployment in the platform's schedule group, targeting the trigger function with the schedule
role; the trigger function may pause them (adapters/aws/scheduler_deployment_schedules.py)."""

from __future__ import annotations

from typing import Any

from managed_agents.settings import (
    DEPLOYMENT_SCHEDULE_DEAD_LETTER_ARN_ENV,
    DEPLOYMENT_SCHEDULE_GROUP_ENV,
    DEPLOYMENT_SCHEDULE_ROLE_ARN_ENV,
    DEPLOYMENT_SCHEDULE_TARGET_ARN_ENV,
    EVENT_BUS_NAME_ENV,
)
from stacks.asl import logical_id
from tests.infra.conftest import Synth


def _function(synth: Synth, path: str) -> dict[str, Any]:
    return synth.template["Resources"][logical_id(synth.template, path)]


def _allowed(synth: Synth, function_path: str) -> list[dict[str, Any]]:
    role = _function(synth, function_path)["Properties"]["Role"]["Fn::GetAtt"][0]
    out: list[dict[str, Any]] = []
    for res in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in res["Properties"]["Roles"]:
            out += [st for st in res["Properties"]["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    return out


def _actions(statements: list[dict[str, Any]], prefix: str) -> set[str]:
    found: set[str] = set()
    for st in statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        found |= {a for a in actions if a.startswith(prefix)}
    return found


def test_the_api_manages_deployment_schedules_in_the_group_with_the_schedule_role(default_synth: Synth) -> None:
    api = "Api/ApiFunction/Function/Resource"
    env = _function(default_synth, api)["Properties"]["Environment"]["Variables"]
    group = default_synth.one("AWS::Scheduler::ScheduleGroup")[1]["Properties"]["Name"]
    assert env[DEPLOYMENT_SCHEDULE_GROUP_ENV] == group
    role = logical_id(default_synth.template, "Triggers/SchedulerRole/Resource")
    assert env[DEPLOYMENT_SCHEDULE_ROLE_ARN_ENV] == {"Fn::GetAtt": [role, "Arn"]}
    alias = logical_id(default_synth.template, "TriggersFunction/Live/Resource")
    assert env[DEPLOYMENT_SCHEDULE_TARGET_ARN_ENV] == {"Ref": alias}
    queue = logical_id(default_synth.template, "Triggers/DeadLetters/Resource")
    assert env[DEPLOYMENT_SCHEDULE_DEAD_LETTER_ARN_ENV] == {"Fn::GetAtt": [queue, "Arn"]}
    statements = _allowed(default_synth, api)
    assert _actions(statements, "scheduler:") == {
        "scheduler:GetSchedule",
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
    }
    (scheduler_statement,) = [st for st in statements if "scheduler:CreateSchedule" in st["Action"]]
    assert f":schedule/{group}/*" in str(scheduler_statement["Resource"])
    (pass_role,) = [st for st in statements if st["Action"] == "iam:PassRole"]
    assert pass_role["Resource"] == {"Fn::GetAtt": [role, "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}


def test_the_trigger_function_may_pause_schedules_but_not_create_or_delete_them(default_synth: Synth) -> None:
    statements = _allowed(default_synth, "TriggersFunction/Function/Resource")
    assert _actions(statements, "scheduler:") == {"scheduler:GetSchedule", "scheduler:UpdateSchedule"}


def test_the_functions_that_append_lifecycle_events_put_them_on_the_bus(default_synth: Synth) -> None:
    bus = logical_id(default_synth.template, "Triggers/Bus/Resource")
    for path in ("ModelTurn/Function/Resource", "ReportFailure/Function/Resource", "Api/ApiFunction/Function/Resource"):
        env = _function(default_synth, path)["Properties"]["Environment"]["Variables"]
        assert env[EVENT_BUS_NAME_ENV] == {"Ref": bus}, path
        puts = [st for st in _allowed(default_synth, path) if st["Action"] == "events:PutEvents"]
        assert [st["Resource"] for st in puts] == [{"Fn::GetAtt": [bus, "Arn"]}], path


def test_the_reaper_may_manage_schedules_to_sync_what_a_failed_sync_left(default_synth: Synth) -> None:
    # (services/deployments.py, "Schedule sync": the reaper's every run reconciles marked deployments)
    path = "Reaper/Function/Resource"
    statements = _allowed(default_synth, path)
    assert _actions(statements, "scheduler:") == {
        "scheduler:GetSchedule",
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
    }
    env = _function(default_synth, path)["Properties"]["Environment"]["Variables"]
    api_env = _function(default_synth, "Api/ApiFunction/Function/Resource")["Properties"]["Environment"]["Variables"]
    for name in (DEPLOYMENT_SCHEDULE_GROUP_ENV, DEPLOYMENT_SCHEDULE_ROLE_ARN_ENV, DEPLOYMENT_SCHEDULE_TARGET_ARN_ENV):
        assert env[name] == api_env[name], name
