"""A failed first deploy, or a `cdk destroy`, never blocks the next deploy (issue 12, item 3).

CloudFormation cannot create a resource whose physical name is taken. A retained resource with a fixed name (a
secret, a log group) outlives a rolled-back first deploy and a destroyed stack, and the next deploy then fails with
"already exists". So: whatever is retained has no fixed name, and what is retained is kept only once the stack that
made it was created (RetainExceptOnCreate), except the deletion-protected tables, which CloudFormation could not
delete in a rollback either (their names are generated, so they never collide).
"""

from __future__ import annotations

from typing import Any

import pytest

from stacks.asl import logical_id
from tests.infra.conftest import Synth

pytestmark = pytest.mark.slow

RETAINING = ("Retain", "RetainExceptOnCreate", "Snapshot")
# Retained with `Retain` on purpose: DynamoDB tables are deletion-protected while retained; the account-level API
# Gateway setting and its CloudWatch role are CDK's (an account setting other APIs may use: CDK keeps them).
API_GATEWAY_ACCOUNT = {"AWS::ApiGateway::Account", "AWS::IAM::Role"}
KEPT_ON_FAILED_CREATE = {"AWS::DynamoDB::Table", *API_GATEWAY_ACCOUNT}


def fixed_names(resource: dict[str, Any]) -> dict[str, str]:
    """The resource's physical-name properties (`*Name`, e.g. Name, LogGroupName, ClusterName) set to a literal."""
    props = resource.get("Properties", {})
    return {k: v for k, v in props.items() if k.endswith("Name") and isinstance(v, str)}


def test_nothing_retained_has_a_fixed_name_and_only_the_tables_outlive_a_failed_create(default_synth: Synth) -> None:
    resources = default_synth.template["Resources"]
    retained = {lid: r for lid, r in resources.items() if r.get("DeletionPolicy") in RETAINING}
    # Given the stack retains its data by default (removalPolicy=retain): tables, buckets, secrets, key, log groups
    assert {r["Type"] for r in retained.values()} >= {
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
    }
    # Then no retained resource has a fixed physical name (one that a second create would collide with)
    assert {lid: fixed_names(r) for lid, r in retained.items() if fixed_names(r)} == {}
    # And a failed first deploy deletes every retained resource it created, but the tables and CDK's API Gateway role
    kept = {lid: r["Type"] for lid, r in retained.items() if r["DeletionPolicy"] != "RetainExceptOnCreate"}
    assert set(kept.values()) <= KEPT_ON_FAILED_CREATE, kept
    assert all(r["UpdateReplacePolicy"] == "Retain" for r in retained.values())


def test_the_state_machine_log_group_is_named_per_stack_creation(default_synth: Synth) -> None:
    group = default_synth.template["Resources"][logical_id(default_synth.template, "SessionLoop/Logs/Resource")]
    name = group["Properties"]["LogGroupName"]
    # Then its name keeps the vended-logs prefix and ends with a part of the stack's id (new at each creation)
    head, tail = name["Fn::Join"][1]
    assert head == "/aws/vendedlogs/states/managed-agents-session-run-"
    assert "AWS::StackId" in str(tail)
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"


def test_secrets_have_generated_names(default_synth: Synth) -> None:
    secrets = default_synth.resources("AWS::SecretsManager::Secret")
    assert len(secrets) == 2 and all("Name" not in s["Properties"] for s in secrets.values())


def test_a_destroy_stack_deletes_everything_it_holds(context_variant: Synth) -> None:
    variant = context_variant  # (removalPolicy: destroy)
    # Then nothing is retained (the API Gateway account role is CDK's, as above)
    retained = {
        lid: r["Type"] for lid, r in variant.template["Resources"].items() if r.get("DeletionPolicy") in RETAINING
    }
    assert set(retained.values()) <= API_GATEWAY_ACCOUNT, retained
