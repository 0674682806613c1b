"""One error hierarchy for the whole platform.

Each class carries the HTTP status and the `error.type` of the wire envelope (api-reference §1.4); an optional
`error_code` goes to `error.details.error_code`, which the SDK maps to its specific exception classes.
Adapters translate their own failures (sqlite3, botocore) into these at the boundary.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"
    retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, error_code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.details = dict(details or {})

    def envelope_details(self) -> dict[str, Any] | None:
        details = dict(self.details)
        if self.error_code:
            details["error_code"] = self.error_code
        return details or None


class InvalidRequest(ApiError):
    status = 400
    error_type = "invalid_request_error"
    retryable = False


class AuthenticationFailed(ApiError):
    status = 401
    error_type = "authentication_error"
    retryable = False


class PermissionDenied(ApiError):
    status = 403
    error_type = "permission_error"
    retryable = False


class NotFound(ApiError):
    status = 404
    error_type = "not_found_error"
    retryable = False


class Conflict(ApiError):
    """A semantic conflict (stale version, wrong state): retrying the same request cannot succeed."""

    status = 409
    error_type = "conflict_error"
    retryable = False


class VersionConflict(Conflict):
    """A stale `version` precondition on an update: 409, with the error type the hosted API gives it
    (api-reference §9: `invalid_request_error`)."""

    error_type = "invalid_request_error"


class PreconditionFailed(ApiError):
    status = 412
    error_type = "invalid_request_error"
    retryable = False


class RequestTooLarge(ApiError):
    """413 with the hosted API's `request_too_large` type (its Messages API answers oversized bodies so)."""

    status = 413
    error_type = "request_too_large"
    retryable = False


class RateLimited(ApiError):
    status = 429
    error_type = "rate_limit_error"


class ServiceUnavailable(ApiError):
    status = 503
    error_type = "api_error"


class GatewayTimeout(ApiError):
    """The request did not finish within the server's deadline (the SDK's GatewayTimeoutError)."""

    status = 504
    error_type = "timeout_error"


class DuplicateEvent(Exception):
    """An append whose event ids are already in the log: the batch was written before (a re-run turn)."""

    def __init__(self, event_ids: list[str]) -> None:
        super().__init__(f"events already appended: {event_ids[:3]}")
        self.event_ids = event_ids


class LogMoved(Exception):
    """A conditional append (`EventStore.append(expected_last_seq=)`) found the log past the position its writer saw:
    other events were logged meanwhile, and nothing was appended."""

    def __init__(self, expected_last_seq: int) -> None:
        super().__init__(f"the log moved past seq {expected_last_seq}")
        self.expected_last_seq = expected_last_seq


class StaleRevision(Exception):
    """A conditional resource write lost a race (optimistic concurrency on the stored revision)."""


def too_large_message(limit: int, size: int | None = None, *, at_least: bool = False) -> str:
    """What a request body over the deployment's limit is told (the API's 413, and API Gateway's own responses)."""
    if size is None:
        what = "the request body is too large"
    else:
        what = f"the request body is {'more than ' if at_least else ''}{size:,} bytes"
    return (
        f"{what}; this deployment accepts at most {limit:,} bytes per request. Send large content (images, PDFs, "
        "other documents) by reference instead of inline: a URL source, or a file uploaded beforehand"
    )
