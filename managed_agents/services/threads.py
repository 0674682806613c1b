"""Session threads (api-reference §2.3.3): every session has a primary thread; a coordinator's delegation starts child
threads (harness/threads.py).

* The **primary thread** is the session itself: its id is derived from the session id (`primary_thread_id`), its
  status, stats and usage are the session's, and its events are the session's log (`events.list`). Nothing is stored
  for it, so a session that never delegates costs nothing more than before.
* A **child thread** is a `session_thread` record (its session's id as a looked-up attribute) with a log of its own,
  keyed by the thread id in the same event store. Its events (`threads.events.list`, `/threads/{tid}/stream`) are
  that log: the messages it received and sent, its model requests, tool calls and `session.thread_status_*`.
  Its creation, status changes and the messages between it and the primary are cross-posted to the session's log
  (`session.thread_created`, `session.thread_status_*`, `agent.thread_message_sent/received`), which is what the
  session's stream shows of it. [decision: one log per thread rather than one log with a thread column: the
  harness folds and advances a thread exactly as it does a session, and the single-thread path is unchanged.]
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import cast

from managed_agents.domain import prices
from managed_agents.domain.clock import parse_rfc3339, rfc3339
from managed_agents.domain.errors import InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.domain.threads import KIND, primary_thread_id, thread_agent
from managed_agents.ports import ListQuery, Record, read_wire
from managed_agents.services import budgets
from managed_agents.services.keys import Principal
from managed_agents.services.records import mutate
from managed_agents.services.sessions import SessionService, decode_seq_cursor, encode_seq_cursor

STATUSES = ("running", "idle", "rescheduling", "terminated")
MAX_THREADS_LISTED = 1000


def _stats(doc: JsonObject, now: datetime) -> JsonObject:
    if doc.get("archived_at"):  # an archived thread's figures are frozen at its archiving (the SDK's ThreadStats)
        now = parse_rfc3339(str(doc["archived_at"]))
    created = parse_rfc3339(str(doc["created_at"]))
    active = float(cast(float, doc.get("_active_seconds") or 0.0))
    running_since = doc.get("_running_since")
    if running_since:
        active += max(0.0, (now - parse_rfc3339(str(running_since))).total_seconds())
    return {
        "active_seconds": round(active, 3),
        "duration_seconds": round((now - created).total_seconds(), 3),
        # the primary thread's is the session's (the harness caches it: from its first input to its first running);
        # a child thread's is 0 ("child threads start immediately", the SDK's SessionThreadStats)
        "startup_seconds": round(float(cast(float, doc.get("_startup_seconds") or 0.0)), 3),
    }


def _usage(doc: JsonObject, active_seconds: object) -> JsonObject | None:
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        return None
    out: JsonObject = {**usage, "active_seconds": active_seconds}
    if doc.get("_list_cost") is not None:
        out["list_cost"] = {"amount": prices.amount(budgets.consumed(doc)), "currency": prices.CURRENCY}
    return out


def render_primary(session: JsonObject, now: datetime) -> JsonObject:
    stats = _stats(session, now)
    return {
        "type": "session_thread",
        "id": primary_thread_id(str(session["id"])),
        "session_id": session["id"],
        "parent_thread_id": None,
        "agent": thread_agent(cast(JsonObject, session["agent"])),
        "status": session["status"],
        "stats": stats,
        "usage": _usage(session, stats["active_seconds"]),
        "workflow_run_id": None,
        "created_at": session["created_at"],
        "updated_at": session["updated_at"],
        "archived_at": session.get("archived_at"),
    }


def render_child(doc: JsonObject, now: datetime) -> JsonObject:
    stats = _stats(doc, now)
    return {
        "type": "session_thread",
        "id": doc["id"],
        "session_id": doc["session_id"],
        "parent_thread_id": doc["parent_thread_id"],
        "agent": doc["agent"],
        "status": doc["status"],
        "stats": stats,
        "usage": _usage(doc, stats["active_seconds"]),
        "workflow_run_id": None,
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
        "archived_at": doc.get("archived_at"),
    }


def _encode_page(index: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"thread:{index}".encode()).decode().rstrip("=")


def _decode_page(page: str | None) -> int:
    if not page:
        return 0
    try:
        raw = page.removeprefix("page_")
        tag, number = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":")
        index = int(number)
        if not page.startswith("page_") or tag != "thread" or not 0 <= index <= MAX_THREADS_LISTED:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"page: {page[:100]!r} is not a page cursor returned by this endpoint") from exc
    return index


class ThreadService:
    def __init__(self, sessions: SessionService) -> None:
        self.sessions = sessions
        self.svc = sessions.svc
        self.events = sessions.events

    def children(self, ws: str, sid: str) -> list[Record]:
        """The session's child threads, oldest first."""
        query = ListQuery(limit=MAX_THREADS_LISTED, order="asc", include_archived=True, equals={"session_id": sid})
        rows, _ = self.svc.resources.list_records(KIND, ws, query)
        return rows

    def _child(self, ws: str, sid: str, tid: str) -> Record:
        rec = self.svc.resources.get(KIND, ws, tid)
        if rec is None or rec.doc.get("session_id") != sid:
            raise NotFound(f"thread {tid!r} not found in session {sid!r}")
        return rec

    def list_threads(
        self, p: Principal, sid: str, *, statuses: list[str], limit: int, page: str | None
    ) -> tuple[list[JsonObject], str | None]:
        for s in statuses:
            if s not in STATUSES:
                raise InvalidRequest(f"statuses: {s!r} is not one of {', '.join(STATUSES)}")
        session = self.sessions.check_access(p, sid)
        now = self.svc.clock.now()
        threads = [render_primary(session.doc, now)]
        threads += [render_child(r.doc, now) for r in self.children(session.workspace_id, sid)]
        if statuses:
            threads = [t for t in threads if t["status"] in statuses]
        start = _decode_page(page)
        end = start + limit
        return threads[start:end], (_encode_page(end) if end < len(threads) else None)

    def retrieve(self, p: Principal, sid: str, tid: str) -> JsonObject:
        session = self.sessions.check_access(p, sid)
        now = self.svc.clock.now()
        if tid == primary_thread_id(sid):
            return render_primary(session.doc, now)
        return render_child(self._child(session.workspace_id, sid, tid).doc, now)

    def archive(self, p: Principal, sid: str, tid: str) -> JsonObject:
        """A child thread that is not running is archived (once); the primary thread is the session: archive that."""
        session = self.sessions.check_access(p, sid)
        if tid == primary_thread_id(sid):
            raise InvalidRequest(
                f"thread {tid!r} is the session's primary thread: archive the session instead (sessions.archive)"
            )
        rec = self._child(session.workspace_id, sid, tid)
        if rec.doc.get("status") in ("running", "rescheduling"):
            raise InvalidRequest(f"thread {tid!r} is {rec.doc['status']}: interrupt it before archiving it")
        waiting = rec.doc.get("_stop") if rec.doc.get("status") == "idle" else None
        if waiting in ("requires_action", "budget_reached"):  # its delegation is still open: the coordinator waits
            raise InvalidRequest(
                f"thread {tid!r} is idle waiting ({waiting}) and its coordinator waits on its answer: answer or"
                " interrupt it before archiving it"
            )
        if not rec.doc.get("archived_at"):
            stamp = self.svc.clock.now()

            def change(r: Record) -> None:
                r.doc["archived_at"] = rfc3339(stamp)
                r.doc["updated_at"] = rfc3339(stamp)

            rec = mutate(self.svc.resources, rec, change)
        return render_child(rec.doc, self.svc.clock.now())

    def log_id(self, p: Principal, sid: str, tid: str) -> str:
        """Whose log holds the thread's events: the session's for the primary thread, the thread's own otherwise."""
        session = self.sessions.check_access(p, sid)
        if tid == primary_thread_id(sid):
            return sid
        self._child(session.workspace_id, sid, tid)
        return tid

    def list_events(
        self, p: Principal, sid: str, tid: str, *, limit: int, page: str | None
    ) -> tuple[list[str], str | None]:
        log = self.log_id(p, sid, tid)
        after = decode_seq_cursor(page, "asc") or 0
        rows = read_wire(self.events, log, after_seq=after, limit=limit + 1, order="asc")
        more = len(rows) > limit
        rows = rows[:limit]
        return [text for _, text in rows], (encode_seq_cursor(rows[-1][0], "asc") if more and rows else None)
