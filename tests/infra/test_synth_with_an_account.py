"""`cdk deploy` with credentials synthesizes the stack for a concrete account and region, and that synth passes.

The CDK CLI sets CDK_DEFAULT_ACCOUNT/CDK_DEFAULT_REGION from the caller's credentials, and app.py then gives the stack
that environment: ARNs the stack builds carry the account and region as written, not as tokens. cdk-nag names a
wildcard finding after the ARN as synthesized, so acknowledgements written with `<AWS::Region>:<AWS::AccountId>`
stopped matching and every real deploy failed at synth with AwsSolutions-IAM5 errors, while the env-agnostic synth
the other tests use passed (found with the real CDK CLI on a fresh clone). `stacks.nag.arn_finding` names both.

Runs `python app.py` as the CLI does (a subprocess); the availability-zone lookup a deploy makes with credentials
comes from context here (CDK_CONTEXT_JSON, as the CLI passes cdk.context.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import JSII_ENV, REPO_ROOT, STACK_NAME

ACCOUNT = "123456789012"
REGION = "eu-west-1"


def test_a_synth_for_an_account_and_region_passes_cdk_nag(tmp_path: Path) -> None:
    # Given the environment the CDK CLI gives the app on `cdk deploy` with credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "AWS_"))}
    context = {f"availability-zones:account={ACCOUNT}:region={REGION}": [f"{REGION}{z}" for z in "abc"]}
    env.update(
        JSII_ENV,
        CDK_OUTDIR=str(tmp_path),
        CDK_DEFAULT_ACCOUNT=ACCOUNT,
        CDK_DEFAULT_REGION=REGION,
        CDK_CONTEXT_JSON=json.dumps(context),
    )
    # When the app synthesizes
    proc = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    # Then cdk-nag reports nothing unacknowledged, and the template is the one for that account and region
    assert proc.returncode == 0, f"python app.py failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    template = (tmp_path / f"{STACK_NAME}.template.json").read_text()
    assert f"{REGION}:{ACCOUNT}:" in template
