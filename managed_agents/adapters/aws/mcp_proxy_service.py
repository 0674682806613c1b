"""The MCP proxy Lambda's side of the contract: one `McpProxy` per container, serving one request per invocation.

The proxy (managed_agents/mcp_proxy) is the same code the embedded runtime runs in-process: it resolves the session's
credential from Secrets Manager, refreshes OAuth tokens (writing the rotated secret back) and keeps warm MCP
connections, one per (session, server), across the invocations a container serves, within its idle and count
limits. It also writes the secrets of new and updated credentials for the API, which may not use the vault key (new
secrets are created here with `MANAGED_AGENTS_VAULT_KMS_KEY_ARN`). Every failure it knows becomes a typed error
payload (managed_agents/adapters/aws/mcp_proxy_contract.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from managed_agents.adapters.aws.dynamodb_resource_store import DynamoDbResourceStore
from managed_agents.adapters.aws.mcp_proxy_contract import (
    API_ERROR,
    MCP_PROXY_REQUEST,
    CallToolRequest,
    ListToolsRequest,
    McpProxyRequest,
    PutCredentialSecretRequest,
    UpdateCredentialSecretRequest,
    failure,
    failure_of,
    invalid_request,
    success,
)
from managed_agents.adapters.aws.secrets_manager_store import SecretsManagerSecretStore
from managed_agents.domain.clock import Clock, SystemClock
from managed_agents.domain.errors import ApiError, NotFound
from managed_agents.mcp_proxy import McpProxy, McpProxySettings
from managed_agents.ports import CONNECTION_FAILED, McpProxyError, ResourceStore, SecretStoreError
from managed_agents.services.vaults import CREDENTIAL
from managed_agents.services.webhooks import resource_event_services
from managed_agents.settings import McpProxyLambdaSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

log = logging.getLogger("managed_agents.mcp_proxy")
# A tools/call must end (with a typed timeout error) this long before the invocation's own timeout would cut it.
DEADLINE_MARGIN_SECONDS = 5.0


@dataclass
class McpProxyLambda:
    proxy: McpProxy
    resources: ResourceStore

    def serve(self, event: Mapping[str, Any], *, seconds_left: float | None = None) -> dict[str, Any]:
        """Answer one request; never raises (an unexpected failure is an `api_error` payload, logged here)."""
        try:
            req = MCP_PROXY_REQUEST.validate_python(event)
        except ValidationError as exc:
            return invalid_request(exc)
        try:
            return success(self._serve(req, seconds_left))
        except (McpProxyError, ApiError, SecretStoreError) as exc:
            return failure_of(exc)
        except Exception as exc:
            log.exception("MCP proxy request failed", extra={"op": req.op})
            server = req.server_name if isinstance(req, ListToolsRequest | CallToolRequest) else None
            return failure(API_ERROR, f"the MCP proxy failed unexpectedly ({type(exc).__name__})", server_name=server)

    def _serve(self, req: McpProxyRequest, seconds_left: float | None) -> dict[str, Any]:
        if isinstance(req, ListToolsRequest):
            return {"tools": self.proxy.list_tools(req.session_id, req.server_name)}
        if isinstance(req, CallToolRequest):
            limit = req.timeout_seconds or self.proxy.settings.call_timeout
            if seconds_left is not None:
                if seconds_left - DEADLINE_MARGIN_SECONDS <= 1:
                    raise McpProxyError(
                        CONNECTION_FAILED,
                        f"the MCP proxy invocation had {seconds_left:.0f} s left, too little to call {req.tool!r}",
                        req.server_name,
                    )
                limit = min(limit, seconds_left - DEADLINE_MARGIN_SECONDS)
            result = self.proxy.call_tool(req.session_id, req.server_name, req.tool, req.input, timeout=limit)
            return {"content": result.content, "is_error": result.is_error}
        if isinstance(req, UpdateCredentialSecretRequest):
            return {"found": self.proxy.merge_update(req.name, req.patch())}
        if isinstance(req, PutCredentialSecretRequest):
            self.proxy.put_secret(req.name, req.value)
            return {}
        rec = self.resources.get(CREDENTIAL.name, req.workspace_id, req.credential_id)
        if rec is None or rec.attrs.get("vault_id") != req.vault_id:
            raise NotFound(
                f"credential {req.credential_id!r} not found in vault {req.vault_id!r}",
                error_code="vault_credential_not_found",
            )
        return dict(self.proxy.validate_credential(rec))

    def close(self) -> None:
        self.proxy.close()


def build_mcp_proxy_lambda(
    settings: McpProxyLambdaSettings,
    *,
    dynamodb_client: DynamoDBClient | None = None,
    secretsmanager_client: SecretsManagerClient | None = None,
    clock: Clock | None = None,
) -> McpProxyLambda:
    """The container's proxy. Creates no connection: boto3 and MCP connections open on first use."""
    # (a failed OAuth refresh records vault_credential.refresh_failed as a webhook item in the events table, in the
    # write that marks the credential: the table's stream is the outbox the webhook relay reads)
    resources = DynamoDbResourceStore(
        table_name=settings.resources_table, dynamodb_client=dynamodb_client, outbox_table=settings.events_table
    )
    secrets = SecretsManagerSecretStore(
        prefix=settings.vault_secret_prefix, client=secretsmanager_client, kms_key_id=settings.vault_kms_key_arn
    )
    proxy_settings = McpProxySettings(
        call_timeout=settings.mcp_call_timeout_seconds,
        idle_seconds=settings.mcp_idle_seconds,
        max_connections=settings.mcp_max_connections,
    )
    proxy = McpProxy(resources, secrets, clock or SystemClock(), proxy_settings)
    if settings.events_table:
        proxy.resolver.webhooks = resource_event_services(resources, proxy.clock)
    return McpProxyLambda(proxy, resources)
