"""The error envelope of api-reference §1.4 for every failure, and the request id on every response."""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from managed_agents.domain.errors import ApiError
from managed_agents.domain.ids import new_id

log = logging.getLogger("managed_agents.api")

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def request_id(request: Request) -> str:
    return cast(str, request.scope.get("request_id") or new_id("request"))


def envelope(error_type: str, message: str, req_id: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if details:
        error["details"] = details
    return {"type": "error", "error": error, "request_id": req_id}


def error_response(request: Request, status: int, error_type: str, message: str, **kw: Any) -> JSONResponse:
    req_id = request_id(request)
    headers = {"request-id": req_id}
    if kw.pop("no_retry", False):
        headers["x-should-retry"] = "false"
    return JSONResponse(envelope(error_type, message, req_id, kw.get("details")), status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and (p.startswith("function-") or ("[" in p and p.endswith("]") and "." not in p)):
            # pydantic's union-member tags are noise for the reader
            if not p.startswith("function-") and p.split("[")[0] in ("str", "int", "list", "dict"):
                continue
            out += ("." if out else "") + p
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = list(exc.errors())
    items = []
    for e in errors:
        loc = _loc(tuple(e.get("loc", ())))
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "json_invalid":
            msg = "the request body is not valid JSON: " + str(e.get("ctx", {}).get("error", msg))
            loc = "body"
        elif e.get("type") == "missing":
            msg = "field required"
        elif e.get("type") == "extra_forbidden":
            msg = "unknown field"
        items.append({"loc": loc, "message": msg})
    # discriminated unions report every member; the most specific (longest) location explains best
    items.sort(key=lambda i: -len(i["loc"]))
    first = items[0] if items else {"loc": "body", "message": "invalid request"}
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return f"{first['loc']}: {first['message']}{more}", items


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            request,
            exc.status,
            exc.error_type,
            exc.message,
            details=exc.envelope_details(),
            no_retry=not exc.retryable,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, items = validation_message(exc)
        return error_response(request, 400, "invalid_request_error", message, details={"errors": items[:20]})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        etype = _TYPE_BY_STATUS.get(exc.status_code, "api_error")
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route for {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(request, exc.status_code, etype, detail)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"request_id": request_id(request), "path": request.url.path})
        return error_response(request, 500, "api_error", "internal server error; the request id identifies it in logs")


class RequestIdMiddleware:
    """Pure ASGI (no response buffering, so SSE streams pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req_id = new_id("request")
        scope["request_id"] = req_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"request-id" for k, _ in headers):
                    headers.append((b"request-id", req_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
