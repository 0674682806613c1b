"""cdk-nag (3.x) wiring and the one way this app acknowledges a finding: on the construct, with a true reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Stack, Token, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# Context switch for the acknowledgement audit (tests/infra): `false` makes `acknowledge` a no-op, so the synth reports
# every finding and a test can check that each acknowledgement answers a finding that really occurs.
AUDIT_CONTEXT_KEY = "nagAcknowledgements"


def attach_nag(app: App) -> None:
    """Run the AwsSolutions pack at synth; any unacknowledged finding fails the synthesis."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def acknowledge(construct: IConstruct, rule: str, reason: str, *findings: str) -> None:
    """Acknowledge `rule` on `construct` (and its children), or only the listed findings of it.

    cdk-nag 3 names each finding of a multi-finding rule `Rule[Finding]` (e.g. `AwsSolutions-IAM5[Resource::*]`)
    and has no prefix matching, so a wildcard-resource acknowledgement lists exactly the resources it covers.
    """
    if construct.node.try_get_context(AUDIT_CONTEXT_KEY) is False:
        return
    ids = [f"{rule}[{finding}]" for finding in findings] if findings else [rule]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


def arn_finding(scope: IConstruct, service: str, resource: str) -> str:
    """The IAM5 finding of the wildcard resource `arn:<partition>:service:<region>:<account>:resource` in `scope`'s
    stack, named as cdk-nag names it: region and account as tokens on an environment-agnostic stack, as written on a
    stack with an account and region (every `cdk deploy` with credentials: the CDK CLI sets CDK_DEFAULT_ACCOUNT,
    and app.py gives the stack that environment)."""
    stack = Stack.of(scope)
    region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    return f"Resource::arn:<AWS::Partition>:{service}:{region}:{account}:{resource}"
