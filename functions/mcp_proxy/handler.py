"""MCP proxy Lambda: the only principal that reads vault credential secrets (architecture: "Credentials").

Invoked synchronously by `LambdaMcpGateway` (ModelTurn: list_tools, call_tool; API: validate_credential,
put_credential_secret, update_credential_secret: it writes every vault secret value, as the only user of the vault
key) with a request of managed_agents/adapters/aws/mcp_proxy_contract.py; answers
`{"ok": true, "result"}` or a typed `{"ok": false, "error"}`. The proxy and its warm MCP connections live as long as
the container. Requests may carry secret values: the event is never logged.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from managed_agents.adapters.aws.mcp_proxy_service import McpProxyLambda, build_mcp_proxy_lambda
from managed_agents.observability import logger, metrics, tracer
from managed_agents.settings import McpProxyLambdaSettings

# X-Ray: the MCP servers' calls too (observability.TRACED_MODULES); a no-op when tracing is off
tracer.patch(("httpx",))


@functools.cache
def proxy() -> McpProxyLambda:
    return build_mcp_proxy_lambda(McpProxyLambdaSettings())  # required fields come from the environment


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(op=event.get("op"), session_id=event.get("session_id"), mcp_server_name=event.get("server_name"))
    out = proxy().serve(event, seconds_left=context.get_remaining_time_in_millis() / 1000)
    error = out.get("error") or {}
    logger.info("MCP proxy request served", ok=out["ok"], error_type=error.get("type"))
    metrics.add_metric(name="McpProxyOk" if out["ok"] else "McpProxyFailed", unit="Count", value=1)
    return out


lambda_handler = handler
