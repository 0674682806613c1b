"""Work started by events: an EventBridge rule or an EventBridge Scheduler schedule (architecture: triggers).

Two envelopes reach the trigger function, each with an idempotency key, around one `detail`:

* an EventBridge event, as the rule delivers it: `{"id", "detail-type", "source", "detail": {...}, ...}`; the key
  is the event's `id`, which EventBridge keeps across its redeliveries;
* a Scheduler schedule's target input: `{"schedule_arn": "<aws.scheduler.schedule-arn>", "scheduled_time":
  "<aws.scheduler.scheduled-time>", "detail": {...}}`, the placeholders filled in by Scheduler at each run; the key
  is the schedule and the time the run was scheduled for, the same for every retry of that run.

The `detail` is a trigger kind, discriminated by `type` (`start_session` when absent):

    {"type": "start_session", "agent": "agent_..." | {"type": "agent", "id", "version"}, "environment_id": "env_...",
     "message": "text of the first user message", "workspace_id"?: "wrkspc_...", "title"?: str,
     "metadata"?: {str: str}, "vault_ids"?: [str]}
    {"type": "run_deployment", "deployment_id": "depl_...", "workspace_id"?: "wrkspc_..."}

`run_deployment` fires a deployment (services/deployments.py): from a Scheduler schedule it is the cron tick
`scheduled_time` (each deployment's own schedule sends it; at most one run per tick, however often it is delivered),
from an EventBridge event a run like `POST /v1/deployments/{id}/run` (trigger `manual`), once per event id.

`workspace_id` may be left out: the agent's workspace is used (an AWS deployment has one, whose id nobody is told);
given, it must be the agent's. Starting is idempotent on the key (EventBridge, Scheduler and Lambda's asynchronous
invocation all deliver at least once): a marker record keyed by it is claimed before the session is created, and
the session's id is derived from the key too, so deliveries racing past a claim without a session (the first one
crashed in between, or is still creating it) cannot both create one: the second insert is a Conflict and that
delivery answers with the session the first one made. Bad input raises InvalidRequest or NotFound with a message
saying what is wrong; the trigger function then fails, and after Lambda's retries the event lands in the trigger
dead-letter queue (docs/deploy-aws.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from managed_agents.domain.clock import parse_rfc3339
from managed_agents.domain.errors import Conflict, InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import deterministic_id
from managed_agents.ports import Record
from managed_agents.services.deployments import DeploymentService
from managed_agents.services.records import mutate
from managed_agents.services.sessions import SessionService
from managed_agents.wire.sessions import AgentRefParams, SessionCreateParams

TRIGGER = "trigger"
START_SESSION: Literal["start_session"] = "start_session"
SCHEDULER_PLACEHOLDER = "<aws.scheduler."
_M = TypeVar("_M", bound=BaseModel)


class StartSessionTrigger(BaseModel):
    """Create a session and send it its first user message."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start_session"] = START_SESSION
    workspace_id: str | None = Field(None, min_length=1, description="default: the agent's workspace")
    agent: str | AgentRefParams
    environment_id: str = Field(min_length=1)
    message: str = Field(min_length=1, max_length=100_000)
    title: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    vault_ids: list[str] = Field(default_factory=list)

    @property
    def agent_id(self) -> str:
        return self.agent if isinstance(self.agent, str) else self.agent.id


class RunDeploymentTrigger(BaseModel):
    """Fire a deployment: its scheduled tick (a Scheduler input) or an on-demand run (an EventBridge event)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["run_deployment"]
    deployment_id: str = Field(min_length=1)
    workspace_id: str | None = Field(None, min_length=1, description="default: the deployment's workspace")


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("type") or START_SESSION)
    return getattr(value, "type", None)


RUN_DEPLOYMENT = "run_deployment"
TriggerDetail = Annotated[
    Annotated[StartSessionTrigger, Tag(START_SESSION)] | Annotated[RunDeploymentTrigger, Tag(RUN_DEPLOYMENT)],
    Discriminator(_kind),
]
TRIGGER_DETAIL: TypeAdapter[StartSessionTrigger | RunDeploymentTrigger] = TypeAdapter(TriggerDetail)


class EventBridgeEvent(BaseModel):
    """The envelope of an event an EventBridge rule delivers (the fields this function reads)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(min_length=1)
    detail_type: str = Field(alias="detail-type")
    detail: dict[str, Any]


class ScheduledRun(BaseModel):
    """A Scheduler schedule's target input: one run of the schedule, named by its schedule and scheduled time."""

    model_config = ConfigDict(extra="forbid")

    schedule_arn: str = Field(min_length=1)
    scheduled_time: str = Field(min_length=1)
    detail: dict[str, Any]


@dataclass(frozen=True)
class Trigger:
    key: str  # the idempotency key: the EventBridge event id, or `{schedule_arn}@{scheduled_time}`
    detail: StartSessionTrigger | RunDeploymentTrigger
    scheduled_time: str | None = None  # a Scheduler run's


