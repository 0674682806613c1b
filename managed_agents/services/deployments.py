"""Deployments and deployment runs (api-reference §2.8; architecture: "Running without a client").

A deployment is a session template (pinned agent version, environment, vaults, resources, budget, initial events)
plus an optional cron schedule. Each fire (a cron tick or `POST /v1/deployments/{id}/run`) records one append-only
deployment run holding exactly one of `session_id` (the session it created, whose `deployment_id` is set) or `error`.

Decisions where the SDK is silent ([inferred]):

* **Validation**: a deployment is checked as the session create it stands for (`SessionService.check_create`: the
  agent, the environment, the vaults, `resources`, `budget`, the initial events), so deployments accept exactly what
  sessions accept; `system.message` initial events are the deployment's own addition.
* **At most one run per (deployment, scheduled_at)**: a scheduled run's id, and the id of the session it creates,
  are derived from the pair. The run is inserted first (the claim); a second fire of the same tick finds it and
  returns it, or, if the first fire stopped before recording its outcome, finishes it: the session insert then
  conflicts if the first one got that far, and the run records that session.
* **Auto-pause**: a scheduled run whose error cannot heal by itself (every `paused_reason` error type but
  `unknown_error`, which may be a passing failure) pauses the deployment with `paused_reason: {type: "error"}`.
  `session_rate_limited_error` and `session_creation_rejected_error` never pause. A manual run never pauses.
* **Embedded missed-tick policy**: the scheduler keeps, per deployment, the next tick it has not fired. Ticks that
  fell while the server was down are fired when it comes back, oldest first, each with its own `scheduled_at` (so
  each is one run, never two), as long as they are at most `deployment_catch_up_seconds` old (default one day);
  older ones are skipped and the skip is logged with its count. Pausing skips the ticks of the pause: unpausing
  starts from the next tick after it. (Hosted behaviour is unknown; EventBridge Scheduler on AWS runs in the
  service and is never "down".)
* **Jitter**: each fire starts a stable per-deployment offset after its cron instant (at most
  `deployment_max_jitter_seconds`, and a tenth of the schedule's period); `upcoming_runs_at` lists the times the
  runs will start, jitter included; `scheduled_at` is the cron instant itself.
* **A fire cut off after its claim** (a crash, a killed request) is finished by `finish_pending_runs`: the claimed
  run is in the sparse lookup `pending: yes` until its outcome is recorded, and a finish is the same fire again (the
  run's session id is derived from the run id, so a finish racing the first fire still makes one session and one
  outcome, and `deployment_run.succeeded|failed` is caused only by the write that records the outcome). A fire cut
  off between its session's insert and the append of the session's initial events left a session with no events:
  the finish logs them (`SessionService.complete_create`: their ids derive from the session id, so nothing is logged
  twice) and records the run succeeded; if the session got other events meanwhile, the run is recorded failed
  (`unknown_error`, saying so). Embedded:
  every claimed run when the server starts (`Runtime.recover`), and at each scheduler pass those claimed more than
  `deployment_run_grace_seconds` (60) ago (a worker of several that restarted). AWS, where no process restarts:
  the reaper function's run, every minute, finishes those claimed more than that ago (a manual run whose API call
  was cut off; a scheduled one whose trigger's retries ran out). A scheduled tick is also re-fired by its scheduler.
* `last_run_at` is the creation time of the latest scheduled run (success or error); manual runs leave it.
* Archived deployments report `status: "active"` (SDK docstring), have no upcoming runs, and cannot run.
* **Schedule sync (AWS)**: the store is the truth and the external schedule (EventBridge Scheduler) follows it. A
  write that changes what the schedule should be marks the record (sparse lookup `schedule_sync: pending`, in the
  same write), then syncs the schedule and clears the mark (only if the record has not been written since). A sync
  that fails is logged, and the write still answers (it is durable); `reconcile_schedules` (the reaper function,
  every minute) syncs every marked record, so the schedule converges on the last write even when a process dies
  between the write and its sync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from pydantic import TypeAdapter, ValidationError

from managed_agents.domain import schedules
from managed_agents.domain.clock import parse_rfc3339, rfc3339
from managed_agents.domain.errors import ApiError, Conflict, InvalidRequest, NotFound, StaleRevision
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import deterministic_id, new_id
from managed_agents.ports import DeploymentSchedules, ListQuery, Record
from managed_agents.services.common import Services, archiving, list_page
from managed_agents.services.crud import Collection, Kind, Page, assign, assign_metadata
from managed_agents.services.records import mutate
from managed_agents.services.sessions import SessionService
from managed_agents.wire.deployments import (
    CronScheduleParams,
    DeploymentCreateParams,
    DeploymentInitialEventParams,
    DeploymentUpdateParams,
)
from managed_agents.wire.sessions import AgentRefParams, SessionCreateParams

DEPLOYMENT = Kind("deployment", lambda: new_id("deployment"), not_found_code="deployment_not_found")
RUN = Kind("deployment_run", lambda: new_id("deployment_run"), noun="deployment run")
SCHEDULED = "yes"
RESOURCE_PARAMS = "_resource_params"
# the run error types (SDK `BetaManagedAgentsDeploymentRun.error`) a scheduled run pauses its deployment for
AUTO_PAUSE = frozenset(
    {
        "agent_archived_error",
        "environment_archived_error",
        "environment_not_found_error",
        "file_not_found_error",
        "mcp_egress_blocked_error",
        "memory_store_archived_error",
        "organization_disabled_error",
        "self_hosted_resources_unsupported_error",
        "session_resource_not_found_error",
        "skill_not_found_error",
        "vault_archived_error",
        "vault_not_found_error",
        "workspace_archived_error",
    }
)
# error codes of the session create's checks -> run error types
_RUN_ERRORS = {
    "environment_not_found": "environment_not_found_error",
    "environment_archived": "environment_archived_error",
    "vault_not_found": "vault_not_found_error",
    "vault_archived": "vault_archived_error",
    "file_not_found": "file_not_found_error",
    "memory_store_archived": "memory_store_archived_error",
    "skill_not_found": "skill_not_found_error",
    "session_resource_not_found": "session_resource_not_found_error",
}
INITIAL_EVENTS: TypeAdapter[list[DeploymentInitialEventParams]] = TypeAdapter(list[DeploymentInitialEventParams])
log = logging.getLogger("managed_agents.deployments")
SYNC_ATTR, SYNC_PENDING = "schedule_sync", "pending"
PENDING_ATTR, PENDING_YES = "pending", "yes"  # a run claimed and not finished (sparse lookup)
PENDING_RUN_GRACE_SECONDS = 60.0  # a claimed run younger than this may still be finishing in its own request


@dataclass(frozen=True)
class ScheduleSettings:
    max_jitter_seconds: float = 10.0
    catch_up_seconds: float = 86_400.0
    pending_run_grace_seconds: float = PENDING_RUN_GRACE_SECONDS  # (`finish_pending_runs`)


class RunFailed(Exception):
    """A fire that could not create its session: the run's `error`."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message


