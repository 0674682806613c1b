"""The door every `/v1` request passes before its handler: one route class, configured per router.

In order, on the request's headers alone:
1. authentication (`Authorization: Bearer` or `x-api-key`; the principal is kept for the handler's dependencies);
2. the `anthropic-beta` header against the router's rule (api/betas.py);
then the body, read here (not by FastAPI, which reads it before resolving any dependency, i.e. before knowing who
sends it): at most the route's cap (`MAX_BODY_EXTRA` on the route, else `max_request_body_bytes`; 413 above it, at
once when `Content-Length` says so) and within `body_timeout_seconds` (400 `request_body_timeout`, the SDK's
`BetaRequestBodyTimeoutError`). An unauthenticated client therefore never makes the server buffer a byte of body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import anyio
from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from managed_agents.api import betas
from managed_agents.api.errors import request_id
from managed_agents.domain.deadline import WouldWait, deadline, on_loop
from managed_agents.domain.errors import (
    Conflict,
    GatewayTimeout,
    InvalidRequest,
    PermissionDenied,
    RequestTooLarge,
    ServiceUnavailable,
    too_large_message,
)
from managed_agents.services.idempotency import IdempotencyService, StoredResponse, fingerprint
from managed_agents.services.keys import Principal

if TYPE_CHECKING:
    from managed_agents.wiring import Runtime

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_SECONDS = 60.0
DEFAULT_DEADLINE_SECONDS = 30.0
PRINCIPAL = "principal"  # request.state attribute
# On a create route: `@router.post("", openapi_extra=REPLAYS_RETRIES_EXTRA)`: an SDK retry of a create whose response
# was lost gets the first attempt's response instead of creating a second resource (services/idempotency.py).
REPLAYS_RETRIES = "x-replays-retries"
REPLAYS_RETRIES_EXTRA = {REPLAYS_RETRIES: True}
# A route whose response carries a secret (a webhook endpoint's `signing_secret`): `openapi_extra={SECRET_FIELD:
# field}`, with `field` in SECRET_REFILLS. The secret is never kept in the replay record (which lives up to 24 hours):
# the record's body is stored without the field, and a replay reads the secret again from where its resource keeps it
# (`SECRET_REFILLS[field](request, principal, body)` -> the body to answer, run in a worker thread; its errors answer
# the replay).
SECRET_FIELD = "x-secret-field"
SECRET_REFILLS: dict[str, Callable[[Request, Principal, dict[str, Any]], dict[str, Any]]] = {}
# A route's own body cap: `@router.post(..., openapi_extra={MAX_BODY_EXTRA: n})` (a file upload's, say). It shows in
# the OpenAPI document too. (Not FastAPI's `max_body_size=`: Starlette's limiter behind it replaces any response to
# an oversized request with a plain-text 413, outside the error envelope.)
MAX_BODY_EXTRA = "x-max-body-bytes"
# A route that reads its own body as a stream (a file upload): `openapi_extra={STREAMS_BODY: "<settings field>"}`,
# the field giving the largest content it takes (the body may exceed it by MULTIPART_SLACK: part headers, form
# fields). The door still enforces that cap (counted as the body arrives) but buffers nothing, and such a POST is not
# replayed by Idempotency-Key or SDK-retry detection (that needs the whole body to fingerprint).
STREAMS_BODY = "x-streams-body"
MULTIPART_SLACK = 64 * 1024
# Where a route's uploads go when they are over the deployment's request cap (the API Lambda's): `openapi_extra=
# {LARGE_UPLOADS: "what to do instead"}`; the 413 says it after the cap (skills: POST /v1/skills/uploads).
LARGE_UPLOADS = "x-large-uploads"


T = TypeVar("T")
# How long a write made on the event loop (`call_on_loop`) waits for this process's other writers, whose
# transactions are short and after which it goes first (sqlite_store.WriteLock), before it goes to a write thread
LOOP_WRITE_WAIT_SECONDS = 0.005


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


@dataclass(frozen=True)
class _Budget:
    """How the current request's service calls run: which threads, until when."""

    reads: CapacityLimiter
    writes: CapacityLimiter
    write: bool  # the request changes something (any method but GET/HEAD)
    deadline_at: float  # anyio clock
    seconds: float


_BUDGET: ContextVar[_Budget | None] = ContextVar("managed_agents_request_budget", default=None)


