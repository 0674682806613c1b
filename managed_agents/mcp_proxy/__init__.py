"""The MCP proxy: calls MCP servers for sessions with the sessions' vault credentials (architecture: "Credentials").

    proxy = McpProxy(resources, secret_store)
    tools = proxy.list_tools(session_id, "github")          # Messages API tool definitions
    result = proxy.call_tool(session_id, "github", "search", {"q": "x"})   # McpResult(content, is_error)

Failures to use a server raise McpProxyError(error_type, message, server_name) with the reference's session
error types `mcp_connection_failed_error` / `mcp_authentication_failed_error`; `.session_error()` gives the
`session.error` payload. No message or log line carries a secret value.
"""

from managed_agents.mcp_proxy.errors import AUTHENTICATION_FAILED, CONNECTION_FAILED, McpErrorType, McpProxyError
from managed_agents.mcp_proxy.proxy import McpProxy, McpProxySettings, McpResult

__all__ = [
    "AUTHENTICATION_FAILED",
    "CONNECTION_FAILED",
    "McpErrorType",
    "McpProxy",
    "McpProxyError",
    "McpProxySettings",
    "McpResult",
]
