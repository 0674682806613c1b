"""Which webhook events a session event causes (services/webhooks.py `outbox_events`): the thread events come from
the session's copy of a child thread's creation and status changes, naming the thread, never from the child's own
log; a session status event cross-posted from a child causes no session.status_* webhook."""

from __future__ import annotations

from datetime import UTC, datetime

from managed_agents.domain.events import JsonObject, StoredEvent
from managed_agents.services.webhooks import OUTBOX_SOURCE_TYPES, outbox_events

T = datetime(2026, 12, 7, tzinfo=UTC)


def _event(log: str, type_: str, payload: JsonObject) -> StoredEvent:
    return StoredEvent(log, 1, "sevt_1", type_, T, payload)


def test_a_child_threads_events_on_its_session_log_name_the_thread() -> None:
    named = {"session_thread_id": "sthr_child", "agent_name": "helper"}
    assert outbox_events(_event("sesn_1", "session.thread_created", named)) == [
        ("session.thread_created", {"session_thread_id": "sthr_child"})
    ]
    assert outbox_events(_event("sesn_1", "session.thread_status_idle", named)) == [
        ("session.thread_idled", {"session_thread_id": "sthr_child"})
    ]
    assert outbox_events(_event("sesn_1", "session.thread_status_terminated", named)) == [
        ("session.thread_terminated", {"session_thread_id": "sthr_child"})
    ]
    # (running and rescheduled threads have no webhook event in the reference)
    assert outbox_events(_event("sesn_1", "session.thread_status_running", named)) == []


def test_the_copy_in_the_child_threads_own_log_causes_nothing() -> None:
    named = {"session_thread_id": "sthr_child", "agent_name": "helper"}
    assert outbox_events(_event("sthr_child", "session.thread_status_idle", named)) == []


def test_session_status_events_are_unchanged() -> None:
    idle = {"stop_reason": {"type": "requires_action"}}
    assert outbox_events(_event("sesn_1", "session.status_idle", idle)) == [
        ("session.status_idled", None),
        ("session.requires_action", None),
    ]
    assert outbox_events(_event("sesn_1", "session.status_idle", {**idle, "session_thread_id": "sthr_x"})) == []
    assert {"session.thread_created", "session.thread_status_idle"} <= set(OUTBOX_SOURCE_TYPES)