def parse_trigger(event: dict[str, Any]) -> Trigger:
    """The trigger an EventBridge event or a Scheduler input carries; InvalidRequest, saying what, when malformed."""
    key: str
    raw: dict[str, Any]
    scheduled: str | None = None
    if "detail-type" in event:
        envelope = _validate(EventBridgeEvent, event, "event")
        key, raw = envelope.id, envelope.detail
    elif "scheduled_time" in event or "schedule_arn" in event:
        run = _validate(ScheduledRun, event, "schedule input")
        if SCHEDULER_PLACEHOLDER in run.schedule_arn or SCHEDULER_PLACEHOLDER in run.scheduled_time:
            raise InvalidRequest(
                "the schedule input's <aws.scheduler.*> placeholders were not filled in: only a schedule's own run "
                "fills them; invoke the function with real values to test it"
            )
        key, raw, scheduled = f"{run.schedule_arn}@{run.scheduled_time}", run.detail, run.scheduled_time
    else:
        raise InvalidRequest(
            "not a trigger: expected an EventBridge event (id, detail-type, detail) or a schedule input "
            "(schedule_arn, scheduled_time, detail); see docs/deploy-aws.md, 'Sessions from events and schedules'"
        )
    try:
        return Trigger(key, TRIGGER_DETAIL.validate_python(raw), scheduled)
    except ValidationError as exc:
        raise InvalidRequest(f"trigger detail.{_where(exc)}") from exc


def _validate(model: type[_M], event: dict[str, Any], what: str) -> _M:
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        raise InvalidRequest(f"trigger {what}: {_where(exc)}") from exc


def _where(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"] if p not in (START_SESSION, RUN_DEPLOYMENT)]  # (the union's tag is noise)
    return f"{'.'.join(loc) or '(root)'}: {first['msg']}"


def handle_trigger(sessions: SessionService, deployments: DeploymentService, event: dict[str, Any]) -> JsonObject:
    """What the trigger function does with one event: `{"session_id", "created"}`, plus `"run_id"` and `"error"`
    for a deployment run (a run that failed is recorded, not raised: the run is the record of the failure)."""
    trigger = parse_trigger(event)
    if isinstance(trigger.detail, RunDeploymentTrigger):
        return run_deployment(deployments, trigger, trigger.detail)
    return start_session(sessions, trigger, trigger.detail)


def run_deployment(deployments: DeploymentService, trigger: Trigger, detail: RunDeploymentTrigger) -> JsonObject:
    if trigger.scheduled_time is not None:
        try:
            scheduled_at = parse_rfc3339(trigger.scheduled_time)
        except ValueError as exc:
            raise InvalidRequest(
                f"trigger schedule input: scheduled_time {trigger.scheduled_time!r} is not a time"
            ) from exc
        run = deployments.fire_scheduled(detail.deployment_id, scheduled_at, detail.workspace_id)
        if run is None:  # paused or archived since the schedule fired: nothing to do, nothing to retry
            return {"run_id": None, "session_id": None, "error": None, "created": False}
    else:
        run = deployments.fire_event(detail.deployment_id, trigger.key, detail.workspace_id)
    return {"run_id": run["id"], "session_id": run["session_id"], "error": run["error"], "created": True}


def start_session_from_event(sessions: SessionService, event: dict[str, Any]) -> JsonObject:
    """Create (once per idempotency key) the session the trigger asks for and send its first message."""
    trigger = parse_trigger(event)
    if not isinstance(trigger.detail, StartSessionTrigger):
        raise InvalidRequest("trigger detail.type: expected start_session")
    return start_session(sessions, trigger, trigger.detail)


def start_session(sessions: SessionService, trigger: Trigger, detail: StartSessionTrigger) -> JsonObject:
    resources = sessions.svc.resources
    agent = resources.get_by_id("agent", detail.agent_id)
    if agent is None or (detail.workspace_id is not None and agent.workspace_id != detail.workspace_id):
        where = f" in workspace {detail.workspace_id!r}" if detail.workspace_id else ""
        raise NotFound(f"agent {detail.agent_id!r} not found{where}")
    workspace_id = agent.workspace_id
    session_id = deterministic_id("session", TRIGGER, workspace_id, trigger.key)
    marker_id = session_id.replace("sesn_", "trg_", 1)
    now = sessions.svc.clock.now()
    marker = Record(TRIGGER, workspace_id, marker_id, {"event_id": trigger.key, "session_id": None}, now)
    try:
        resources.insert(marker)
    except Conflict:
        found = resources.get(TRIGGER, workspace_id, marker_id)
        if found is not None and found.doc.get("session_id"):
            return {"session_id": found.doc["session_id"], "created": False}
        marker = found or marker
    params = SessionCreateParams.model_validate(
        {
            "agent": detail.agent if isinstance(detail.agent, str) else detail.agent.model_dump(),
            "environment_id": detail.environment_id,
            "title": detail.title,
            "metadata": {**detail.metadata, "trigger_event_id": trigger.key[:512]},
            "vault_ids": detail.vault_ids,
            "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": detail.message}]}],
        }
    )
    try:
        session_id = str(sessions.create(workspace_id, params, session_id=session_id)["id"])
        created = True
    except Conflict:  # a concurrent delivery of the same event created it (the session id is the key's)
        if resources.get("session", workspace_id, session_id) is None:
            raise
        created = False

    def record(r: Record) -> None:
        r.doc["session_id"] = session_id

    mutate(resources, marker, record)
    return {"session_id": session_id, "created": created}
