"""Request-scoped dependencies: the runtime, the authenticated principal, query parsing helpers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from anyio import to_thread
from fastapi import Depends, Header, Request

from managed_agents.domain.clock import parse_rfc3339
from managed_agents.domain.errors import InvalidRequest, PermissionDenied
from managed_agents.domain.events import TimeRange
from managed_agents.services.keys import Principal

if TYPE_CHECKING:
    from managed_agents.wiring import Runtime

T = TypeVar("T")


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def call(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a synchronous service call (ports are sync) off the event loop."""
    return await to_thread.run_sync(lambda: fn(*args, **kwargs))


async def any_principal(
    request: Request,
    authorization: str | None = Header(None),
    x_api_key: str | None = Header(None),
    anthropic_workspace_id: str | None = Header(None),
) -> Principal:
    """Any credential: an API key, an environment key or a work token (endpoints check the scope)."""
    secret = x_api_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            secret = token.strip()
    rt = runtime(request)
    p = await call(rt.keys.authenticate, secret)
    if anthropic_workspace_id and anthropic_workspace_id != p.workspace_id:
        raise PermissionDenied(
            f"anthropic-workspace-id: this API key belongs to workspace {p.workspace_id!r},"
            f" not {anthropic_workspace_id!r}"
        )
    return p


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
