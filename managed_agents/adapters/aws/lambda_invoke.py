"""Synchronous Lambda invocations that ride out the errors Lambda answers before it runs the function.

Every boto3 `Invoke` our code makes (LambdaSandboxProvisioner, LambdaMcpGateway) goes through `invoke`. The errors
retried here are the ones the Lambda API reference (Invoke, "Errors") and the SnapStart troubleshooting guide
describe as refusals that pass with time, where the function has not run, so a retry cannot run anything twice:

| code | HTTP | why |
| --- | --- | --- |
| `TooManyRequestsException` | 429 | throttled: concurrency or request-rate limit |
| `EC2ThrottledException` | 502 | EC2 throttled the network interface of a VPC function |
| `ResourceNotReadyException` | 502 | the function is inactive and its VPC connection is being re-established |
| `ResourceConflictException` | 409 | the function is being created or updated (a deployment in progress) |
| `SnapStartNotReadyException` | 409 | a SnapStart version idle for 14 days is being initialized again |
| `SnapStartTimeoutException` | 408 | restoring the SnapStart snapshot timed out |

`ServiceException` (500) is not among them: the function may have run, and a tools/call or a RunTask must not run
twice; botocore's own retry mode decides for the clients that allow it. The state machine's Lambda tasks retry the
same errors in their Retry blocks (`stacks/constructs/session_loop.py`, `LAMBDA_NOT_READY_ERRORS`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_lambda.type_defs import InvocationResponseTypeDef

# Lambda refused the invocation without running the function, for a reason that passes (the module's table).
RETRYABLE_INVOKE_ERRORS = frozenset(
    {
        "TooManyRequestsException",
        "EC2ThrottledException",
        "ResourceNotReadyException",
        "ResourceConflictException",
        "SnapStartNotReadyException",
        "SnapStartTimeoutException",
    }
)


@dataclass(frozen=True)
class InvokeRetry:
    """Exponential backoff with jitter: attempt n (from 1) waits `base * 2**(n-1)` seconds, at most `cap`, times a
    random factor in [0.5, 1]. The defaults wait about 30 s at most over 8 attempts: enough for throttling and for a
    SnapStart version to come back from Inactive, short enough for the API request waiting on it."""

    attempts: int = 8
    base_seconds: float = 0.25
    cap_seconds: float = 15.0

    def delay(self, attempt: int, jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.0)) -> float:
        return float(min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)) * jitter())


DEFAULT_RETRY = InvokeRetry()


class InvokeRefused(Exception):
    """Lambda refused every attempt (or refused once for a reason a retry cannot fix)."""

    def __init__(self, code: str, message: str, attempts: int) -> None:
        super().__init__(f"{code}: {message}".rstrip(": "))
        self.code = code
        self.message = message
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_INVOKE_ERRORS

    def describe(self) -> str:
        """`TooManyRequestsException: Rate exceeded (after 8 attempts)`, for error messages."""
        detail = str(self)[:300]
        return f"{detail} (after {self.attempts} attempts)" if self.attempts > 1 else detail


def invoke(
    client: LambdaClient,
    function_name: str,
    payload: bytes,
    *,
    retry: InvokeRetry = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
) -> InvocationResponseTypeDef:
    """A RequestResponse invocation; `RETRYABLE_INVOKE_ERRORS` are retried per `retry`, any other ClientError and
    the last retryable one raise InvokeRefused. Transport errors (timeouts, connection failures) propagate as they
    are: the function may have run."""
    attempt = 1
    while True:
        try:
            return client.invoke(FunctionName=function_name, InvocationType="RequestResponse", Payload=payload)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "error")), str(error.get("Message", ""))
            if code not in RETRYABLE_INVOKE_ERRORS or attempt >= retry.attempts:
                raise InvokeRefused(code, message, attempt) from exc
        sleep(retry.delay(attempt))
        attempt += 1
