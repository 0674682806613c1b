"""Sessions started by events: an EventBridge rule or an EventBridge Scheduler schedule (architecture: triggers).

The event's `detail` (or, for a schedule, the target input itself) names what to start:

    {"workspace_id": "wrkspc_...", "agent": "agent_..." | {"type": "agent", "id", "version"},
     "environment_id": "env_...", "message": "text of the first user message",
     "title"?: str, "metadata"?: {str: str}, "vault_ids"?: [str]}

Starting is idempotent on the event id: EventBridge delivers at least once, and a redelivery returns the session
the first delivery created. A marker record keyed by the event id is claimed before the session is created, so
concurrent deliveries cannot both create one; a delivery that finds a claim without a session (the first one
crashed in between) creates it.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from managed_agents.domain.errors import Conflict, InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import deterministic_id
from managed_agents.ports import Record
from managed_agents.services.records import mutate
from managed_agents.services.sessions import SessionService
from managed_agents.wire.sessions import AgentRefParams, SessionCreateParams

TRIGGER = "trigger"


class TriggerDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: str = Field(min_length=1)
    agent: str | AgentRefParams
    environment_id: str = Field(min_length=1)
    message: str = Field(min_length=1, max_length=100_000)
    title: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    vault_ids: list[str] = Field(default_factory=list)


def parse_trigger(event: dict[str, Any]) -> tuple[str, TriggerDetail]:
    """(event id, detail) of an EventBridge event (`id`, `detail`) or of a Scheduler target input (the detail
    itself plus `event_id`, e.g. the schedule's `<aws.scheduler.execution-id>`); InvalidRequest when malformed."""
    if isinstance(event.get("detail"), dict):
        event_id, raw = str(event.get("id") or ""), cast(dict[str, Any], event["detail"])
    else:
        event_id, raw = str(event.get("event_id") or ""), {k: v for k, v in event.items() if k != "event_id"}
    if not event_id:
        raise InvalidRequest("the trigger event has no id to make it idempotent (EventBridge 'id' or 'event_id')")
    try:
        return event_id, TriggerDetail.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"trigger detail.{where}: {first['msg']}") from exc


def start_session_from_event(sessions: SessionService, event: dict[str, Any]) -> JsonObject:
    """Create (once per event id) the session the event asks for and send its first message."""
    event_id, detail = parse_trigger(event)
    resources = sessions.svc.resources
    if resources.get("workspace", "_system", detail.workspace_id) is None:
        raise NotFound(f"workspace {detail.workspace_id!r} not found")
    marker_id = deterministic_id("session", TRIGGER, detail.workspace_id, event_id).replace("sesn_", "trg_", 1)
    now = sessions.svc.clock.now()
    marker = Record(TRIGGER, detail.workspace_id, marker_id, {"event_id": event_id, "session_id": None}, now)
    try:
        resources.insert(marker)
    except Conflict:
        found = resources.get(TRIGGER, detail.workspace_id, marker_id)
        if found is not None and found.doc.get("session_id"):
            return {"session_id": found.doc["session_id"], "created": False}
        marker = found or marker
    params = SessionCreateParams.model_validate(
        {
            "agent": detail.agent if isinstance(detail.agent, str) else detail.agent.model_dump(),
            "environment_id": detail.environment_id,
            "title": detail.title,
            "metadata": {**detail.metadata, "trigger_event_id": event_id[:512]},
            "vault_ids": detail.vault_ids,
            "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": detail.message}]}],
        }
    )
    session = sessions.create(detail.workspace_id, params)

    def record(r: Record) -> None:
        r.doc["session_id"] = session["id"]

    mutate(resources, marker, record)
    return {"session_id": session["id"], "created": True}
