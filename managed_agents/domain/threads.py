"""Thread identities (api-reference §2.3.3), shared by the threads API (services/threads.py) and the harness's
delegations (harness/threads.py)."""

from __future__ import annotations

from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import PREFIXES, deterministic_event_id, deterministic_id

KIND = "session_thread"
# the agent snapshot a session carries (services/sessions.py), and the part of it a thread's `agent` repeats
# (SessionThreadAgent: the roster is not repeated)
SESSION_AGENT_FIELDS = (
    "id",
    "type",
    "name",
    "description",
    "system",
    "model",
    "tools",
    "mcp_servers",
    "skills",
    "multiagent",
    "execution_identity",
    "version",
)
THREAD_AGENT_FIELDS = tuple(f for f in SESSION_AGENT_FIELDS if f != "multiagent")


def primary_thread_id(session_id: str) -> str:
    """The session's primary thread: the session itself, so its id is derived from the session's."""
    return deterministic_id(KIND, session_id, "primary")


def child_thread_id(session_id: str, call_event_id: str) -> str:
    """The thread a delegation call starts: the same id however often the start is re-run (crash recovery)."""
    return deterministic_id(KIND, session_id, call_event_id)


def answer_id(session_id: str, call_id: str, type_: str) -> str:
    """The id the session's log gives an answer to a child's cross-posted call (services/sessions.py): one
    confirmation and one result per call, so the child looks its answers up by id (harness/threads.py)."""
    part = "confirmation" if type_ == "user.tool_confirmation" else "result"
    return deterministic_event_id(session_id, f"answer@{call_id}:{part}")


def is_thread_id(id_: str) -> bool:
    return id_.startswith(PREFIXES[KIND])


def thread_agent(agent: JsonObject) -> JsonObject:
    """A resolved agent definition as a thread shows it (`{type: "agent", ...}`, no roster)."""
    out = {k: agent.get(k) for k in THREAD_AGENT_FIELDS}
    out["type"] = "agent"
    return out


def answered_through_session(type_: str, payload: JsonObject, internal: JsonObject | None) -> bool:
    """A child's call that the session's side answers: a custom tool, an ask-gated call, a sandbox tool (the session's
    worker runs it)."""
    if type_ == "agent.custom_tool_use":
        return True
    if type_ == "agent.mcp_tool_use":
        return payload.get("evaluated_permission") == "ask"
    if type_ == "agent.tool_use":
        kind = (internal or {}).get("kind")
        return payload.get("evaluated_permission") == "ask" or (
            kind == "builtin" and payload.get("evaluated_permission") == "allow"
        )
    return False
