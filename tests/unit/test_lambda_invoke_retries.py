"""Synchronous Lambda invocations ride out what Lambda refuses before running the function (no AWS, no moto).

The first call after a SnapStart version sat idle for 14 days answers SnapStartNotReadyException while Lambda
initializes it again (Lambda developer guide, "Troubleshooting SnapStart errors"): the provisioner's callers (the
API, ModelTurn, the reaper) must wait it out, not fail the user's request.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from managed_agents.adapters.aws.ecs_sandbox_provisioner import LambdaSandboxProvisioner, SandboxLaunchFailed
from managed_agents.adapters.aws.lambda_invoke import DEFAULT_RETRY, RETRYABLE_INVOKE_ERRORS, InvokeRetry

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:managed-agents-provisioner:live"


class ScriptedLambda:
    def __init__(self, *answers: str | dict[str, Any]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, str):
            raise ClientError({"Error": {"Code": answer, "Message": "not now"}}, "Invoke")
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


def _provisioner(fake: ScriptedLambda, sleeps: list[float]) -> LambdaSandboxProvisioner:
    return LambdaSandboxProvisioner(function_name=FUNCTION, lambda_client=fake, sleep=sleeps.append)  # type: ignore[arg-type]


def test_a_snapstart_version_that_is_not_ready_yet_is_waited_for() -> None:
    # Given a provisioner function whose version is being initialized again for three calls
    fake = ScriptedLambda(*["SnapStartNotReadyException"] * 3, {"action": "stop"})
    sleeps: list[float] = []
    # When a session's sandbox is stopped through it
    _provisioner(fake, sleeps).stop("sesn_1", None)
    # Then the fourth call went through, after waits that grew
    assert fake.calls == 4 and len(sleeps) == 3
    steps = [DEFAULT_RETRY.base_seconds * 2**n for n in range(3)]
    assert all(step / 2 <= slept <= step for slept, step in zip(sleeps, steps, strict=True))


def test_a_refusal_that_persists_or_cannot_pass_is_a_readable_failure() -> None:
    # Given a throttled function (every attempt), then a function that does not exist
    fake = ScriptedLambda(*["TooManyRequestsException"] * DEFAULT_RETRY.attempts, "ResourceNotFoundException")
    sleeps: list[float] = []
    provisioner = _provisioner(fake, sleeps)
    # Then the throttling is given up after the policy's attempts, with the count in the message
    given_up = rf"TooManyRequestsException: not now \(after {DEFAULT_RETRY.attempts} attempts\)"
    with pytest.raises(SandboxLaunchFailed, match=given_up):
        provisioner.stop("sesn_1", None)
    assert sum(sleeps) <= 31
    # And a missing function is not retried at all
    with pytest.raises(SandboxLaunchFailed, match=r"ResourceNotFoundException: not now$"):
        provisioner.stop("sesn_1", None)
    assert fake.calls == DEFAULT_RETRY.attempts + 1


def test_the_backoff_doubles_up_to_its_cap_with_jitter_of_at_most_half() -> None:
    policy = InvokeRetry(attempts=10, base_seconds=0.5, cap_seconds=4.0)
    assert [policy.delay(n, lambda: 1.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [policy.delay(n, lambda: 0.5) for n in range(1, 4)] == [0.25, 0.5, 1.0]
    # (a ServiceException may have run the function: it is never among the retried refusals)
    assert "ServiceException" not in RETRYABLE_INVOKE_ERRORS and "SnapStartNotReadyException" in RETRYABLE_INVOKE_ERRORS