async def call(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a synchronous service call (ports are sync) off the event loop, within the request's budget.

    Reads and writes take threads from two limiters, so writers waiting on a store (SQLite's write lock) never
    hold the threads reads need. A read still running at the deadline is a 504 (its thread is abandoned: it only
    reads). A write never is: one still waiting for a thread at the deadline is a 503 with nothing done, and once
    it runs, the store bounds its own waits by the deadline (domain/deadline.py) and answers 503 itself."""
    budget = _BUDGET.get()
    if budget is None:  # outside a request's door (streams after their handler returned, tests)
        return await to_thread.run_sync(lambda: fn(*args, **kwargs))
    return await (_write if budget.write else _read)(budget, lambda: fn(*args, **kwargs))


async def call_on_loop(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """`call` for a short write (a plain event send) made on the event loop itself. Its first write waits at most
    LOOP_WRITE_WAIT_SECONDS for this process's other writers and not at all for anyone else's lock (domain/deadline.py
    `on_loop`); one that would wait longer is made again on a write thread as `call` makes it (the store raised
    WouldWait before it wrote anything).

    A write thread costs the send more than the write: the loop hands it over, the thread waits for the interpreter
    lock beside the loop and the harness's threads, and hands the answer back. Only for calls whose work is bounded
    and small (no fold of a log, no file read): everything else on the loop waits while it runs."""
    budget = _BUDGET.get()
    if budget is None or not budget.write:
        return await call(fn, *args, **kwargs)
    try:
        with deadline(max(0.0, budget.deadline_at - anyio.current_time())), on_loop(LOOP_WRITE_WAIT_SECONDS):
            return fn(*args, **kwargs)
    except WouldWait:
        return await _write(budget, lambda: fn(*args, **kwargs))


async def read(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """`call` for a read made by any request, a write's authentication included: it takes a read thread."""
    budget = _BUDGET.get()
    if budget is None:
        return await to_thread.run_sync(lambda: fn(*args, **kwargs))
    return await _read(budget, lambda: fn(*args, **kwargs))


async def _read(budget: _Budget, thunk: Callable[[], T]) -> T:
    with anyio.move_on_after(budget.deadline_at - anyio.current_time()):
        return await to_thread.run_sync(thunk, limiter=budget.reads, abandon_on_cancel=True)
    raise GatewayTimeout(f"the request did not finish within the server's deadline ({budget.seconds:g} s)")


async def _write(budget: _Budget, thunk: Callable[[], T]) -> T:
    left = budget.deadline_at - anyio.current_time()
    done, result = False, None
    with anyio.move_on_after(left):
        # Cancelled only while waiting for a thread: the work itself runs shielded, to the end (anyio).
        with deadline(max(0.0, left)):
            result = await to_thread.run_sync(thunk, limiter=budget.writes)
            done = True
    if done:
        return cast(T, result)
    raise ServiceUnavailable(
        f"the server is busy with other writes and the request's deadline ({budget.seconds:g} s) passed; nothing"
        " was done, retry"
    )


def _budget(request: Request, write: bool) -> _Budget:
    state = request.app.state
    limiters: tuple[CapacityLimiter, CapacityLimiter] | None = getattr(state, "edge_limiters", None)
    if limiters is None:
        limiters = (
            CapacityLimiter(_settings_value(request, "api_read_threads", 32)),
            CapacityLimiter(_settings_value(request, "api_write_threads", 16)),
        )
        state.edge_limiters = limiters
    seconds: float = _settings_value(request, "request_deadline_seconds", DEFAULT_DEADLINE_SECONDS)
    return _Budget(limiters[0], limiters[1], write, anyio.current_time() + seconds, seconds)


def credential(request: Request) -> str | None:
    """The secret the request presents: `Authorization: Bearer <secret>`, else `x-api-key`."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


async def authenticate(request: Request) -> Principal:
    """The request's principal, from its headers only (and the `anthropic-workspace-id` check)."""
    found: Principal | None = getattr(request.state, PRINCIPAL, None)
    if found is not None:
        return found
    keys, secret = runtime(request).keys, credential(request)
    # a key checked moments ago is taken from the cache here, on the event loop: no thread, no store read
    p = keys.cached(secret)
    if p is None:
        p = await read(keys.authenticate, secret)
    workspace = request.headers.get("anthropic-workspace-id")
    if workspace and workspace != p.workspace_id:
        raise PermissionDenied(
            f"anthropic-workspace-id: this API key belongs to workspace {p.workspace_id!r}, not {workspace!r}"
        )
    setattr(request.state, PRINCIPAL, p)
    return p


def _settings_value(request: Request, name: str, default: Any) -> Any:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    return getattr(rt.settings, name, default) if rt is not None else default


class EdgeRoute(APIRoute):
    """A `/v1` route: authenticated, beta-checked and body-limited before FastAPI reads the body (see module doc)."""

    beta: ClassVar[betas.BetaRule | None] = None
    idempotent: ClassVar[bool] = True  # POSTs honour Idempotency-Key (off for the work-queue protocol)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def edge(request: Request) -> Response:
            token = _BUDGET.set(_budget(request, write=request.method not in ("GET", "HEAD")))
            try:
                p = await authenticate(request)
                betas.check(betas.parse(request.headers.getlist("anthropic-beta")), self.beta)
                if self.body_field is None and request.method not in ("POST", "PUT", "PATCH"):
                    return await handler(request)
                if (self.openapi_extra or {}).get(STREAMS_BODY):
                    return await handler(self._streamed(request))
                request, body = await self._with_body(request)
                if request.method == "POST" and self.idempotent:
                    return await self._once(request, p, body, handler)
                return await handler(request)
            finally:
                _BUDGET.reset(token)

        return edge

    async def _once(
        self,
        request: Request,
        p: Principal,
        body: bytes,
        handler: Callable[[Request], Coroutine[Any, Any, Response]],
    ) -> Response:
        """A POST that must not take effect twice (services/idempotency.py): with an `Idempotency-Key`, or, on a
        create, an SDK retry (`x-stainless-retry-count` >= 1). Event sends recognise their retries themselves."""
        key = request.headers.get("idempotency-key")
        replays_retries = bool((self.openapi_extra or {}).get(REPLAYS_RETRIES))
        if key is None and not replays_retries:
            return await handler(request)
        service = _idempotency(request)
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        print_ = fingerprint(request.method, path, body)
        if key is not None:
            outcome = await call(service.begin, p.workspace_id, key, print_)
        else:
            outcome = await call(service.begin_create, p.workspace_id, p.key_id, print_, retried=sdk_retry(request))
        secret = (self.openapi_extra or {}).get(SECRET_FIELD)
        if isinstance(outcome, StoredResponse):
            if secret and outcome.body is not None:
                refill = SECRET_REFILLS[secret]
                body_back = await call(refill, request, p, json.loads(outcome.body))
                outcome = replace(outcome, body=json.dumps(body_back))
            return _replayed(outcome, key is not None)
        # Settling the claim is not cut short by the request's deadline nor by a client that went away: the work is
        # done (or failed), and a claim left pending would turn the client's retry into a 409 for minutes.
        try:
            response = await handler(request)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await to_thread.run_sync(service.release, outcome)
            raise
        with anyio.CancelScope(shield=True):
            if 200 <= response.status_code < 300 and isinstance(response.body, bytes):
                text, req_id = response.body.decode(), request_id(request)
                if secret:  # kept without its secret (SECRET_FIELD)
                    text = json.dumps({k: v for k, v in json.loads(text).items() if k != secret})
                await to_thread.run_sync(service.complete, outcome, response.status_code, text, req_id)
            else:
                await to_thread.run_sync(service.release, outcome)
        return response

    def _cap(self, request: Request) -> tuple[int, bool]:
        """The route's body cap and whether it is the deployment's ceiling; 413 at once when Content-Length is over."""
        extra = self.openapi_extra or {}
        own = extra.get(MAX_BODY_EXTRA)
        if extra.get(STREAMS_BODY):
            own = _settings_value(request, extra[STREAMS_BODY], DEFAULT_MAX_BODY_BYTES) + MULTIPART_SLACK
        cap: int = own or _settings_value(request, "max_request_body_bytes", DEFAULT_MAX_BODY_BYTES)
        # the deployment's own ceiling over every route's cap (the API Lambda: what one invocation can carry)
        ceiling: int | None = _settings_value(request, "max_request_bytes", None)
        deployment = ceiling is not None and ceiling < cap
        cap = min(cap, ceiling) if ceiling is not None else cap
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            if extra.get(STREAMS_BODY):
                raise _upload_too_large(cap, int(declared), deployment=deployment)
            raise _too_large(cap, int(declared), deployment=deployment, instead=extra.get(LARGE_UPLOADS))
        return cap, deployment

    def _streamed(self, request: Request) -> Request:
        """The request with its body counted as the handler reads it: 413 once more than the cap arrives."""
        cap, deployment = self._cap(request)
        size = 0

        async def receive() -> Message:
            nonlocal size
            message = await request.receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > cap:
                    raise _upload_too_large(cap, size, deployment=deployment, at_least=True)
            return message

        return Request(request.scope, receive)

    async def _with_body(self, request: Request) -> tuple[Request, bytes]:
        cap, deployment = self._cap(request)
        timeout: float = _settings_value(request, "body_timeout_seconds", DEFAULT_BODY_TIMEOUT_SECONDS)
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        instead = (self.openapi_extra or {}).get(LARGE_UPLOADS)
                        raise _too_large(cap, size, deployment=deployment, at_least=True, instead=instead)
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise InvalidRequest(
                f"the request body did not arrive within {timeout:g} s ({size} bytes received); nothing was done",
                error_code="request_body_timeout",
            ) from exc
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await request.receive()  # a disconnect, for handlers that watch for one

        return Request(request.scope, replay), body


def sdk_retry(request: Request) -> bool:
    """Whether the official SDK says this request is a retry (`x-stainless-retry-count` >= 1)."""
    count = request.headers.get("x-stainless-retry-count", "0")
    return count.isdigit() and int(count) >= 1


def _idempotency(request: Request) -> IdempotencyService:
    state = request.app.state
    service: IdempotencyService | None = getattr(state, "idempotency", None)
    if service is None:
        rt = runtime(request)
        service = state.idempotency = IdempotencyService(rt.resources, rt.clock)
    return service


def _replayed(stored: StoredResponse, explicit: bool) -> Response:
    if stored.body is None:
        raise Conflict(
            "this request already succeeded (request id"
            f" {stored.request_id}), but its response was too large to keep for replay; read the result instead"
        )
    headers = {"idempotent-replayed": "true" if explicit else "retry", "original-request-id": stored.request_id}
    return Response(stored.body, status_code=stored.status, media_type="application/json", headers=headers)


def _upload_too_large(cap: int, size: int, *, deployment: bool, at_least: bool = False) -> RequestTooLarge:
    """A streamed upload over its cap: the deployment's request cap (the API Lambda's) or the largest file stored."""
    what = f"the upload is {'more than ' if at_least else ''}{size:,} bytes"
    if deployment:
        return RequestTooLarge(
            f"{what}; this deployment's API takes at most {cap:,} bytes per request (the Lambda request cap), so a"
            f" file sent with files.upload can be about {cap - MULTIPART_SLACK:,} bytes at most here. Send larger"
            " files through an upload URL instead: POST /v1/files/uploads, POST the file to the url it returns, then"
            " POST /v1/files/uploads/{upload_id}/complete (docs/files.md, 'Large files')"
        )
    return RequestTooLarge(f"{what}; files are at most {cap - MULTIPART_SLACK:,} bytes on this server (max_file_bytes)")


def _too_large(
    cap: int, size: int, *, deployment: bool, at_least: bool = False, instead: str | None = None
) -> RequestTooLarge:
    if deployment and instead:  # an upload route with a way around the cap: name it
        what = f"the request body is {'more than ' if at_least else ''}{(cap if at_least else size):,} bytes"
        return RequestTooLarge(
            f"{what}; this deployment's API takes at most {cap:,} bytes per request (the Lambda request cap). {instead}"
        )
    if deployment:  # the deployment cannot take more whatever the endpoint: say how to send large content instead
        return RequestTooLarge(too_large_message(cap, cap if at_least else size, at_least=at_least))
    what = "the body sent so far is larger than" if at_least else f"Content-Length says {size} bytes, more than"
    return RequestTooLarge(f"request body too large: {what} the {cap} bytes this endpoint accepts")


def edge_router(
    prefix: str, *, tags: list[str], beta: betas.BetaRule | None, idempotent: bool = True, **kwargs: Any
) -> APIRouter:
    """A router whose routes pass the door (EdgeRoute) with this beta rule."""
    attrs = {"beta": beta, "idempotent": idempotent}
    route_class = type(f"EdgeRoute_{tags[0] if tags else 'v1'}", (EdgeRoute,), attrs)
    return APIRouter(prefix=prefix, tags=list(tags), route_class=route_class, **kwargs)
