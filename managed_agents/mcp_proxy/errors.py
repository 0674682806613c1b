"""The proxy's one failure type, shaped as the reference's session errors (api-reference §3.2 `session.error`)."""

from __future__ import annotations

from managed_agents.ports import AUTHENTICATION_FAILED, CONNECTION_FAILED, McpErrorType, McpProxyError

__all__ = ["AUTHENTICATION_FAILED", "CONNECTION_FAILED", "McpErrorType", "McpProxyError"]
