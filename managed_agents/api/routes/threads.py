"""`client.beta.sessions.threads` and `client.beta.sessions.threads.events` (api-reference §2.3.3);
services/threads.py has the rules."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from managed_agents.api import betas
from managed_agents.api.deps import EventLimit, any_principal, call, multi, principal, runtime
from managed_agents.api.edge import edge_router
from managed_agents.api.routes.sessions import open_event_stream
from managed_agents.domain.events import JsonObject
from managed_agents.services.common import check_limit
from managed_agents.services.keys import Principal
from managed_agents.services.threads import ThreadService

router = edge_router("/v1/sessions/{session_id}/threads", tags=["sessions"], beta=betas.SESSIONS_API)
Auth = Annotated[Principal, Depends(principal)]
AnyAuth = Annotated[Principal, Depends(any_principal)]  # reads: also the session's worker, as for session events


def service(request: Request) -> ThreadService:
    return ThreadService(runtime(request).sessions)


Threads = Annotated[ThreadService, Depends(service)]


@router.get("")
async def list_threads(
    session_id: str,
    request: Request,
    p: AnyAuth,
    t: Threads,
    limit: EventLimit = None,
    page: str | None = None,
    statuses: Annotated[list[str] | None, Query(alias="statuses[]")] = None,
) -> JsonObject:
    size = check_limit(limit, default=1000, maximum=1000)
    data, nxt = await call(t.list_threads, p, session_id, statuses=multi(request, "statuses"), limit=size, page=page)
    return {"data": data, "next_page": nxt}


@router.get("/{thread_id}")
async def retrieve_thread(session_id: str, thread_id: str, p: AnyAuth, t: Threads) -> JsonObject:
    return await call(t.retrieve, p, session_id, thread_id)


@router.post("/{thread_id}/archive")
async def archive_thread(session_id: str, thread_id: str, p: Auth, t: Threads) -> JsonObject:
    return await call(t.archive, p, session_id, thread_id)


@router.get("/{thread_id}/events")
async def list_thread_events(
    session_id: str,
    thread_id: str,
    p: AnyAuth,
    t: Threads,
    limit: EventLimit = None,
    page: str | None = None,
) -> Response:
    size = check_limit(limit, default=1000, maximum=1000)
    data, nxt = await call(t.list_events, p, session_id, thread_id, limit=size, page=page)
    body = '{"data":[' + ",".join(data) + '],"next_page":' + json.dumps(nxt) + "}"
    return Response(body, media_type="application/json")


@router.get("/{thread_id}/stream")
async def stream_thread_events(
    session_id: str,
    thread_id: str,
    request: Request,
    p: AnyAuth,
    t: Threads,
    event_deltas: Annotated[list[str] | None, Query(alias="event_deltas[]")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    log_id = await call(t.log_id, p, session_id, thread_id)
    return await open_event_stream(request, p, session_id, log_id, last_event_id)
