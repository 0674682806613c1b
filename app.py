#!/usr/bin/env python3
"""The CDK app: `python app.py` (or `cdk synth`) synthesizes the Managed Agents stack offline.

Settings come from CDK context (see stacks/config.py for every key and its default); cdk-nag's AwsSolutions pack runs
at synth and any unacknowledged finding fails it. Deploying: docs/deploy-aws.md.
"""

from __future__ import annotations

import os

import aws_cdk as cdk

from stacks.config import SUPPORTED_REGIONS, PlatformConfig
from stacks.managed_agents_stack import ManagedAgentsStack
from stacks.nag import attach_nag

# Context this app relies on, set here so `python app.py` (which does not read cdk.json) behaves as `cdk synth`.
FEATURE_FLAGS = {
    # aws:cdk:path metadata on every resource, as the CDK CLI writes it (tests and stacks/asl.py find resources by it)
    "aws:cdk:enable-path-metadata": True,
    # server access logs are granted by a bucket policy, not the legacy LogDeliveryWrite ACL (cfn-lint W3045)
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def build_app(app: cdk.App | None = None) -> tuple[cdk.App, ManagedAgentsStack]:
    """Build the app (tests pass an App with their own outdir and context)."""
    app = app or cdk.App()
    for flag, value in FEATURE_FLAGS.items():
        if app.node.try_get_context(flag) is None:
            app.node.set_context(flag, value)
    config = PlatformConfig.from_context(app.node)
    env = None
    if os.environ.get("CDK_DEFAULT_ACCOUNT") or config.vpc_id:
        env = cdk.Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
        )
    stack = ManagedAgentsStack(
        app,
        config.stack_name,
        config=config,
        env=env,
        description="Self-hosted Managed Agents platform (API, session loop, sandboxes, triggers)",
    )
    cdk.Tags.of(stack).add("app", "managed-agents")
    region = env.region if env else None
    if region and not cdk.Token.is_unresolved(region) and region not in SUPPORTED_REGIONS and not config.lwa_layer_arn:
        cdk.Annotations.of(stack).add_warning_v2(
            "managed-agents:region",
            f"{region} is not a supported region (stacks/config.py SUPPORTED_REGIONS, docs/deploy-aws.md): the Lambda "
            "Web Adapter layer or SnapStart may be missing there; set -c lwaLayerArn=... (and -c snapStart=false).",
        )
    if config.nag:
        attach_nag(app)
    return app, stack


if __name__ == "__main__":
    built, _ = build_app()
    built.synth()
