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
    413: "request_too_large",
    431: "invalid_request_error",
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


_SHAPES = {  # pydantic error type → the JSON shape it expected
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dataclass_type": "an object",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "none_required": "null",
}
_NO_KEY = object()


def _shown(value: Any) -> str:
    """What the client sent, in JSON terms (containers by kind, scalars by value)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bytes | bytearray):  # a body sent without a JSON content type
        return "a body that is not JSON (send Content-Type: application/json)"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_path(e: dict[str, Any], body: Any) -> tuple[str, Any]:
    """The error's location as the client wrote it (`tools[0].input_schema`) and the value there. Locations name
    union members and validators too (`ModelConfigParams`, `constrained-str`, `function-after[...]`, a tagged
    member's tag): walking the request's own body keeps only the keys and indexes it has."""
    loc = list(e.get("loc", ()))
    source = loc.pop(0) if loc and loc[0] in ("body", "query", "path", "header", "cookie") else "body"
    if source != "body":
        return ".".join(str(p) for p in loc) or source, e.get("input", _NO_KEY)
    out, value = "", body
    for i, part in enumerate(loc):
        if isinstance(value, dict) and isinstance(part, str) and part in value:
            out += ("." if out else "") + part
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            out += f"[{part}]"
            value = value[part]
        elif i == len(loc) - 1 and e.get("type") == "missing" and isinstance(value, dict):
            out += ("." if out else "") + str(part)
            value = _NO_KEY
        # else: a union member's or a validator's tag, not part of the request
    return out or "body", value


def _explain(e: dict[str, Any]) -> str:
    kind = str(e.get("type", ""))
    ctx = e.get("ctx") or {}
    msg = str(e.get("msg", "invalid"))
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in _SHAPES:
        return f"expected {_SHAPES[kind]}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the allowed values')}"
    if kind == "enum":
        return f"expected {ctx.get('expected', 'one of the allowed values')}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"expected one of {ctx.get('expected_tags', '')}"
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    """One message naming the field as the client wrote it and the shape it must have (never pydantic's internal
    names), and every problem in `details.errors`. The members of a union that all failed at one field are one
    problem: "expected a string or an object"."""
    body = getattr(exc, "body", None)
    merged: dict[str, dict[str, Any]] = {}
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            why = str((e.get("ctx") or {}).get("error", e.get("msg", "")))
            item = {"loc": "body", "message": f"the request body is not valid JSON: {why}"}
            return f"body: {item['message']}", [item]
        loc, value = _field_path(dict(e), body)
        if e.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            tag = str((e.get("ctx") or {}).get("discriminator", "type")).strip("'")
            loc, value = f"{loc}.{tag}" if loc != "body" else tag, (e.get("ctx") or {}).get("tag", _NO_KEY)
        explained = _explain(dict(e))
        entry = merged.setdefault(loc, {"loc": loc, "messages": [], "value": value})
        if explained not in entry["messages"]:
            entry["messages"].append(explained)
    items = []
    for entry in merged.values():
        shapes = [m.removeprefix("expected ") for m in entry["messages"] if m.startswith("expected ")]
        others = [m for m in entry["messages"] if not m.startswith("expected ")]
        parts = ([f"expected {' or '.join(shapes)}"] if shapes else []) + others
        message = "; ".join(parts)
        if shapes and entry["value"] is not _NO_KEY:
            message += f", got {_shown(entry['value'])}"
        items.append({"loc": entry["loc"], "message": message})
    # A union reports each member. Where one went deeper (the client sent an object and a field of it is wrong),
    # the others' "expected a string" at the enclosing field only repeats that the object form was chosen.
    deeper = [i["loc"] for i in items]
    items = [
        i
        for i in items
        if not (
            i["message"].startswith("expected ")
            and any(d.startswith(i["loc"] + ".") or d.startswith(i["loc"] + "[") for d in deeper)
        )
    ]
    # the deepest location is where the request went wrong
    items.sort(key=lambda i: -len(i["loc"]))
    first = items[0] if items else {"loc": "body", "message": "invalid request"}
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return f"{first['loc']}: {first['message']}{more}", items


def api_error_response(request: Request, exc: ApiError) -> JSONResponse:
    """The envelope of an ApiError (the app's handler, and routes answered outside the framework: api/hot_routes.py)."""
    return error_response(
        request,
        exc.status,
        exc.error_type,
        exc.message,
        details=exc.envelope_details(),
        no_retry=not exc.retryable,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return api_error_response(request, exc)

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


INTERNAL_ERROR = "internal server error; the request id identifies it in logs"
DEFAULT_MAX_HEADER_BYTES = 16 * 1024


def _max_header_bytes(scope: Scope) -> int:
    rt = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
    return int(getattr(getattr(rt, "settings", None), "max_header_bytes", DEFAULT_MAX_HEADER_BYTES))


class RequestIdMiddleware:
    """Pure ASGI (no response buffering, so SSE streams pass through untouched).

    It refuses a request whose request line and headers exceed `max_header_bytes` (431; uvicorn caps a head only
    while it arrives in pieces, not one that arrives whole), and it answers what no exception handler took (a
    bug, a store failure) with the 500 envelope. Starlette's own
    catch-all would send the response and then re-raise, and uvicorn closes a connection whose app raised: the
    client's next request on that kept-alive connection would then fail with a reset instead of being served.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req_id = new_id("request")
        scope["request_id"] = req_id
        cap = _max_header_bytes(scope)
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 16
        head += sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or ())
        if head > cap:
            message = f"the request line and headers are {head} bytes, more than the {cap} this server accepts"
            response = JSONResponse(
                envelope("invalid_request_error", message, req_id), status_code=431, headers={"request-id": req_id}
            )
            await response(scope, receive, send)
            return

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"request-id" for k, _ in headers):
                    headers.append((b"request-id", req_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if started:  # a stream already under way: nothing can be said in-band any more
                raise
            log.exception("unhandled error", extra={"request_id": req_id, "path": scope.get("path")})
            body = envelope("api_error", INTERNAL_ERROR, req_id)
            response = JSONResponse(body, status_code=500, headers={"request-id": req_id})
            await response(scope, receive, send)
