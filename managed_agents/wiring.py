"""Composition roots: the embedded runtime (SQLite, in-process orchestrator). The AWS one lands with stacks/."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.in_process_orchestrator import InProcessOrchestrator
from managed_agents.adapters.local.notifier import LocalNotifier
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore, SqliteResourceStore
from managed_agents.domain.clock import Clock, SystemClock, rfc3339
from managed_agents.domain.errors import DuplicateEvent
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.harness.turn import HarnessDeps
from managed_agents.ports import EventNotifier, EventStore, ModelClient, Record, ResourceStore
from managed_agents.services.agents import AgentService
from managed_agents.services.common import Services
from managed_agents.services.environments import EnvironmentService
from managed_agents.services.keys import KeyService
from managed_agents.services.records import mutate
from managed_agents.services.sessions import SessionService
from managed_agents.settings import ServerSettings

log = logging.getLogger("managed_agents")
DB_FILE = "managed_agents.db"
ADMIN_KEY_FILE = "admin.key"


@dataclass
class Runtime:
    settings: ServerSettings
    resources: ResourceStore
    events: EventStore
    notifier: EventNotifier
    clock: Clock
    keys: KeyService
    agents: AgentService
    environments: EnvironmentService
    sessions: SessionService
    orchestrator: InProcessOrchestrator | None

    def recover(self) -> int:
        """Wake every session the store says was running when the process last stopped."""
        if self.orchestrator is None:
            return 0
        stuck = self.resources.find("session", "status", ["running", "rescheduling"])
        for rec in stuck:
            self.orchestrator.wake(rec.id)
        return len(stuck)

    def close(self) -> None:
        if self.orchestrator is not None:
            self.orchestrator.close()


def _report_harness_failure(events: EventStore, resources: ResourceStore, clock: Clock):  # type: ignore[no-untyped-def]
    """Every failure inside a session becomes a session.error the user can read."""

    def report(session_id: str, exc: BaseException) -> None:
        message = f"Internal error while running the session ({type(exc).__name__}): {exc}"[:2000]
        error = {"type": "unknown_error", "message": message, "retry_status": {"type": "exhausted"}}
        batch = [
            NewEvent(new_id("event"), "session.error", {"error": error}),
            NewEvent(new_id("event"), "session.status_idle", {"stop_reason": {"type": "retries_exhausted"}}),
        ]
        try:
            events.append(session_id, batch)
            rec = resources.get_by_id("session", session_id)
            if rec is not None:

                def change(r: Record) -> None:
                    r.doc["status"] = "idle"
                    r.attrs["status"] = "idle"
                    r.doc["updated_at"] = rfc3339(clock.now())

                mutate(resources, rec, change)
        except (DuplicateEvent, Exception):
            log.exception("could not record the harness failure", extra={"session_id": session_id})

    return report


def build_local_runtime(
    settings: ServerSettings | None = None,
    *,
    model: ModelClient | None = None,
    clock: Clock | None = None,
    start_orchestrator: bool = True,
) -> Runtime:
    settings = settings or ServerSettings()
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or SystemClock()
    db = SqliteDatabase(data_dir / DB_FILE)
    resources = SqliteResourceStore(db)
    events = SqliteEventStore(db, clock)
    notifier = LocalNotifier()
    model = model or AnthropicMessagesModel(
        api_key=os.environ.get("ANTHROPIC_API_KEY"),
        base_url=os.environ.get("ANTHROPIC_BASE_URL"),
        timeout=settings.model_timeout_seconds,
    )
    orchestrator = None
    if start_orchestrator:
        deps = HarnessDeps(events, resources, model, clock, settings, notifier)
        orchestrator = InProcessOrchestrator(
            deps,
            max_workers=settings.max_concurrent_sessions,
            on_error=_report_harness_failure(events, resources, clock),
        )
    svc = Services(resources, clock, orchestrator)
    return Runtime(
        settings=settings,
        resources=resources,
        events=events,
        notifier=notifier,
        clock=clock,
        keys=KeyService(resources, clock),
        agents=AgentService(svc),
        environments=EnvironmentService(svc),
        sessions=SessionService(svc, events, notifier),
        orchestrator=orchestrator,
    )


def bootstrap_admin_key(rt: Runtime) -> str | None:
    """On an empty data dir: a default workspace and an admin key, written to DATA_DIR/admin.key (0600)."""
    if rt.keys.workspaces():
        return None
    ws = rt.keys.create_workspace("default")
    _, secret = rt.keys.create_key(ws, name="admin")
    path = Path(rt.settings.data_dir) / ADMIN_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)
    return secret
