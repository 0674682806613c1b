"""Context values change the template as documented in stacks/config.py."""

from __future__ import annotations

import pytest

from stacks.asl import logical_id, state_machine_definition
from tests.infra.conftest import Synth

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def variant(context_variant: Synth) -> Synth:
    return context_variant


def test_limited_networking_allows_only_https_egress(variant: Synth) -> None:
    # sandboxNetworking=limited caps every sandbox: the limited group is the only one
    _, sg = variant.one("AWS::EC2::SecurityGroup")
    egress = sg["Properties"]["SecurityGroupEgress"]
    assert [(e["IpProtocol"], e["FromPort"], e["ToPort"], e["CidrIp"]) for e in egress] == [
        ("tcp", 443, 443, "0.0.0.0/0")
    ]
    assert "SecurityGroupIngress" not in sg["Properties"]


def test_unrestricted_networking_allows_all_egress_and_no_ingress(default_synth: Synth) -> None:
    # (the default synth has one group per networking policy; this is the unrestricted one)
    sg = default_synth.template["Resources"][logical_id(default_synth.template, "Sandbox/SecurityGroup/Resource")]
    assert sg["Properties"]["SecurityGroupEgress"] == [
        {"CidrIp": "0.0.0.0/0", "Description": "Allow all outbound traffic by default", "IpProtocol": "-1"}
    ]
    assert "SecurityGroupIngress" not in sg["Properties"]


def test_turn_limit_heartbeat_and_names_follow_context(variant: Synth) -> None:
    refs = {
        lid: f"arn:aws:lambda:us-east-1:123456789012:function:{lid}" for lid in variant.resources("AWS::Lambda::Alias")
    }
    states = state_machine_definition(variant.template, refs=refs)["States"]
    # (the turn limit reaches ModelTurn, which hands the run to a continuation once it is reached)
    assert states["ModelTurn"]["Parameters"]["Payload"]["turns_per_execution"] == 7
    assert states["ToolWait"]["HeartbeatSeconds"] == 120
    assert states["ContinueAsNew"]["Parameters"]["StateMachineArn"].endswith(":stateMachine:acme-agents-session-run")
    # (the secrets have generated names, so no second installation can collide on them; see test_stack_redeploy.py)
    assert [r["Properties"].get("Name") for r in variant.resources("AWS::SecretsManager::Secret").values()] == [
        None,
        None,
    ]


def test_destroy_removal_policy_and_sizes(variant: Synth) -> None:
    for table in variant.resources("AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Delete" and table["Properties"]["DeletionProtectionEnabled"] is False
    _, task = variant.one("AWS::ECS::TaskDefinition")
    assert (task["Properties"]["Cpu"], task["Properties"]["Memory"]) == ("2048", "4096")
    assert {g["Properties"]["RetentionInDays"] for g in variant.resources("AWS::Logs::LogGroup").values()} == {7}


def test_model_defaults_reach_the_model_turn_lambda(variant: Synth) -> None:
    fn_lid = logical_id(variant.template, "ModelTurn/Function/Resource")
    env = variant.template["Resources"][fn_lid]["Properties"]["Environment"]["Variables"]
    assert env["MANAGED_AGENTS_MAX_TOKENS"] == "16000"
    assert env["ANTHROPIC_BASE_URL"] == "https://llm.example.internal"
    assert "MODEL_API_KEY_SECRET_ARN" in env