def _resources(params: list[dict[str, object]]) -> JsonObject:
    """The stored `resources`: the wire form echoes the input minus write-only credentials (SDK docstring); the
    input itself, tokens included, stays in an internal key for the fires (as sessions keep repository tokens)."""
    shown = [{k: v for k, v in r.items() if k != "authorization_token"} for r in params]
    hidden = any("authorization_token" in r for r in params)
    return {"resources": shown, **({RESOURCE_PARAMS: [dict(r) for r in params]} if hidden else {})}


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or '(root)'}: {first['msg']}"


class DeploymentService:
    def __init__(self, svc: Services, sessions: SessionService, settings: ScheduleSettings | None = None) -> None:
        self.svc = svc
        self.sessions = sessions
        self.settings = settings or ScheduleSettings()
        self.items = Collection(svc, DEPLOYMENT, view=self._view)
        self.runs = Collection(svc, RUN)
        self.fire_hooks: list[Callable[[JsonObject], object]] = []  # called with each run recorded
        self.schedules: DeploymentSchedules | None = None  # AWS: one Scheduler schedule per deployment

    def _sync(self, rec: Record) -> bool:
        """Make the external schedule (if any) follow the stored deployment: its cron, enabled while active,
        removed once archived or manual-only (module docstring, "Schedule sync"). False: it failed, and the record
        stays marked for `reconcile_schedules`."""
        if self.schedules is None:
            return True
        doc = rec.doc
        schedule = None if doc.get("archived_at") else cast(JsonObject | None, doc.get("schedule"))
        try:
            self.schedules.put(str(doc["id"]), schedule, doc.get("status") == "active")
        except Exception:
            log.warning("deployment schedule not synced: reconciled later", exc_info=True, extra={"id": rec.id})
            return False
        if rec.attrs.get(SYNC_ATTR) == SYNC_PENDING:
            synced = Record(
                rec.kind,
                rec.workspace_id,
                rec.id,
                dict(doc),
                rec.created_at,
                rec.rev,
                rec.archived,
                {**rec.attrs, SYNC_ATTR: None},
                rec.expires_at,
            )
            try:
                self.svc.resources.replace(synced, expected_rev=rec.rev)
            except StaleRevision:
                pass  # written again since: that write marked it and syncs it (or the reconciler will)
        return True

    def reconcile_schedules(self) -> int:
        """Sync every deployment whose external schedule has not followed its last write (a sync that failed, or a
        process that died between the write and the sync); the number synced now. AWS: the reaper's every run."""
        if self.schedules is None:
            return 0
        return sum(self._sync(rec) for rec in self.svc.resources.find(DEPLOYMENT.name, SYNC_ATTR, [SYNC_PENDING]))

    # -- the wire form ---------------------------------------------------------------------------------------

    def _view(self, doc: JsonObject) -> JsonObject:
        schedule = cast(JsonObject | None, doc.get("schedule"))
        if schedule is not None:
            upcoming: list[str] = []
            if not doc.get("archived_at"):
                expr, tz = str(schedule["expression"]), str(schedule["timezone"])
                now = self.svc.clock.now()
                offset = self._jitter(str(doc["id"]), expr, tz, now)
                upcoming = [rfc3339(t + offset) for t in schedules.upcoming(expr, tz, now - offset)]
            doc["schedule"] = {**schedule, "upcoming_runs_at": upcoming}
        return doc

    def _jitter(self, deployment_id: str, expression: str, timezone: str, now: datetime) -> timedelta:
        return schedules.jitter(deployment_id, expression, timezone, self.settings.max_jitter_seconds, now)

    # -- validation ------------------------------------------------------------------------------------------

    def session_params(self, doc: JsonObject) -> SessionCreateParams:
        """The session create a fire of this deployment makes, validated as sessions validate it; `system.message`
        initial events, the deployment's own addition, ride along and are appended in order with the others."""
        events = cast(list[JsonObject], doc["initial_events"])
        try:
            params = SessionCreateParams.model_validate(
                {
                    "agent": doc["agent"],
                    "environment_id": doc["environment_id"],
                    "initial_events": [e for e in events if e["type"] != "system.message"],
                    "vault_ids": doc["vault_ids"],
                    "resources": doc.get(RESOURCE_PARAMS, doc["resources"]),
                    "budget": doc.get("budget"),
                }
            )
            all_events = INITIAL_EVENTS.validate_python(events)
        except ValidationError as exc:
            raise InvalidRequest(_validation_message(exc)) from exc
        return params.model_copy(update={"initial_events": all_events})

    def _check(self, ws: str, doc: JsonObject) -> None:
        params = self.session_params(doc)
        try:
            self.sessions.check_create(ws, params)
        except ApiError as exc:
            if isinstance(exc, NotFound) and exc.error_code is None and str(exc).startswith("agent"):
                raise InvalidRequest(f"agent: {exc}") from exc
            raise
        schedule = cast(JsonObject | None, doc.get("schedule"))
        if schedule is not None:
            schedules.check_expression(str(schedule["expression"]))
            schedules.check_timezone(str(schedule["timezone"]))

    def _pin_agent(self, ws: str, agent: str | AgentRefParams) -> JsonObject:
        """`agent` as stored: `{type: "agent", id, version}`, a string pinning the latest version."""
        agent_id, version = (agent, None) if isinstance(agent, str) else (agent.id, agent.version)
        snap = self.sessions.agents.snapshot(ws, agent_id, version)
        if snap.get("archived_at"):
            raise InvalidRequest(f"agent: agent {agent_id!r} is archived and cannot be deployed")
        return {"type": "agent", "id": agent_id, "version": int(cast(int, snap["version"]))}

    @staticmethod
    def _schedule(params: CronScheduleParams | None, current: JsonObject | None = None) -> JsonObject | None:
        if params is None:
            return None
        schedules.check_expression(params.expression)
        schedules.check_timezone(params.timezone)
        last = current.get("last_run_at") if current else None
        return {"type": "cron", "expression": params.expression, "timezone": params.timezone, "last_run_at": last}

    def _scheduling(self, rec: Record, *, restart: bool) -> None:
        """Set the scheduler's view of the record (attr `scheduled`, `_next_fire_at`) from its document; `restart`:
        the next tick counts from now (create, a new schedule, unpause)."""
        doc = rec.doc
        schedule = cast(JsonObject | None, doc.get("schedule"))
        live = schedule is not None and doc["status"] == "active" and not rec.archived
        rec.attrs["scheduled"] = SCHEDULED if live else None
        rec.attrs["status"] = str(doc["status"])
        if self.schedules is not None:  # the external schedule follows this write once synced (`_sync`)
            rec.attrs[SYNC_ATTR] = SYNC_PENDING
        if schedule is None:
            doc.pop("_next_fire_at", None)
        elif restart or "_next_fire_at" not in doc:
            now = self.svc.clock.now()
            doc["_next_fire_at"] = rfc3339(
                schedules.next_occurrence(str(schedule["expression"]), str(schedule["timezone"]), now)
            )

    # -- the resource API ------------------------------------------------------------------------------------

    def create(self, ws: str, params: DeploymentCreateParams) -> JsonObject:
        fields: JsonObject = {
            "name": params.name,
            "description": params.description or None,
            "agent": self._pin_agent(ws, params.agent),
            "environment_id": params.environment_id,
            "initial_events": [e.model_dump(mode="json", exclude_none=True) for e in params.initial_events],
            **_resources(params.resources),
            "vault_ids": list(params.vault_ids),
            "metadata": dict(params.metadata),
            "budget": params.budget,
            "schedule": self._schedule(params.schedule),
            "status": "active",
            "paused_reason": None,
        }
        self._check(ws, {"id": "", **fields})
        rid = DEPLOYMENT.new_id()
        probe = Record(DEPLOYMENT.name, ws, rid, {"id": rid, **fields}, self.svc.clock.now())
        self._scheduling(probe, restart=True)
        if "_next_fire_at" in probe.doc:
            fields["_next_fire_at"] = probe.doc["_next_fire_at"]
        attrs: dict[str, str | int | None] = {"agent_id": str(cast(JsonObject, fields["agent"])["id"]), **probe.attrs}
        rec = self.items.insert(ws, fields, attrs=attrs, id_=rid)
        self._sync(rec)
        return self.items.render(rec.doc)

    def record(self, ws: str, deployment_id: str) -> Record:
        return self.items.record(ws, deployment_id)

    def get(self, ws: str, deployment_id: str) -> JsonObject:
        return self.items.get(ws, deployment_id)

    def update(self, ws: str, deployment_id: str, params: DeploymentUpdateParams) -> JsonObject:
        sent = params.model_fields_set
        rec = self.items.live(ws, deployment_id, doing="updated")
        for name in ("agent", "environment_id", "name", "initial_events"):
            if name in sent and getattr(params, name) is None:
                raise InvalidRequest(f"{name}: cannot be cleared")
        pinned = self._pin_agent(ws, params.agent) if params.agent is not None else None
        schedule_changed = "schedule" in sent

        def edit(r: Record) -> None:
            doc = r.doc
            assign(doc, params, ("name", "environment_id", "budget"))
            assign(doc, params, ("description",), empty_clears=("description",))
            if pinned is not None:
                doc["agent"] = pinned
                r.attrs["agent_id"] = str(pinned["id"])
            if "initial_events" in sent and params.initial_events is not None:
                doc["initial_events"] = [e.model_dump(mode="json", exclude_none=True) for e in params.initial_events]
            if "resources" in sent:
                doc.pop(RESOURCE_PARAMS, None)
                doc.update(_resources(params.resources or []))
            if "vault_ids" in sent:
                doc["vault_ids"] = list(params.vault_ids or [])
            if schedule_changed:
                doc["schedule"] = self._schedule(params.schedule, cast(JsonObject | None, doc.get("schedule")))
            assign_metadata(doc, params)
            self._check(ws, doc)
            self._scheduling(r, restart=schedule_changed)

        return self._synced(self.items.change(rec, edit, event="updated"))

    def _synced(self, rec: Record) -> JsonObject:
        self._sync(rec)
        return self.items.render(rec.doc)

    def list_deployments(self, ws: str, query: ListQuery) -> Page:
        return self.items.list(ws, query)

    def archive(self, ws: str, deployment_id: str) -> JsonObject:
        rec = self.items.record(ws, deployment_id)
        if rec.archived:
            return self.items.render(rec.doc)

        def edit(r: Record) -> None:
            now = rfc3339(self.svc.clock.now())
            r.archived = True
            r.doc.update({"archived_at": now, "status": "active", "paused_reason": None})
            self._scheduling(r, restart=False)

        return self._synced(self.items.change(rec, edit, event=archiving))

    def pause(self, ws: str, deployment_id: str, reason: JsonObject | None = None) -> JsonObject:
        rec = self.items.live(ws, deployment_id, doing="paused")
        return self.items.render(self._pause(rec, reason or {"type": "manual"}).doc)  # _pause syncs

    def _pause(self, rec: Record, reason: JsonObject) -> Record:
        def edit(r: Record) -> None:
            if r.doc["status"] == "paused" or r.archived:
                return  # already paused: its first reason stands
            r.doc.update({"status": "paused", "paused_reason": reason})
            self._scheduling(r, restart=False)

        paused = self.items.change(rec, edit, event=_status_event("paused"))
        self._sync(paused)
        return paused

    def unpause(self, ws: str, deployment_id: str) -> JsonObject:
        rec = self.items.live(ws, deployment_id, doing="unpaused")

        def edit(r: Record) -> None:
            if r.doc["status"] == "active":
                return
            r.doc.update({"status": "active", "paused_reason": None})
            self._scheduling(r, restart=True)  # the ticks of the pause are not fired

        return self._synced(self.items.change(rec, edit, event=_status_event("active")))

    # -- runs ------------------------------------------------------------------------------------------------

    def run_now(self, ws: str, deployment_id: str) -> JsonObject:
        rec = self.items.live(ws, deployment_id, doing="run")
        return self._fire(rec, None)

    def fire_event(self, deployment_id: str, key: str, ws: str | None = None) -> JsonObject:
        """An on-demand run from an EventBridge event (trigger `manual`), once per event id `key`."""
        rec = self._find(deployment_id, ws)
        run_id = deterministic_id("deployment_run", rec.id, "event", key)
        existing = self.svc.resources.get(RUN.name, rec.workspace_id, run_id)
        if existing is not None and not existing.doc.get("_pending"):
            return self.runs.render(existing.doc)
        self.items.check_live(rec, doing="run")
        return self._fire(rec, None, run_id=run_id, claim=existing)

    def _find(self, deployment_id: str, ws: str | None) -> Record:
        rec = self.svc.resources.get_by_id(DEPLOYMENT.name, deployment_id)
        if rec is None or (ws is not None and rec.workspace_id != ws):
            raise NotFound(f"deployment {deployment_id!r} not found", error_code=DEPLOYMENT.not_found_code)
        return rec

    def fire_scheduled(self, deployment_id: str, scheduled_at: datetime, ws: str | None = None) -> JsonObject | None:
        """One cron tick of a deployment (the embedded scheduler, or EventBridge Scheduler through the trigger
        function): at most one run per (deployment, scheduled_at), however often the tick is delivered. None: an
        archived or paused deployment does not run (a tick delivered late, after the pause, is dropped)."""
        rec = self._find(deployment_id, ws)
        existing = self.svc.resources.get(RUN.name, rec.workspace_id, self._scheduled_run_id(rec.id, scheduled_at))
        if existing is not None and not existing.doc.get("_pending"):
            return self.runs.render(existing.doc)
        if rec.archived or rec.doc["status"] != "active":
            return None
        return self._fire(rec, scheduled_at, claim=existing)

    @staticmethod
    def _scheduled_run_id(deployment_id: str, scheduled_at: datetime) -> str:
        return deterministic_id("deployment_run", deployment_id, rfc3339(scheduled_at))

    def _fire(
        self, rec: Record, scheduled_at: datetime | None, *, run_id: str | None = None, claim: Record | None = None
    ) -> JsonObject:
        """One fire: claim the run (insert it, with `deployment_run.started`), create its session, record its
        outcome. `claim`: the run is claimed already (a pending run read by the caller, `_finish` or a second delivery
        of a tick), so it is not inserted again: that insert could only conflict, and its transaction would carry a
        second `deployment_run.started` webhook item that only the store's rollback keeps from being delivered."""
        ws, doc = rec.workspace_id, rec.doc
        agent = cast(JsonObject, doc["agent"])
        trigger: JsonObject = (
            {"type": "manual"} if scheduled_at is None else {"type": "schedule", "scheduled_at": rfc3339(scheduled_at)}
        )
        if run_id is None:
            run_id = RUN.new_id() if scheduled_at is None else self._scheduled_run_id(rec.id, scheduled_at)
        fields: JsonObject = {
            "deployment_id": rec.id,
            "agent": {"type": "agent", "id": agent["id"], "version": agent["version"]},
            "session_id": None,
            "error": None,
            "trigger_context": trigger,
            "_pending": True,
        }
        attrs: dict[str, str | int | None] = {
            "deployment_id": rec.id,
            "trigger_type": str(trigger["type"]),
            PENDING_ATTR: PENDING_YES,
        }
        if claim is None:
            try:
                claim = self.runs.insert(ws, fields, attrs=attrs, id_=run_id, event="started")
            except Conflict:
                found = self.svc.resources.get(RUN.name, ws, run_id)
                if found is None:
                    raise
                if not found.doc.get("_pending"):
                    return self.runs.render(found.doc)  # the tick was fired already: the same run
                claim = found  # the first fire stopped before recording its outcome: finish it
        session_id = deterministic_id("session", "deployment_run", run_id)
        outcome: JsonObject
        try:
            outcome = {"session_id": self._start_session(ws, doc, session_id), "error": None}
        except RunFailed as exc:
            outcome = {"session_id": None, "error": {"type": exc.type, "message": exc.message}}
        except Exception as exc:
            log.exception("deployment run failed", extra={"deployment_id": rec.id, "run_id": run_id})
            outcome = {"session_id": None, "error": {"type": "unknown_error", "message": f"{type(exc).__name__}"}}

        def record(r: Record) -> None:
            if r.doc.get("_pending"):
                r.doc.update(outcome)
                r.doc.pop("_pending", None)
                r.attrs["has_error"] = "true" if outcome["error"] else "false"
                r.attrs.pop(PENDING_ATTR, None)

        run = self.runs.change(claim, record, event=_run_ended)
        error = cast(JsonObject | None, run.doc.get("error"))
        if scheduled_at is not None:
            self._after_scheduled_run(ws, rec.id, run, error)
        out = self.runs.render(run.doc)
        for hook in self.fire_hooks:
            hook(out)
        return out

    def finish_pending_runs(self, grace_seconds: float | None = None) -> int:
        """Finish the runs whose fire stopped between its claim and its outcome (module docstring, "A fire cut off
        after its claim") and were claimed at least `grace_seconds` ago (default: the settings'); the number
        finished."""
        if grace_seconds is None:
            grace_seconds = self.settings.pending_run_grace_seconds
        now = self.svc.clock.now()
        finished = 0
        for run in self.svc.resources.find(RUN.name, PENDING_ATTR, [PENDING_YES]):
            if not run.doc.get("_pending") or (now - run.created_at).total_seconds() < grace_seconds:
                continue
            try:
                self._finish(run)
                finished += 1
            except Exception:
                log.exception("a cut-off deployment run could not be finished", extra={"run_id": run.id})
        return finished

    def _finish(self, run: Record) -> None:
        dep = self.svc.resources.get(DEPLOYMENT.name, run.workspace_id, str(run.doc["deployment_id"]))
        if dep is None:  # (deployments are archived, never deleted: a store edited by hand)

            def gone(r: Record) -> None:
                if r.doc.get("_pending"):
                    r.doc.pop("_pending", None)
                    r.doc["error"] = {"type": "unknown_error", "message": "the deployment is gone"}
                    r.attrs["has_error"] = "true"
                    r.attrs.pop(PENDING_ATTR, None)

            self.runs.change(run, gone, event=_run_ended)
            return
        trigger = cast(JsonObject, run.doc.get("trigger_context") or {})
        scheduled = trigger.get("scheduled_at") if trigger.get("type") == "schedule" else None
        self._fire(dep, parse_rfc3339(str(scheduled)) if scheduled else None, run_id=run.id, claim=run)

    def _after_scheduled_run(self, ws: str, deployment_id: str, run: Record, error: JsonObject | None) -> None:
        current = self.svc.resources.get(DEPLOYMENT.name, ws, deployment_id)
        if current is None:
            return

        def edit(r: Record) -> None:
            schedule = cast(JsonObject | None, r.doc.get("schedule"))
            if schedule is not None:
                r.doc["schedule"] = {**schedule, "last_run_at": rfc3339(run.created_at)}

        current = mutate(self.svc.resources, current, edit)  # bookkeeping: updated_at stays
        if error is not None and error["type"] in AUTO_PAUSE:
            self._pause(current, {"type": "error", "error": dict(error)})

    def _start_session(self, ws: str, doc: JsonObject, session_id: str) -> str:
        """Create the fire's session; RunFailed with the run error type when it cannot be."""
        agent = cast(JsonObject, doc["agent"])
        agent_rec = self.svc.resources.get("agent", ws, str(agent["id"]))
        if agent_rec is None or agent_rec.archived:
            raise RunFailed("agent_archived_error", f"agent {agent['id']!r} is archived")
        env = self.svc.resources.get("environment", ws, str(doc["environment_id"]))
        if env is None:
            raise RunFailed("environment_not_found_error", f"environment {doc['environment_id']!r} not found")
        try:
            params = self.session_params(doc)
            created = self.sessions.create(ws, params, deployment_id=str(doc["id"]), session_id=session_id)
        except Conflict:
            if self.svc.resources.get("session", ws, session_id) is None:
                raise
            # a fire of the same run created it: a concurrent one, or one cut off before the session's initial
            # events were logged, which are logged now (once: their ids are fixed)
            try:
                self.sessions.complete_create(ws, params, session_id)
            except ApiError as exc:
                raise RunFailed("unknown_error", f"the run's session was left incomplete: {exc}") from exc
            return session_id
        except ApiError as exc:
            kind = _RUN_ERRORS.get(exc.error_code or "", "session_creation_rejected_error")
            raise RunFailed(kind, str(exc)) from exc
        return str(created["id"])

    def get_run(self, ws: str, run_id: str) -> JsonObject:
        return self.runs.get(ws, run_id)

    def list_runs(
        self,
        ws: str,
        query: ListQuery,
        *,
        deployment_id: str | None = None,
        has_error: bool | None = None,
        trigger_type: Literal["schedule", "manual"] | None = None,
    ) -> Page:
        if deployment_id is not None:
            query.equals["deployment_id"] = deployment_id
        if has_error is not None:
            query.equals["has_error"] = "true" if has_error else "false"
        if trigger_type is not None:
            query.equals["trigger_type"] = trigger_type
        page = list_page(self.svc.resources, RUN.name, ws, query)
        return [self.runs.render(r.doc) for r in page.rows], page.next_page

    # -- the embedded scheduler ------------------------------------------------------------------------------

    def run_due(self, now: datetime | None = None) -> int:
        """Fire every tick that is due (its cron instant plus the deployment's jitter is past), oldest first, and
        move each deployment's next tick on; ticks older than the catch-up window are skipped, logged. The number
        of runs fired."""
        now = now or self.svc.clock.now()
        fired = 0
        for rec in self.svc.resources.find(DEPLOYMENT.name, "scheduled", [SCHEDULED]):
            try:
                fired += self._run_due(rec, now)
            except Exception:
                log.exception("deployment schedule failed", extra={"deployment_id": rec.id})
        return fired

    def _run_due(self, rec: Record, now: datetime) -> int:
        fired = 0
        while True:
            rec_now = self.svc.resources.get(DEPLOYMENT.name, rec.workspace_id, rec.id)
            if rec_now is None or rec_now.archived or rec_now.doc["status"] != "active":
                return fired
            rec = rec_now
            schedule = cast(JsonObject | None, rec.doc.get("schedule"))
            tick_text = rec.doc.get("_next_fire_at")
            if schedule is None or not tick_text:
                return fired
            expr, tz = str(schedule["expression"]), str(schedule["timezone"])
            tick = parse_rfc3339(str(tick_text))
            if tick + self._jitter(rec.id, expr, tz, tick) > now:
                return fired
            oldest = now - timedelta(seconds=self.settings.catch_up_seconds)
            if tick < oldest:
                skipped, nxt = 0, tick
                while nxt < oldest:
                    skipped += 1
                    nxt = schedules.next_occurrence(expr, tz, nxt)
                log.warning(
                    "deployment ticks older than the catch-up window skipped",
                    extra={"deployment_id": rec.id, "skipped": skipped, "since": rfc3339(tick)},
                )
                self._advance(rec, tick, nxt)
                continue
            self._fire(rec, tick)  # a fire that raises leaves the tick to the next look (its run id is fixed)
            fired += 1
            self._advance(rec, tick, schedules.next_occurrence(expr, tz, tick))

    def _advance(self, rec: Record, tick: datetime, nxt: datetime) -> None:
        current = self.svc.resources.get(DEPLOYMENT.name, rec.workspace_id, rec.id)
        if current is None:
            return

        def edit(r: Record) -> None:
            if r.doc.get("_next_fire_at") == rfc3339(tick):  # a concurrent update may have set a new schedule
                r.doc["_next_fire_at"] = rfc3339(nxt)

        mutate(self.svc.resources, current, edit)


def _status_event(status: str) -> Callable[[Record, Record], str | None]:
    """A change's webhook event when it moved the deployment to `status` (`deployment.paused`, `.unpaused`)."""

    def event(before: Record, after: Record) -> str | None:
        if before.doc.get("status") == status or after.doc.get("status") != status:
            return None
        return "paused" if status == "paused" else "unpaused"

    return event


def _run_ended(before: Record, after: Record) -> str | None:
    """A run's outcome, once recorded: `deployment_run.succeeded` (its session was created) or `.failed`."""
    if not before.doc.get("_pending") or after.doc.get("_pending"):
        return None
    return "failed" if after.doc.get("error") else "succeeded"
