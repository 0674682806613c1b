"""`client.beta.sessions` and `client.beta.sessions.events` (api-reference §2.3, §5)."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from managed_agents.adapters.local.request_priority import PRIORITY
from managed_agents.api import betas
from managed_agents.api.deps import (
    EventLimit,
    Limit,
    Version,
    any_principal,
    call,
    multi,
    principal,
    runtime,
    time_range,
)
from managed_agents.api.edge import REPLAYS_RETRIES_EXTRA, credential, edge_router, sdk_retry
from managed_agents.api.errors import envelope, request_id
from managed_agents.api.sse import INPUTS_HEADER, STREAM_END, event_stream
from managed_agents.domain.errors import ApiError, InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import check_limit, page_query
from managed_agents.services.keys import Principal
from managed_agents.services.materials import live_files_etag
from managed_agents.services.sessions import decode_seq_cursor, encode_seq_cursor
from managed_agents.wire.sessions import EventSendParams, SessionCreateParams, SessionUpdateParams

if TYPE_CHECKING:
    from managed_agents.wiring import Runtime

router = edge_router("/v1/sessions", tags=["sessions"], beta=betas.SESSIONS_API)
Auth = Annotated[Principal, Depends(principal)]
AnyAuth = Annotated[Principal, Depends(any_principal)]  # session-level calls: also the session's worker
STATUSES = ("rescheduling", "running", "idle", "terminated")


@router.post("", openapi_extra=REPLAYS_RETRIES_EXTRA)
async def create_session(body: SessionCreateParams, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).sessions.create, p.workspace_id, body)


@router.get("")
async def list_sessions(
    request: Request,
    p: Auth,
    limit: Limit = None,
    page: str | None = None,
    order: Literal["asc", "desc"] = "desc",
    include_archived: bool = False,
    agent_id: str | None = None,
    agent_version: Version = None,
    deployment_id: str | None = None,
    memory_store_id: str | None = None,
    statuses: Annotated[list[str] | None, Query(alias="statuses[]")] = None,
    created_gt: Annotated[str | None, Query(alias="created_at[gt]")] = None,
    created_gte: Annotated[str | None, Query(alias="created_at[gte]")] = None,
    created_lt: Annotated[str | None, Query(alias="created_at[lt]")] = None,
    created_lte: Annotated[str | None, Query(alias="created_at[lte]")] = None,
) -> JsonObject:
    wanted = multi(request, "statuses")
    for s in wanted:
        if s not in STATUSES:
            raise InvalidRequest(f"statuses: {s!r} is not one of {', '.join(STATUSES)}")
    if agent_version is not None and agent_id is None:
        raise InvalidRequest("agent_version: requires agent_id")
    query = page_query(page, limit, order=order, include_archived=include_archived, created=time_range(request))
    if agent_id is not None:
        query.equals["agent_id"] = agent_id
    if agent_version is not None:
        query.equals["agent_version"] = agent_version
    if deployment_id is not None:
        query.equals["deployment_id"] = deployment_id
    if wanted:
        query.any_of["status"] = tuple(wanted)
    sessions = runtime(request).sessions
    data, nxt, prev = await call(sessions.list_sessions, p.workspace_id, query, memory_store_id=memory_store_id)
    return {"data": data, "next_page": nxt, "prev_page": prev}


@router.get("/{session_id}")
async def retrieve_session(session_id: str, request: Request, p: AnyAuth) -> JsonObject:
    rt = runtime(request)
    rec = await call(rt.sessions.check_access, p, session_id)
    return await call(rt.sessions.render, rec)


@router.post("/{session_id}")
async def update_session(session_id: str, body: SessionUpdateParams, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).sessions.update, p.workspace_id, session_id, body)


@router.post("/{session_id}/archive")
async def archive_session(session_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).sessions.archive, p.workspace_id, session_id)


@router.delete("/{session_id}")
async def delete_session(session_id: str, request: Request, p: Auth) -> JsonObject:
    return await call(runtime(request).sessions.delete, p.workspace_id, session_id)


@router.post("/{session_id}/events")
async def send_events(session_id: str, body: EventSendParams, request: Request, p: AnyAuth) -> JsonObject:
    data = await call(runtime(request).sessions.send, p, session_id, body.events, retried=sdk_retry(request))
    return {"data": data}


@router.get("/{session_id}/events")
async def list_events(
    session_id: str,
    request: Request,
    p: AnyAuth,
    limit: EventLimit = None,
    page: str | None = None,
    order: Literal["asc", "desc"] = "asc",
    types: Annotated[list[str] | None, Query(alias="types[]")] = None,
    created_gt: Annotated[str | None, Query(alias="created_at[gt]")] = None,
    created_gte: Annotated[str | None, Query(alias="created_at[gte]")] = None,
    created_lt: Annotated[str | None, Query(alias="created_at[lt]")] = None,
    created_lte: Annotated[str | None, Query(alias="created_at[lte]")] = None,
    x_next_pages: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    # Extension, not in the official API and invisible to the SDK (which never sends the header): the request
    # header `x-next-pages: N` (1-32) on a newest-first listing without filters (order=desc, no types[], no
    # created_at[...]) asks for the cursors of the next N pages of the same limit; they come back in the response
    # header `x-next-pages`, comma-separated in listing order, the first one equal to `next_page`. A client (the
    # console) can then fetch a long history's pages concurrently instead of one after another, and the cursors
    # stay opaque to it. Any other listing, or the last page, gets no such header.
    size = check_limit(limit, default=1000, maximum=1000)
    types_ = multi(request, "types")
    processed = time_range(request)
    wanted = _next_pages_wanted(x_next_pages)
    data, nxt = await call(
        runtime(request).sessions.list_events,
        p,
        session_id,
        limit=size,
        order=order,
        page=page,
        types=types_,
        processed=processed,
    )
    headers: dict[str, str] = {}
    if wanted and nxt and order == "desc" and not types_ and processed.is_empty():
        headers["x-next-pages"] = ",".join(next_desc_cursors(nxt, size, wanted))
    # the events are already wire JSON (spliced from the log's stored text): no decode/encode round trip
    body = '{"data":[' + ",".join(data) + '],"next_page":' + json.dumps(nxt) + "}"
    return Response(body, media_type="application/json", headers=headers)


MAX_NEXT_PAGES = 32


def _next_pages_wanted(value: str | None) -> int:
    if value is None:
        return 0
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_NEXT_PAGES:
        raise InvalidRequest(f"x-next-pages: must be an integer between 1 and {MAX_NEXT_PAGES}, got {value[:40]!r}")
    return n


def next_desc_cursors(next_page: str, limit: int, count: int) -> list[str]:
    """Cursors of the `count` newest-first pages of `limit` events from the one `next_page` names: the log's
    sequence is gapless from 1 (EventStore), so the k-th of them lists the events below seq `below - k * limit`."""
    below = decode_seq_cursor(next_page, "desc")
    if below is None:
        return []
    return [encode_seq_cursor(seq, "desc") for seq in range(below, 1, -limit)[:count]]


@router.get("/{session_id}/events/stream")
async def stream_events(
    session_id: str,
    request: Request,
    p: AnyAuth,
    event_deltas: Annotated[list[str] | None, Query(alias="event_deltas[]")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    await call(runtime(request).sessions.check_access, p, session_id)
    return await open_event_stream(request, p, session_id, session_id, last_event_id)


async def announced_inputs_etag(rt: Runtime, workspace_id: str, session_id: str) -> str | None:
    """What a sandbox's `GET /v1/sessions/{id}/inputs` would answer as its ETag: one read of the session's record (the
    stream's own recheck keeps the work token honest). None when the session is gone: no announcement, the sandbox
    asks and is told why."""
    try:
        return live_files_etag(await call(rt.sessions.record, workspace_id, session_id))
    except NotFound:
        return None


async def open_event_stream(
    request: Request, p: Principal, session_id: str, log_id: str, last_event_id: str | None
) -> StreamingResponse:
    """The SSE stream of a log (`log_id`: the session's, or a child thread's, services/threads.py) of a session the
    caller may read (checked by the caller)."""
    rt = runtime(request)
    deltas = multi(request, "event_deltas")
    for d in deltas:
        if d not in ("agent.message", "agent.thinking"):
            raise InvalidRequest(f"event_deltas: {d!r} is not one of agent.message, agent.thinking")
    # Subscribe before reading the log: no append can be missed.
    subscription = rt.notifier.subscribe(log_id, previews=frozenset(deltas))
    if last_event_id:
        ev = await call(rt.events.get, log_id, last_event_id)
        if ev is None:
            subscription.close()
            raise InvalidRequest(f"Last-Event-ID: {last_event_id!r} is not an event of session {session_id!r}")
        after = ev.seq
    else:
        after = await call(rt.events.last_seq, log_id)
    req_id = request_id(request)

    async def still_exists() -> bool:
        try:
            await call(rt.sessions.record, p.workspace_id, session_id)
            return True
        except NotFound:
            return False

    secret = credential(request)

    async def recheck() -> None:
        """The credential still holds and still reaches this session (revoked keys, stopped work items)."""
        now = rt.keys.cached(secret)
        if now is None:
            now = await call(rt.keys.authenticate, secret)
        if now.kind == "api_key":  # any key of the workspace reaches the session: only deletion remains, and that
            return  # is the stream's own check (still_exists), not one more record read here
        try:
            await call(rt.sessions.check_access, now, session_id)
        except NotFound:  # deleted: the stream ends with session.deleted, as it always has
            return

    def error_body(exc: Exception) -> dict[str, Any]:
        if isinstance(exc, ApiError):
            return envelope(exc.error_type, exc.message, req_id, exc.envelope_details())
        return envelope("api_error", "the event stream failed; re-open it and re-list events", req_id)

    inputs_etag = None
    if p.kind == "work" and request.headers.get(INPUTS_HEADER) == "announce":  # a Fargate sandbox's worker
        inputs_etag = functools.partial(announced_inputs_etag, rt, p.workspace_id, session_id)
    body = event_stream(
        store=rt.events,
        session_id=log_id,
        subscription=subscription,
        after_seq=after,
        ping_seconds=rt.settings.sse_ping_seconds,
        max_seconds=rt.settings.sse_max_seconds,
        deleted_event=lambda: rt.sessions.deleted_event(session_id),
        still_exists=still_exists,
        error_body=error_body,
        recheck=recheck,
        yield_to=PRIORITY.wait_async,
        inputs_etag=inputs_etag,
    )
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    request.scope[STREAM_END] = subscription.end  # a graceful shutdown ends the stream (api/server.py)
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)
