"""`python app.py` synthesizes offline, cfn-lint is clean, and cdk-nag (AwsSolutions) has nothing unacknowledged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

from stacks.config import SUPPORTED_REGIONS
from tests.infra.conftest import JSII_ENV, Synth

pytestmark = pytest.mark.slow

ACK = "aws:cdk:acknowledged-rules"


def test_python_app_py_synthesizes_the_stack_offline(default_synth: Synth) -> None:
    # Given `python app.py` run with no AWS account, region or credentials (the session fixture)
    # Then the template holds the platform's main resources
    types = {r["Type"] for r in default_synth.template["Resources"].values()}
    for expected in (
        "AWS::ApiGateway::RestApi",
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
        "AWS::KMS::Key",
        "AWS::StepFunctions::StateMachine",
        "AWS::ECS::Cluster",
        "AWS::ECS::TaskDefinition",
        "AWS::Events::EventBus",
        "AWS::Events::Rule",
        "AWS::Scheduler::ScheduleGroup",
    ):
        assert expected in types, expected
    assert {"ApiUrl", "AdminApiKeySecretArn", "ModelApiKeySecretArn", "StateMachineArn"} <= set(
        default_synth.template["Outputs"]
    )


def test_cfn_lint_reports_nothing_on_the_synthesized_template_in_any_supported_region(default_synth: Synth) -> None:
    # Given the repo's cfn-lint configuration (.cfnlintrc.yaml ignores only W3005, see there)
    # When cfn-lint checks the synthesized template in every region the docs name (stacks/config.py)
    regions = list(SUPPORTED_REGIONS)
    matches = lint_file(default_synth.template_path, ManualArgs(ignore_checks=["W3005"], regions=regions))
    # Then there is no error, warning or informational finding
    assert [f"{m.rule.id} {m.message} ({m.path})" for m in matches] == []


def test_cfn_lint_knows_the_regions_where_the_stack_cannot_run(default_synth: Synth) -> None:
    # Given regions without SnapStart (Lambda guide: Taipei, New Zealand; and GovCloud)
    outside = ["ap-east-2", "ap-southeast-6", "us-gov-west-1"]
    # When cfn-lint checks the template there, Then it flags SnapStart in each (what the test above relies on)
    matches = lint_file(default_synth.template_path, ManualArgs(ignore_checks=["W3005"], regions=outside))
    flagged = {r for m in matches if m.rule.id == "E2530" for r in outside if r in m.message}
    assert flagged == set(outside)
    assert not set(outside) & set(SUPPORTED_REGIONS)


def test_cdk_nag_runs_at_synth_with_no_unacknowledged_finding(default_synth: Synth) -> None:
    # Then the synth succeeded with the AwsSolutions pack attached: the validation report lists no violation
    report = json.loads((default_synth.outdir / "validation-report.json").read_text())
    assert [v["ruleName"] for plugin in report["pluginReports"] for v in plugin.get("violations", [])] == []


def test_every_acknowledgement_carries_a_reason(default_synth: Synth) -> None:
    # Given every rule acknowledged anywhere in the stack
    acknowledged = {
        rule: reason
        for entries in default_synth.metadata.values()
        for entry in entries
        if entry["type"] == ACK
        for rule, reason in entry["data"].items()
    }
    nag = {rule: reason for rule, reason in acknowledged.items() if "AwsSolutions-" in rule}
    # Then there are acknowledgements (the nag pack ran and found what they answer) and each says why
    assert len(nag) >= 10
    for rule, reason in nag.items():
        assert len(reason) >= 40, f"{rule}: reason too thin: {reason!r}"
    # And no finding is waved through wholesale: IAM5 acknowledgements always name the finding they accept
    for rule in nag:
        if "AwsSolutions-IAM5" in rule:
            assert "IAM5[" in rule, rule


def test_an_unacknowledged_finding_fails_the_synth(tmp_path: os.PathLike[str]) -> None:
    # Given an app with the same nag wiring and one non-compliant resource (a bucket without SSL enforcement, logs)
    os.environ.update(JSII_ENV)
    import aws_cdk as cdk
    from aws_cdk import aws_s3 as s3

    from stacks.nag import attach_nag

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bad")
    s3.Bucket(stack, "Plain")
    attach_nag(app)
    # When it is synthesized, Then the synthesis fails on the AwsSolutions findings
    with pytest.raises(Exception, match=r"[Vv]alidation"):
        app.synth()


def test_every_acknowledgement_answers_a_finding_that_occurs(default_synth: Synth, tmp_path: os.PathLike[str]) -> None:
    # Given the same app synthesized with acknowledgements switched off (the audit context switch)
    os.environ.update(JSII_ENV)
    import aws_cdk as cdk

    from app import build_app
    from stacks.nag import AUDIT_CONTEXT_KEY

    app, _ = build_app(cdk.App(outdir=str(tmp_path), context={AUDIT_CONTEXT_KEY: False}))
    with pytest.raises(Exception, match=r"[Vv]alidation"):
        app.synth()
    report = json.loads((Path(tmp_path) / "validation-report.json").read_text())
    findings = {
        (v["ruleName"], c["constructPath"])
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }
    # When the acknowledgements of the real synth are matched against those findings (an acknowledgement covers its
    # construct and everything below it)
    acknowledged = {
        (rule.removeprefix("Annotation::"), path.lstrip("/"))
        for path, entries in default_synth.metadata.items()
        for entry in entries
        if entry["type"] == ACK
        for rule in entry["data"]
        if "AwsSolutions-" in rule
    }

    def covers(ack: tuple[str, str], finding: tuple[str, str]) -> bool:
        return ack[0] == finding[0] and (finding[1] == ack[1] or finding[1].startswith(ack[1] + "/"))

    # Then every finding is acknowledged and every acknowledgement answers a finding (none is stale or speculative)
    assert findings, "the audit synth found nothing: cdk-nag did not run"
    assert sorted(f for f in findings if not any(covers(a, f) for a in acknowledged)) == []
    assert sorted(a for a in acknowledged if not any(covers(a, f) for f in findings)) == []
