"""The MCP proxy Lambda's request and response (the contract between `LambdaMcpGateway` and functions/mcp_proxy).

Requests are discriminated by `op`:

| op | fields | `result` |
| --- | --- | --- |
| `list_tools` | `session_id`, `server_name` | `{"tools": [Messages API tool definitions]}` |
| `call_tool` | `session_id`, `server_name`, `tool`, `input`, `timeout_seconds`? | `{"content": [blocks], "is_error"}` |
| `validate_credential` | `workspace_id`, `vault_id`, `credential_id` | the `vault_credential_validation` object |
| `update_credential_secret` | `name` (`vaults/<vault>/<credential>`), `updates`, `removals` | `{"found": bool}` |
| `put_credential_secret` | `name` (`vaults/<vault>/<credential>`), `value` (the whole secret) | `{}` |

The two secret writes come from the API Lambda, which may neither read vault secrets nor use their KMS key: Secrets
Manager needs `kms:GenerateDataKey` and `kms:Decrypt` from whoever creates or changes a secret value encrypted with a
customer-managed key, and the vault key lets only the proxy decrypt. `put_credential_secret` creates the secret (one
CreateSecret with the proxy's vault key) or replaces its whole value (one PutSecretValue), never half of it.

The answer is `{"ok": true, "result": {...}}` or `{"ok": false, "error": {"type", "message", "server_name",
"error_code"}}`: a failure to use an MCP server, a missing resource or a malformed request is a typed payload, not a
Lambda FunctionError, so the caller rebuilds the exception the in-process proxy would have raised. Error types are
the MCP session errors (`mcp_connection_failed_error`, `mcp_authentication_failed_error`, with `server_name`), the
API's own (`not_found_error`, `invalid_request_error`, `conflict_error`), `secret_store_error` and `api_error`.
No message carries a secret value; the `update_credential_secret` and `put_credential_secret` requests do, so requests
are never logged.

This module imports neither the `mcp` SDK nor boto3: the ModelTurn and API Lambdas load it on their cold path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from managed_agents.domain.errors import ApiError, Conflict, InvalidRequest, NotFound, ServiceUnavailable
from managed_agents.ports import (
    AUTHENTICATION_FAILED,
    CONNECTION_FAILED,
    McpErrorType,
    McpProxyError,
    SecretPatch,
    SecretStoreError,
)

CREDENTIAL_SECRET_NAME = r"^vaults/vlt_[A-Za-z0-9]{1,64}/vcrd_[A-Za-z0-9]{1,64}$"
SECRET_FIELD = r"^[a-z_]{1,64}$"
MAX_SECRET_FIELDS = 32
SECRET_STORE_ERROR = "secret_store_error"
API_ERROR = "api_error"
_API_ERRORS: dict[str, type[ApiError]] = {
    "not_found_error": NotFound,
    "invalid_request_error": InvalidRequest,
    "conflict_error": Conflict,
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListToolsRequest(_Request):
    op: Literal["list_tools"] = "list_tools"
    session_id: str = Field(min_length=1, max_length=128)
    server_name: str = Field(min_length=1, max_length=255)


class CallToolRequest(_Request):
    op: Literal["call_tool"] = "call_tool"
    session_id: str = Field(min_length=1, max_length=128)
    server_name: str = Field(min_length=1, max_length=255)
    tool: str = Field(min_length=1, max_length=255)
    input: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(None, gt=0, le=900)


class ValidateCredentialRequest(_Request):
    op: Literal["validate_credential"] = "validate_credential"
    workspace_id: str = Field(min_length=1, max_length=128)
    vault_id: str = Field(min_length=1, max_length=128)
    credential_id: str = Field(min_length=1, max_length=128)


class UpdateCredentialSecretRequest(_Request):
    """Carries secret values: never log it (its `repr` shows the keys only)."""

    op: Literal["update_credential_secret"] = "update_credential_secret"
    name: str = Field(pattern=CREDENTIAL_SECRET_NAME)
    updates: dict[Annotated[str, Field(pattern=SECRET_FIELD)], str] = Field(default_factory=dict, repr=False)
    removals: list[Annotated[str, Field(pattern=SECRET_FIELD)]] = Field(default_factory=list)

    @classmethod
    def of(cls, name: str, patch: SecretPatch) -> UpdateCredentialSecretRequest:
        return cls(name=name, updates=dict(patch.updates), removals=sorted(patch.removals))

    def patch(self) -> SecretPatch:
        return SecretPatch(updates=dict(self.updates), removals=set(self.removals))


class PutCredentialSecretRequest(_Request):
    """Carries secret values: never log it (its `repr` shows the keys only)."""

    op: Literal["put_credential_secret"] = "put_credential_secret"
    name: str = Field(pattern=CREDENTIAL_SECRET_NAME)
    value: dict[Annotated[str, Field(pattern=SECRET_FIELD)], str] = Field(
        min_length=1, max_length=MAX_SECRET_FIELDS, repr=False
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield from super().__repr_args__()
        yield "value_keys", sorted(self.value)


McpProxyRequest = (
    ListToolsRequest
    | CallToolRequest
    | ValidateCredentialRequest
    | UpdateCredentialSecretRequest
    | PutCredentialSecretRequest
)
MCP_PROXY_REQUEST: TypeAdapter[McpProxyRequest] = TypeAdapter(Annotated[McpProxyRequest, Field(discriminator="op")])


class ProxyError(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    message: str
    server_name: str | None = None
    error_code: str | None = None


class McpProxyResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ok: bool
    result: dict[str, Any] | None = None
    error: ProxyError | None = None


def success(result: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "result": result}


def failure(
    error_type: str, message: str, *, server_name: str | None = None, error_code: str | None = None
) -> dict[str, Any]:
    error = ProxyError(type=error_type, message=message, server_name=server_name, error_code=error_code)
    return {"ok": False, "error": error.model_dump(mode="json")}


def failure_of(exc: McpProxyError | ApiError | SecretStoreError) -> dict[str, Any]:
    """The error payload of an exception the proxy raises (their messages hold no secret values)."""
    if isinstance(exc, McpProxyError):
        return failure(exc.error_type, exc.message, server_name=exc.server_name)
    if isinstance(exc, ApiError):
        return failure(exc.error_type, exc.message, error_code=exc.error_code)
    return failure(SECRET_STORE_ERROR, str(exc))


def invalid_request(exc: ValidationError) -> dict[str, Any]:
    """A malformed request, described by field and rule only: pydantic's own message would quote the input,
    and the credential secret requests hold secret values."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)[:5]
    )
    return failure("invalid_request_error", f"malformed MCP proxy request: {problems}")


def rebuild_error(error: ProxyError, *, server_name: str | None) -> Exception:
    """The exception the in-process proxy would have raised for this payload.

    `server_name` is the server the caller asked about (list_tools, call_tool): there an unexpected error type is
    still a failure to use that server, so the harness reports it as the session error it knows."""
    if error.type == AUTHENTICATION_FAILED or error.type == CONNECTION_FAILED:
        kind: McpErrorType = AUTHENTICATION_FAILED if error.type == AUTHENTICATION_FAILED else CONNECTION_FAILED
        return McpProxyError(kind, error.message, error.server_name or server_name or "")
    api_error = _API_ERRORS.get(error.type)
    if api_error is not None:
        return api_error(error.message, error_code=error.error_code)
    if error.type == SECRET_STORE_ERROR:
        return SecretStoreError(error.message)
    if server_name is not None:
        return McpProxyError(CONNECTION_FAILED, f"the MCP proxy failed: {error.message}", server_name)
    return ServiceUnavailable(f"the MCP proxy failed: {error.message}")
