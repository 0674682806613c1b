"""The event log's records.

An event has a wire part (what the API returns: `id`, `type`, `processed_at` and the type's own fields) and an
optional `internal` part that never leaves the platform: the raw Messages API content of a turn (thinking
signatures, model tool_use ids), the point up to which a request read the log, a compaction summary. Keeping
those in the log keeps the log the single source of truth (architecture: "nothing else holds session state
that cannot be rebuilt from the log").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from managed_agents.domain.clock import rfc3339

JsonObject = dict[str, object]

# The `types[]` filter values the SDK knows (BetaManagedAgentsSessionEventType).
EVENT_TYPES: frozenset[str] = frozenset(
    """user.message user.interrupt user.tool_confirmation user.custom_tool_result agent.custom_tool_use agent.message
    agent.thinking agent.mcp_tool_use agent.mcp_tool_result agent.tool_use agent.tool_result
    agent.thread_message_received agent.thread_message_sent agent.thread_context_compacted session.error
    session.status_rescheduled session.status_running session.status_idle session.status_terminated
    session.thread_created span.outcome_evaluation_start span.outcome_evaluation_end span.model_request_start
    span.model_request_end span.outcome_evaluation_ongoing user.define_outcome session.thread_status_running
    session.thread_status_idle session.thread_status_terminated user.tool_result session.thread_status_rescheduled
    session.updated system.message session.usage workflow_run.created workflow_run.status_running
    workflow_run.status_idle workflow_run.status_ended workflow_run.error workflow_run.phase_started
    workflow_run.phase_ended""".split()
)

# Session status after each status event (api-reference §3.3).
STATUS_BY_EVENT: dict[str, str] = {
    "session.status_running": "running",
    "session.status_idle": "idle",
    "session.status_rescheduled": "rescheduling",
    "session.status_terminated": "terminated",
}
# A child thread's own status events (on its log, marked `internal.own`; their copies on the session's log are not
# marked and change nothing there): services/threads.py
THREAD_STATUS_BY_EVENT: dict[str, str] = {
    "session.thread_status_running": "running",
    "session.thread_status_idle": "idle",
    "session.thread_status_rescheduled": "rescheduling",
    "session.thread_status_terminated": "terminated",
}

Order = Literal["asc", "desc"]


def builtin_tool_result_type(environment_type: object) -> str:
    """The type a built-in (sandbox) tool's result is logged as (api-reference §3.1, §3.2): `user.tool_result` on a
    `self_hosted` environment, where the client's own worker runs the tool; `agent.tool_result` on `cloud`, where the
    platform's sandbox does (its worker still posts `user.tool_result`: the platform logs it as the agent's)."""
    return "user.tool_result" if environment_type == "self_hosted" else "agent.tool_result"


@dataclass(frozen=True)
class NewEvent:
    id: str
    type: str
    payload: JsonObject = field(default_factory=dict)
    internal: JsonObject | None = None


@dataclass(frozen=True)
class StoredEvent:
    session_id: str
    seq: int
    id: str
    type: str
    processed_at: datetime
    payload: JsonObject
    internal: JsonObject | None = None

    def wire(self) -> JsonObject:
        return {"id": self.id, "type": self.type, "processed_at": rfc3339(self.processed_at), **self.payload}


@dataclass(frozen=True)
class TimeRange:
    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None

    def is_empty(self) -> bool:
        return self.gt is None and self.gte is None and self.lt is None and self.lte is None

    def contains(self, ts: datetime) -> bool:
        return (
            (self.gt is None or ts > self.gt)
            and (self.gte is None or ts >= self.gte)
            and (self.lt is None or ts < self.lt)
            and (self.lte is None or ts <= self.lte)
        )
