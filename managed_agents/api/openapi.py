"""The OpenAPI document as the server behaves: error statuses with the envelope, credentials, the beta header.

FastAPI documents 200 and its own 422 only; this server never answers 422 (validation failures are 400s in the
error envelope, api-reference §1.4) and answers many other statuses. Every `/v1` operation is given the statuses
its door and handlers can answer, each with the `ErrorResponse` schema, the two ways to present a credential, and
the `anthropic-beta` values its resource takes (api/betas.py), so generated clients and fuzzers see the truth.
Limits are declared where they are enforced (query bounds in api/deps.py, metadata in wire/common.py, a route's
own body cap as `x-max-body-bytes`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from managed_agents.api.edge import EdgeRoute

ERROR_RESPONSE: dict[str, Any] = {
    "type": "object",
    "title": "ErrorResponse",
    "description": "Every error (api-reference §1.4); the SDK maps (status, error.details.error_code) to exceptions.",
    "required": ["type", "error", "request_id"],
    "properties": {
        "type": {"type": "string", "const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "description": "invalid_request_error, authentication_error, ..."},
                "message": {"type": "string"},
                "details": {
                    "type": "object",
                    "properties": {"error_code": {"type": "string"}},
                    "additionalProperties": True,
                },
            },
        },
        "request_id": {"type": "string"},
    },
}
_REF = {"$ref": "#/components/schemas/ErrorResponse"}

# Status -> when: what every /v1 operation can answer, and what operations with a body add.
EVERY = {
    "400": "invalid request: a parameter or the body is invalid, an unknown `anthropic-beta` value, a page cursor"
    " not returned by this endpoint, a feature not supported yet",
    "401": "missing, invalid or revoked credential",
    "403": "the credential may not call this endpoint or act on this workspace",
    "404": "not found, or the `anthropic-beta` value this resource needs is missing",
    "409": "a conflicting change (a stale version, a resource in the wrong state, a request with the same"
    " Idempotency-Key still in progress)",
    "431": "request line and headers larger than the server accepts",
    "500": "internal error; the request id identifies it in the server's logs",
    "503": "a store is busy or unavailable; nothing was done, retry",
    "504": "the request did not finish within the server's deadline",
}
WITH_BODY = {"413": "request body larger than this endpoint accepts (`x-max-body-bytes`, else the server's cap)"}
HEARTBEAT = {"412": "expected_last_heartbeat does not match (heartbeat_precondition_failed)"}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = describe(doc, app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe(doc: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["ErrorResponse"] = ERROR_RESPONSE
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "API key, environment key or work token"},
        "api_key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    }
    edges = {
        (route.path_format, method.lower()): route
        for route in app.routes
        if isinstance(route, EdgeRoute)
        for method in route.methods or ()
    }
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            responses: dict[str, Any] = op.setdefault("responses", {})
            responses.pop("422", None)
            if not path.startswith("/v1/"):  # /health, /docs: only the middleware's answers
                errors = {status: EVERY[status] for status in ("431", "500")}
            else:
                errors = dict(EVERY)
                if "requestBody" in op or method in ("post", "put", "patch"):
                    errors.update(WITH_BODY)
                if path.endswith("/heartbeat"):
                    errors.update(HEARTBEAT)
            for status, when in sorted(errors.items()):
                responses.setdefault(status, {"description": when, "content": {"application/json": {"schema": _REF}}})
            if not path.startswith("/v1/"):
                continue
            op["security"] = [{"bearer": []}, {"api_key": []}]
            route = edges.get((path, method))
            if route is not None and route.idempotent and method == "post":
                op.setdefault("parameters", []).append(
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "the same key and request within 24 h replay the first response; the same key"
                        " with another request is a 400 (README: Retries and idempotency)",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
                    }
                )
            rule = route.beta if route is not None else None
            if rule is not None:
                op.setdefault("parameters", []).append(
                    {
                        "name": "anthropic-beta",
                        "in": "header",
                        "required": True,
                        "description": f"the {rule.api} API's beta (more values may follow, comma-separated)",
                        "schema": {"type": "string", "enum": sorted(rule.accepts)},
                    }
                )
    return doc
