"""Request-scoped dependencies: the runtime, the authenticated principal, query parsing helpers (the first two
and `call` live with the door, api/edge.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request

from managed_agents.api.edge import authenticate
from managed_agents.api.edge import call as call
from managed_agents.api.edge import runtime as runtime
from managed_agents.domain.clock import parse_rfc3339
from managed_agents.domain.errors import InvalidRequest, PermissionDenied
from managed_agents.domain.events import TimeRange
from managed_agents.services.keys import Principal

# Integer query parameters with the bounds the server enforces, declared so the OpenAPI document shows them (and
# so a number no store can hold is a 400 at the door, never an overflow in SQLite or DynamoDB).
MAX_SAFE_INT = 2**53 - 1  # the largest integer every JSON client reads exactly
Limit = Annotated[int | None, Query(ge=1, le=100, description="page size (default 20)")]
EventLimit = Annotated[int | None, Query(ge=1, le=1000, description="page size (default 1000)")]
Version = Annotated[int | None, Query(ge=1, le=MAX_SAFE_INT)]


async def any_principal(request: Request) -> Principal:
    """Any credential: an API key, an environment key or a work token (endpoints check the scope). The door
    (api/edge.py) authenticated the request before its body was read; this hands the principal to the handler."""
    return await authenticate(request)


async def principal(p: Principal = Depends(any_principal)) -> Principal:
    """An API key: every endpoint except the work queue and a session's own calls accepts nothing else."""
    if p.kind != "api_key":
        raise PermissionDenied(f"{p.describe()} cannot call this endpoint; use an API key")
    return p


def multi(request: Request, name: str) -> list[str]:
    """Array query params in both the SDK's bracket form (`x[]=a`) and the repeated form (`x=a`)."""
    q = request.query_params
    return [*q.getlist(f"{name}[]"), *q.getlist(name)]


def _ts(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {value[:64]!r} is not an RFC 3339 timestamp") from exc


def time_range(request: Request, name: str = "created_at") -> TimeRange:
    q = request.query_params
    return TimeRange(
        gt=_ts(f"{name}[gt]", q.get(f"{name}[gt]")),
        gte=_ts(f"{name}[gte]", q.get(f"{name}[gte]")),
        lt=_ts(f"{name}[lt]", q.get(f"{name}[lt]")),
        lte=_ts(f"{name}[lte]", q.get(f"{name}[lte]")),
    )
