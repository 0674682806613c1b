"""The operational pieces of the stack: the work reaper's schedule, the API's provisioner, per-policy sandbox egress,
the failed-run release and the admin key secret (checked on the synthesized template: moto enforces no IAM and
delivers no scheduled event)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from managed_agents.adapters.aws.dynamodb_resource_store import LOOKUP_SLOTS, lookup_index
from managed_agents.settings import (
    ADMIN_KEY_SECRET_ARN_ENV,
    PROVISIONER_FUNCTION_ENV,
    SANDBOX_LIMITED_SECURITY_GROUP_ENV,
    SANDBOX_SECURITY_GROUP_ENV,
)
from stacks.asl import logical_id
from tests.infra.conftest import Synth
from tests.infra.test_stack_security_invariants import (
    API,
    MODEL_TURN,
    PROVISIONER,
    _allows,
    _as_list,
    _function,
    _role_of,
    _role_statements,
    _text,
)

pytestmark = pytest.mark.slow

REAPER = "functions.reaper.handler.handler"
REPORT_FAILURE = "functions.model_turn.handler.report_failure"
PROVISIONER_ALIAS = ":function:managed-agents-provisioner:live"
STATE_MACHINE = ":stateMachine:managed-agents-session-run"
EXECUTIONS = ":execution:managed-agents-session-run:*"


def _env(synth: Synth, handler: str) -> dict[str, Any]:
    _, fn = _function(synth, handler)
    return dict(fn["Properties"]["Environment"]["Variables"])


def _resource(synth: Synth, path_suffix: str) -> dict[str, Any]:
    return dict(synth.template["Resources"][logical_id(synth.template, path_suffix)])


# ------------------------------------------------------------------------------------------------------ work reaper
def test_a_rule_invokes_the_reaper_alias_every_minute_and_nothing_else_may(default_synth: Synth) -> None:
    # Given the reaper's schedule rule
    rule = _resource(default_synth, "WorkReaper/Schedule/Resource")["Properties"]
    reaper_alias = logical_id(default_synth.template, "Reaper/Live/Resource")
    # Then it fires every minute on the default bus, at the reaper's live alias, without retries (the next run comes)
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    assert "EventBusName" not in rule and "EventPattern" not in rule
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": reaper_alias}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    # And the only invoke permission on that alias is EventBridge's, for this rule
    permissions = [
        p["Properties"]
        for p in default_synth.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": reaper_alias}
    ]
    rule_lid = logical_id(default_synth.template, "WorkReaper/Schedule/Resource")
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": reaper_alias},
            "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [rule_lid, "Arn"]},
        }
    ]


def test_the_reaper_may_do_what_reaping_needs_and_nothing_more(default_synth: Synth) -> None:
    statements = _role_statements(default_synth, _role_of(default_synth, REAPER))
    allowed = {a for st in statements if st["Effect"] == "Allow" for a in _as_list(st["Action"])}
    # Then: reading the log (spilled payloads too) and appending small events, updating work items and sessions (no
    # Scan, no deletes), waking sessions, describing their runs, releasing tool waits, stopping sandboxes, and
    # re-syncing the deployment schedules a failed sync left behind (services/deployments.py, "Schedule sync"), and
    # finishing a deployment run cut off after its claim (9ab9bed: its session's record, and an initial event over
    # the item limit spilled to S3)
    assert allowed == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "s3:GetObject",
        "s3:PutObject",
        "states:StartExecution",
        "states:DescribeExecution",
        "states:SendTaskSuccess",
        "lambda:InvokeFunction",
        "scheduler:GetSchedule",
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
        "iam:PassRole",
    }
    (pass_role,) = [st for st in statements if "iam:PassRole" in _as_list(st["Action"])]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    assert _allows(statements, "states:StartExecution", STATE_MACHINE)
    assert _allows(statements, "states:DescribeExecution", EXECUTIONS)
    invoked = [
        _text(r)
        for st in statements
        if "lambda:InvokeFunction" in _as_list(st["Action"])
        for r in _as_list(st["Resource"])
    ]
    assert len(invoked) == 1 and invoked[0].endswith(PROVISIONER_ALIAS)
    # And its environment points at the tables, the state machine, the provisioner and the API (graceful restarts)
    env = _env(default_synth, REAPER)
    assert {"MANAGED_AGENTS_RESOURCES_TABLE", "MANAGED_AGENTS_EVENTS_TABLE", "MANAGED_AGENTS_SPILL_BUCKET"} <= set(env)
    assert _text(env["MANAGED_AGENTS_STATE_MACHINE_ARN"]).endswith(STATE_MACHINE)
    assert _text(env["MANAGED_AGENTS_PROVISIONER_FUNCTION"]).endswith(PROVISIONER_ALIAS)
    assert _text(env["MANAGED_AGENTS_API_URL"]).startswith("https://<")


def test_the_resources_table_has_the_sparse_work_state_index(default_synth: Synth) -> None:
    table = _resource(default_synth, "Data/ResourcesTable/Resource")["Properties"]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert LOOKUP_SLOTS == 4 and lookup_index(4) in indexes
    assert indexes[lookup_index(4)]["Projection"] == {"ProjectionType": "KEYS_ONLY"}


# ------------------------------------------------------------------------------------------------ API -> provisioner
def test_the_api_launches_sandboxes_through_the_provisioner_named_without_a_reference(default_synth: Synth) -> None:
    # Given the provisioner function, with its fixed name
    _, provisioner = _function(default_synth, PROVISIONER)
    assert provisioner["Properties"]["FunctionName"] == "managed-agents-provisioner"
    # Then the API's environment names its live alias by an ARN built from that name (no Ref/GetAtt: no cycle)
    arn = _env(default_synth, API)["MANAGED_AGENTS_PROVISIONER_FUNCTION"]
    assert _text(arn) == "arn:<AWS::Partition>:lambda:<AWS::Region>:<AWS::AccountId>" + PROVISIONER_ALIAS
    # And the API may invoke exactly that alias, and no other function than it and the MCP proxy
    statements = _role_statements(default_synth, _role_of(default_synth, API))
    invoked = sorted(
        _text(r)
        for st in statements
        if "lambda:InvokeFunction" in _as_list(st["Action"])
        for r in _as_list(st["Resource"])
    )
    mcp_alias = f"<{logical_id(default_synth.template, 'McpProxy/Live/Resource')}>"
    assert set(invoked) <= {_text(arn), mcp_alias} and _text(arn) in invoked
    # And ModelTurn keeps launching through the same function
    assert _allows(_role_statements(default_synth, _role_of(default_synth, MODEL_TURN)), "lambda:InvokeFunction", "")


# ---------------------------------------------------------------------------------------------------- sandbox egress
def test_each_networking_policy_has_its_security_group_and_the_provisioner_knows_both(default_synth: Synth) -> None:
    limited = _resource(default_synth, "Sandbox/LimitedSecurityGroup/Resource")["Properties"]
    unrestricted = _resource(default_synth, "Sandbox/SecurityGroup/Resource")["Properties"]
    # Then limited sandboxes may open TCP 443 only, unrestricted ones anything; neither admits inbound traffic
    assert [(e["IpProtocol"], e["FromPort"], e["ToPort"], e["CidrIp"]) for e in limited["SecurityGroupEgress"]] == [
        ("tcp", 443, 443, "0.0.0.0/0")
    ]
    assert [(e["IpProtocol"], e["CidrIp"]) for e in unrestricted["SecurityGroupEgress"]] == [("-1", "0.0.0.0/0")]
    assert "SecurityGroupIngress" not in limited and "SecurityGroupIngress" not in unrestricted
    # And the provisioner's settings name each group for its policy
    env = _env(default_synth, PROVISIONER)
    limited_lid = logical_id(default_synth.template, "Sandbox/LimitedSecurityGroup/Resource")
    unrestricted_lid = logical_id(default_synth.template, "Sandbox/SecurityGroup/Resource")
    assert env["MANAGED_AGENTS_SANDBOX_LIMITED_SECURITY_GROUP"] == {"Fn::GetAtt": [limited_lid, "GroupId"]}
    assert env["MANAGED_AGENTS_SANDBOX_SECURITY_GROUP"] == {"Fn::GetAtt": [unrestricted_lid, "GroupId"]}


def test_a_limited_deployment_gives_every_policy_the_limited_group(context_variant: Synth) -> None:
    variant = context_variant  # (sandboxNetworking: limited)
    (sg_lid,) = variant.resources("AWS::EC2::SecurityGroup")
    env = _env(variant, PROVISIONER)
    assert env["MANAGED_AGENTS_SANDBOX_LIMITED_SECURITY_GROUP"] == {"Fn::GetAtt": [sg_lid, "GroupId"]}
    assert env["MANAGED_AGENTS_SANDBOX_SECURITY_GROUP"] == {"Fn::GetAtt": [sg_lid, "GroupId"]}


# ------------------------------------------------------------------------------------------------- failed-run release
def test_report_failure_may_start_a_new_run_of_its_own_state_machine_only(default_synth: Synth) -> None:
    statements = _role_statements(default_synth, _role_of(default_synth, REPORT_FAILURE))
    starts = [
        _text(r)
        for st in statements
        if "states:StartExecution" in _as_list(st["Action"])
        for r in _as_list(st["Resource"])
    ]
    assert len(starts) == 1 and starts[0].endswith(STATE_MACHINE)
    assert _allows(statements, "states:DescribeExecution", EXECUTIONS)
    assert _text(_env(default_synth, REPORT_FAILURE)["MANAGED_AGENTS_STATE_MACHINE_ARN"]).endswith(STATE_MACHINE)


# --------------------------------------------------------------------------------------------------------- admin key
def test_the_admin_key_secret_is_generated_as_a_usable_key_and_only_the_api_reads_it(default_synth: Synth) -> None:
    secret_lid = logical_id(default_synth.template, "Secrets/AdminApiKey/Resource")
    generated = default_synth.template["Resources"][secret_lid]["Properties"]["GenerateSecretString"]
    # Then it is 48 letters and digits (KeyService.ensure_bootstrap_key takes >= 32 URL-safe characters)
    assert generated == {"ExcludePunctuation": True, "IncludeSpace": False, "PasswordLength": 48}
    assert _env(default_synth, API)["MANAGED_AGENTS_ADMIN_KEY_SECRET_ARN"] == {"Ref": secret_lid}
    readers = {
        lid
        for lid, res in default_synth.resources("AWS::IAM::Policy").items()
        for st in res["Properties"]["PolicyDocument"]["Statement"]
        if st["Effect"] == "Allow"
        and "secretsmanager:GetSecretValue" in _as_list(st["Action"])
        and any(_text(r) == f"<{secret_lid}>" for r in _as_list(st["Resource"]))
    }
    policies = default_synth.resources("AWS::IAM::Policy")
    assert [policies[p]["Properties"]["Roles"] for p in readers] == [[{"Ref": _role_of(default_synth, API)}]]


def test_the_stack_sets_the_variables_the_lambda_code_reads() -> None:
    from stacks import config as names

    assert names.ENV_ADMIN_KEY_SECRET_ARN == ADMIN_KEY_SECRET_ARN_ENV
    assert names.ENV_SANDBOX_LIMITED_SECURITY_GROUP == SANDBOX_LIMITED_SECURITY_GROUP_ENV
    assert names.ENV_SANDBOX_SECURITY_GROUP == SANDBOX_SECURITY_GROUP_ENV
    assert names.ENV_PROVISIONER_FUNCTION == PROVISIONER_FUNCTION_ENV


# ---------------------------------------------------------------------------------------------------- Fargate Spot
def test_spot_sandboxes_are_opt_in_and_give_the_cluster_the_fargate_capacity_providers(
    default_synth: Synth, context_variant: Synth
) -> None:
    assert _env(default_synth, PROVISIONER)["MANAGED_AGENTS_SANDBOX_CAPACITY_PROVIDER"] == "FARGATE"
    assert default_synth.resources("AWS::ECS::ClusterCapacityProviderAssociations") == {}
    spot = context_variant  # (sandboxSpot: true)
    assert _env(spot, PROVISIONER)["MANAGED_AGENTS_SANDBOX_CAPACITY_PROVIDER"] == "FARGATE_SPOT"
    ((_, association),) = spot.resources("AWS::ECS::ClusterCapacityProviderAssociations").items()
    assert set(association["Properties"]["CapacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}
    # Fargate Spot runs ARM64 tasks (platform 1.4.0+): both task definitions and their images stay arm64
    for synth, arch, platform in ((default_synth, "ARM64", "linux/arm64"), (spot, "ARM64", "linux/arm64")):
        tasks = synth.resources("AWS::ECS::TaskDefinition").values()
        assert [t["Properties"]["RuntimePlatform"]["CpuArchitecture"] for t in tasks] == [arch]
        (assets,) = synth.outdir.glob("*.assets.json")
        images = json.loads(assets.read_text())["dockerImages"].values()
        assert [i["source"]["platform"] for i in images] == [platform]


def test_container_insights_is_a_setting_off_by_default(default_synth: Synth, context_variant: Synth) -> None:
    # (it bills custom metrics and log ingestion per running task: bench/aws_cost_model.py prices it)
    def setting(synth: Synth) -> list[Any]:
        clusters = synth.resources("AWS::ECS::Cluster").values()
        settings = [s for c in clusters for s in c["Properties"]["ClusterSettings"]]
        return [s["Value"] for s in settings if s["Name"] == "containerInsights"]

    assert setting(default_synth) == ["disabled"]
    assert setting(context_variant) == ["enabled"]  # (containerInsights: true)
