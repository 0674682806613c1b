"""Failures of a session's run that the harness itself could not turn into events (a crash, a failed state machine).

Every failure inside a session becomes a `session.error` the user can read, followed by `session.status_idle`
(`retries_exhausted`), exactly as a model error that ran out of retries ends; a model request the failure cut short
is closed first (`span.model_request_end`, `is_error`), so no span is left open and the next turn does not take the
dead request for one to re-run. The embedded orchestrator calls this
from its `on_error` hook; the "session run" state machine calls it from its ReportFailure task
(`functions.model_turn.handler.report_failure`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from managed_agents.domain.clock import Clock, rfc3339
from managed_agents.domain.errors import DuplicateEvent
from managed_agents.domain.events import JsonObject, NewEvent
from managed_agents.domain.ids import deterministic_event_id
from managed_agents.domain.session_state import SessionState, fold
from managed_agents.domain.threads import KIND as THREAD_KIND
from managed_agents.harness import threads
from managed_agents.harness.event_batches import Entry, request_end, session_error
from managed_agents.harness.threads import run_record
from managed_agents.ports import EventStore, Record, ResourceStore, iter_all
from managed_agents.services.records import mutate

log = logging.getLogger("managed_agents.harness")
MESSAGE_LIMIT = 2000


def failure_message(kind: str, detail: str) -> str:
    return f"Internal error while running the session ({kind}): {detail}"[:MESSAGE_LIMIT]


def report_session_failure(
    events: EventStore,
    resources: ResourceStore,
    clock: Clock,
    session_id: str,
    message: str,
    wake: Callable[[str], object] | None = None,
) -> bool:
    """Append [span.model_request_end +] session.error + session.status_idle and mark the session idle; False when
    nothing was appended.

    The event ids derive from the log position, so a report retried before anything else was logged appends
    nothing twice. A deleted or unknown session is left alone.
    """
    rec = run_record(resources, session_id)
    if rec is None or rec.doc.get("_deleted"):
        return False
    state = fold(iter_all(events, session_id))  # a rare path: the whole log, to find a request left open
    key = f"run-failed@{state.last_seq}"
    entries: list[Entry] = []
    if state.inflight is not None:
        entries.append(request_end(state.inflight.id, None, is_error=True))
    entries.append(session_error("unknown_error", message[:MESSAGE_LIMIT], "exhausted"))
    entries.append(("session.status_idle", {"stop_reason": {"type": "retries_exhausted"}}, None))
    thread = rec.kind == THREAD_KIND
    if thread:
        entries = threads.as_thread_events(rec.id, _agent_name(rec), entries)
    batch = [
        NewEvent(deterministic_event_id(session_id, key, i), type_, payload, internal)
        for i, (type_, payload, internal) in enumerate(entries)
    ]
    try:
        stored = events.append(session_id, batch)
    except DuplicateEvent:
        return False

    def change(r: Record) -> None:
        r.doc["status"] = "idle"
        r.attrs["status"] = "idle"
        r.doc["_stop"] = "retries_exhausted"
        r.doc["updated_at"] = rfc3339(clock.now())

    rec = mutate(resources, rec, change)
    if thread:
        _answer_for_thread(events, rec, fold(stored, state), wake)
    return True


def _agent_name(thread: Record) -> object:
    return cast(JsonObject, thread.doc.get("_run_agent") or thread.doc["agent"]).get("name")


def _answer_for_thread(
    events: EventStore, thread: Record, st: SessionState, wake: Callable[[str], object] | None
) -> None:
    """A child thread's failure also reaches its session, as the harness's own stop would: the idle status copied to
    the session's log, the error answer to the coordinator's call (threads.deliver), and the session woken to read
    it (else the coordinator waits on the child until a restart)."""
    sid = str(thread.doc["session_id"])
    threads.copy_to_session(events, sid, thread.id, st)

    def append_own(key: str, entries: list[Entry]) -> None:
        own = [NewEvent(deterministic_event_id(thread.id, key, i), t, p, x) for i, (t, p, x) in enumerate(entries)]
        try:
            events.append(thread.id, own)
        except DuplicateEvent:
            pass

    if threads.deliver(events, thread, st, append_own) and wake is not None:
        wake(sid)


def harness_failure_reporter(
    events: EventStore, resources: ResourceStore, clock: Clock, wake: Callable[[str], object] | None = None
) -> Callable[[str, BaseException], None]:
    """The embedded orchestrator's `on_error`: report the exception; a failed report is logged, never raised.
    `wake`: the orchestrator's (a failed child thread's session is woken to read its error answer)."""

    def report(session_id: str, exc: BaseException) -> None:
        try:
            message = failure_message(type(exc).__name__, str(exc))
            report_session_failure(events, resources, clock, session_id, message, wake)
        except Exception:
            log.exception("could not record the harness failure", extra={"session_id": session_id})

    return report
