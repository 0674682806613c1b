"""`McpGateway` (and the vault service's credential seams) through the MCP proxy Lambda (functions/mcp_proxy).

The ModelTurn Lambda lists and calls MCP tools through it; the API Lambda validates credentials, stores new
credentials' secrets and merges partial credential updates through it, so neither ever reads a vault secret nor uses
the vault key (which Secrets Manager needs for writes too). Each call is one synchronous invocation of the proxy
(contract: managed_agents/adapters/aws/mcp_proxy_contract.py):

* an error payload is rebuilt into the exception the in-process proxy raises (`McpProxyError` with the same type
  and message, `NotFound`, `InvalidRequest`, `Conflict`, `SecretStoreError`);
* a Lambda-level failure (the invoke refused or throttled, a FunctionError such as a timeout, no answer) is, for
  list_tools and call_tool, an `McpProxyError` of type `mcp_connection_failed_error` naming what failed, and for
  the vault operations a `ServiceUnavailable` with the same message. No message carries a request's content.

The boto3 client makes one attempt per invoke (a retried tools/call could run the tool twice); what Lambda refuses
before running anything (throttling, a SnapStart version not ready after 14 idle days, ...) is retried with backoff
(lambda_invoke.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ConnectTimeoutError, ReadTimeoutError
from pydantic import ValidationError

from managed_agents.adapters.aws.lambda_invoke import DEFAULT_RETRY, InvokeRefused, InvokeRetry, invoke
from managed_agents.adapters.aws.mcp_proxy_contract import (
    CallToolRequest,
    ListToolsRequest,
    McpProxyResponse,
    PutCredentialSecretRequest,
    UpdateCredentialSecretRequest,
    ValidateCredentialRequest,
    rebuild_error,
)
from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.domain.events import JsonObject
from managed_agents.ports import CONNECTION_FAILED, McpProxyError, Record, SecretPatch

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

# Longer than any proxy invocation can run (the Lambda maximum is 900 s): the function's own timeout ends a call.
INVOKE_READ_TIMEOUT_SECONDS = 910.0
# FunctionError types whose errorMessage AWS writes itself (no content of ours): quoted in the error message.
_AWS_ERROR_PREFIXES = ("Sandbox.", "Runtime.", "Function.")


@dataclass(frozen=True)
class McpToolResult:
    """A tools/call outcome (`ports.McpCallResult`): Messages API content blocks and the tool's error flag."""

    content: list[JsonObject]
    is_error: bool


class LambdaMcpGateway:
    """`McpGateway`, `CredentialProber` and `CredentialSecrets` through the MCP proxy Lambda."""

    def __init__(
        self,
        *,
        function_name: str,
        lambda_client: LambdaClient | None = None,
        retry: InvokeRetry = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.function_name = function_name
        self._lambda = lambda_client
        self.retry = retry
        self._sleep = sleep

    @property
    def client(self) -> LambdaClient:
        if self._lambda is None:
            import boto3
            from botocore.config import Config

            config = Config(read_timeout=INVOKE_READ_TIMEOUT_SECONDS, retries={"total_max_attempts": 1})
            self._lambda = boto3.client("lambda", config=config)
        return self._lambda

    # --- McpGateway (the harness) ---

    def list_tools(self, session: str, server_name: str) -> list[JsonObject]:
        req = ListToolsRequest(session_id=session, server_name=server_name)
        result = self._invoke(req.model_dump(mode="json"), server_name, f"tools/list on MCP server {server_name!r}")
        return cast(list[JsonObject], result["tools"])

    def call_tool(self, session: str, server_name: str, tool: str, tool_input: JsonObject) -> McpToolResult:
        req = CallToolRequest(session_id=session, server_name=server_name, tool=tool, input=dict(tool_input))
        what = f"tools/call {tool!r} on MCP server {server_name!r}"
        result = self._invoke(req.model_dump(mode="json"), server_name, what)
        return McpToolResult(cast(list[JsonObject], result["content"]), bool(result["is_error"]))

    # --- the vault service's seams (services.vaults.CredentialProber, ports.CredentialSecrets) ---

    def validate_credential(self, rec: Record) -> JsonObject:
        req = ValidateCredentialRequest(
            workspace_id=rec.workspace_id, vault_id=str(rec.doc["vault_id"]), credential_id=rec.id
        )
        return cast(JsonObject, self._invoke(req.model_dump(mode="json"), None, f"validating credential {rec.id}"))

    def put_secret(self, name: str, value: Mapping[str, str]) -> None:
        payload = PutCredentialSecretRequest(name=name, value=dict(value)).model_dump(mode="json")
        self._invoke(payload, None, "storing a credential's secret")

    def merge_update(self, name: str, patch: SecretPatch) -> bool:
        payload = UpdateCredentialSecretRequest.of(name, patch).model_dump(mode="json")
        return bool(self._invoke(payload, None, "updating a credential's secret")["found"])

    # --- invocation ---

    def _invoke(self, payload: dict[str, Any], server_name: str | None, what: str) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            out = invoke(self.client, self.function_name, body, retry=self.retry, sleep=self._sleep)
        except InvokeRefused as exc:
            verb = "is not ready" if exc.retryable else "could not be invoked"
            if exc.code in ("TooManyRequestsException", "EC2ThrottledException"):
                verb = "is throttled"
            raise self._failure(f"the MCP proxy Lambda {verb} ({exc.describe()})", what, server_name) from None
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise self._failure(
                f"the MCP proxy Lambda did not answer ({type(exc).__name__})", what, server_name
            ) from None
        except BotoCoreError as exc:
            raise self._failure(
                f"the MCP proxy Lambda could not be reached ({type(exc).__name__})", what, server_name
            ) from None
        raw = out["Payload"].read()
        if out.get("FunctionError"):
            raise self._failure(self._function_error(raw), what, server_name)
        try:
            response = McpProxyResponse.model_validate_json(raw)
        except ValidationError:
            raise self._failure(
                "the MCP proxy Lambda answered with something that is not a proxy response", what, server_name
            ) from None
        if not response.ok or response.result is None:
            if response.error is None:
                raise self._failure("the MCP proxy Lambda answered a failure without an error", what, server_name)
            raise rebuild_error(response.error, server_name=server_name)
        return response.result

    @staticmethod
    def _function_error(raw: bytes) -> str:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return "the MCP proxy Lambda failed (FunctionError)"
        kind = str(doc.get("errorType") or "FunctionError")[:100]
        if kind == "Sandbox.Timedout":
            return f"the MCP proxy Lambda timed out ({str(doc.get('errorMessage', ''))[:200]})"
        if kind == "Function.ResponseSizeTooLarge":
            return "the MCP proxy's answer exceeded the Lambda response payload limit"
        if kind.startswith(_AWS_ERROR_PREFIXES) and doc.get("errorMessage"):
            return f"the MCP proxy Lambda failed ({kind}: {str(doc['errorMessage'])[:200]})"
        return f"the MCP proxy Lambda failed ({kind})"

    @staticmethod
    def _failure(reason: str, what: str, server_name: str | None) -> Exception:
        message = f"{reason} during {what}"
        if server_name is not None:
            return McpProxyError(CONNECTION_FAILED, message, server_name)
        return ServiceUnavailable(message)
