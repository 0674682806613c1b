"""The proxy's one failure type, shaped as the reference's session errors (api-reference §3.2 `session.error`)."""

from __future__ import annotations

from typing import Literal

from managed_agents.domain.events import JsonObject

McpErrorType = Literal["mcp_connection_failed_error", "mcp_authentication_failed_error"]
CONNECTION_FAILED: McpErrorType = "mcp_connection_failed_error"
AUTHENTICATION_FAILED: McpErrorType = "mcp_authentication_failed_error"


class McpProxyError(Exception):
    """An MCP server could not be used. The message is for users and logs: it never holds a secret value."""

    def __init__(self, error_type: McpErrorType, message: str, server_name: str) -> None:
        super().__init__(message)
        self.error_type: McpErrorType = error_type
        self.message = message
        self.server_name = server_name

    def session_error(self, retry_status: str = "retrying") -> JsonObject:
        """The `error` object of a `session.error` event."""
        return {
            "type": self.error_type,
            "message": self.message,
            "mcp_server_name": self.server_name,
            "retry_status": {"type": retry_status},
        }

    def __repr__(self) -> str:
        return f"McpProxyError({self.error_type!r}, {self.message!r}, server_name={self.server_name!r})"
