"""The events the harness logs, as batch entries `(type, payload, internal)`.

One builder per event shape, shared by the turn, compaction and the failure report, so that a span is closed, an
error worded and a platform-made tool result typed the same way on every path.
"""

from __future__ import annotations

from managed_agents.domain.events import JsonObject
from managed_agents.ports import ModelResponse

Entry = tuple[str, JsonObject, JsonObject | None]


def request_end(
    start_id: str, response: ModelResponse | None, *, is_error: bool, internal: JsonObject | None = None
) -> Entry:
    """`span.model_request_end` closing `start_id`; without a response (a failed or abandoned request) it is an
    error span with zero usage."""
    u = response.usage if response is not None else None
    usage: JsonObject = {
        "input_tokens": u.input_tokens if u else 0,
        "output_tokens": u.output_tokens if u else 0,
        "cache_read_input_tokens": u.cache_read_input_tokens if u else 0,
        "cache_creation_input_tokens": u.cache_creation_input_tokens if u else 0,
    }
    return (
        "span.model_request_end",
        {"model_request_start_id": start_id, "is_error": is_error, "model_usage": usage},
        internal,
    )


def session_error(error_type: str, message: str, retry: str) -> Entry:
    return ("session.error", {"error": {"type": error_type, "message": message, "retry_status": {"type": retry}}}, None)


def tool_error(
    tool_use_event_id: str, message: str, *, kind: str = "server", builtin_result: str = "agent.tool_result"
) -> Entry:
    """An error result the platform gives in place of a tool's. A sandbox (`builtin`) call is answered with the
    session's built-in result type (`builtin_result`, see domain.events.builtin_tool_result_type), as its worker's
    own result would be logged, so a worker that reconciles the log later does not run the abandoned call."""
    text: JsonObject = {"type": "text", "text": message}
    if kind == "mcp":
        payload: JsonObject = {"mcp_tool_use_id": tool_use_event_id, "content": [text], "is_error": True}
        return ("agent.mcp_tool_result", payload, None)
    event_type = builtin_result if kind == "builtin" else "agent.tool_result"
    return (event_type, {"tool_use_id": tool_use_event_id, "content": [text], "is_error": True}, None)
