"""The event send (`POST /v1/sessions/{session_id}/events`, one per user turn) without the framework's per-request
layers: a pure ASGI middleware just inside `RequestIdMiddleware` answers it with the same door, the same body field
and response field, the same service call and the same error rendering as the route in api/routes/sessions.py.

What it skips is the work FastAPI and Starlette do around a handler on every request: the exception and exit-stack
middlewares, matching the path against every router in turn, the request/response wrappers and solving the route's
dependencies: 0.5-1 ms of the event loop's CPU per send on the 2-core development machine (the app called in
process), beside ~1.3 ms for the service call itself.

Anything it does not answer exactly as the route would goes to the app unchanged, before or after the body is read
(the body is replayed): a request with an `Idempotency-Key` (the door's replay records), a body that is not
`application/json`, a body that does not parse or validate (the app's 400 names the field), and every other path
or method. The door's own refusals (authentication, `anthropic-beta`, the body's cap and deadline) and the service's
errors are rendered by the app's ApiError handler (`api_error_response`); anything else propagates to
`RequestIdMiddleware`, which answers the 500 envelope as it does for the route.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from managed_agents.api import betas
from managed_agents.api.edge import _BUDGET, EdgeRoute, _budget, authenticate, call, call_on_loop, runtime, sdk_retry
from managed_agents.api.errors import api_error_response
from managed_agents.api.routes import sessions as sessions_routes
from managed_agents.domain.errors import ApiError
from managed_agents.wire.sessions import UserInterruptParams, UserMessageParams

SEND_ROUTE = "/v1/sessions/{session_id}/events"
# what a send made on the loop may hold (edge.call_on_loop): events checked against where the log ends only, never
# against its folded state (a tool result or a confirmation may fold the whole log)
_LIGHT = (UserMessageParams, UserInterruptParams)
_SEND_PATH = re.compile(r"/v1/sessions/([^/]+)/events")  # Starlette's `{name}` (str): one non-empty segment


class HotRoutes:
    """Pure ASGI: the event send answered here, every other request passed on (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._send_route: EdgeRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        found = _SEND_PATH.fullmatch(scope["path"])
        route = self._route() if found else None
        if found is None or route is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "idempotency-key" in headers or not _is_json(headers.get("content-type")):
            await self.app(scope, receive, send)
            return
        await self._send_events(route, found.group(1), scope, receive, send, headers)

    def _route(self) -> EdgeRoute | None:
        """The send route (its beta rule, body cap, body field and response field)."""
        if self._send_route is None:
            for r in sessions_routes.router.routes:
                if isinstance(r, EdgeRoute) and r.path == SEND_ROUTE and "POST" in (r.methods or ()):
                    self._send_route = r
                    break
        return self._send_route

    async def _send_events(
        self, route: EdgeRoute, session_id: str, scope: Scope, receive: Receive, send: Send, headers: Headers
    ) -> None:
        request = Request(scope, receive)
        response: Response | None = None
        token = _BUDGET.set(_budget(request, write=True))
        try:
            # the door (EdgeRoute.get_route_handler), in its order, then the route's body field and handler
            p = await authenticate(request)
            betas.check(betas.parse(headers.getlist("anthropic-beta")), route.beta)
            request, body = await route._with_body(request)
            params = _params(route, body)
            if params is not None:
                rt = runtime(request)
                retried = sdk_retry(request)
                # a first try of plain messages and interrupts: a bounded write, made on the loop (call_on_loop)
                light = rt.sends_on_loop and not retried and all(isinstance(e, _LIGHT) for e in params.events)
                data = await (call_on_loop if light else call)(
                    rt.sessions.send, p, session_id, params.events, retried=retried
                )
                response = _json_response(route, {"data": data})
        except ApiError as exc:
            response = api_error_response(request, exc)
        finally:
            _BUDGET.reset(token)
        if response is None:  # the body does not parse or validate: the app's 400 says why, as it always has
            await self.app(scope, request.receive, send)
            return
        await response(scope, request.receive, send)


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and content_type.partition(";")[0].strip().lower() == "application/json"


def _params(route: EdgeRoute, body: bytes) -> Any:
    """The body as the route's body field validates it (FastAPI: `json.loads`, then the field), None when it does
    not parse or validate."""
    assert route.body_field is not None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    value, errors = route.body_field.validate(parsed, {}, loc=("body",))
    return None if errors else value


def _json_response(route: EdgeRoute, content: dict[str, Any]) -> Response:
    """The handler's return value as FastAPI answers it: through the route's response field, to JSON bytes."""
    field = route.response_field
    assert field is not None
    value, errors = field.validate(content, {}, loc=("response",))
    if errors:  # (dict[str, Any] takes any dict)
        raise RuntimeError(f"the send's response did not validate: {errors}")
    body = field.serialize_json(
        value,
        include=route.response_model_include,
        exclude=route.response_model_exclude,
        by_alias=route.response_model_by_alias,
        exclude_unset=route.response_model_exclude_unset,
        exclude_defaults=route.response_model_exclude_defaults,
        exclude_none=route.response_model_exclude_none,
    )
    return Response(content=body, status_code=route.status_code or 200, media_type="application/json")
