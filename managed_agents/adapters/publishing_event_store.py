"""The runtime's event store: every append tells the notifier, so open streams read it at once.

Each writer used to publish by hand after its append, and one that forgot (the harness failure report) reached
SSE clients only at the stream's next ping, ~15 s later. The composition roots (wiring.py, aws_runtime.py) wrap the
adapter in this once and hand only the wrapped store to the services, the harness and the failure report, so no
call site can append without publishing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from managed_agents.domain.events import NewEvent, Order, StoredEvent, TimeRange
from managed_agents.ports import EventNotifier, EventStore, RecordSync

log = logging.getLogger("managed_agents.events")


class PublishingEventStore:
    def __init__(self, inner: EventStore, notifier: EventNotifier) -> None:
        self.inner = inner
        self.notifier = notifier
        # called with (session id, the events just stored) after each append: reactions that must not slow the
        # appender (they hand long work to a thread) and whose failure must not fail it (logged)
        self.observers: list[Callable[[str, list[StoredEvent]], object]] = []

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        sync: RecordSync | None = None,
        expected_last_seq: int | None = None,
    ) -> list[StoredEvent]:
        stored = self.inner.append(session_id, events, sync=sync, expected_last_seq=expected_last_seq)
        if stored:
            # with the events themselves where the notifier takes them (the embedded one: streams skip the store)
            publish_appended = getattr(self.notifier, "publish_appended", None)
            if publish_appended is not None:
                publish_appended(session_id, stored)
            else:
                self.notifier.publish(session_id, stored[-1].seq)
            for observe in self.observers:
                try:
                    observe(session_id, stored)
                except Exception:
                    log.exception("an event observer failed", extra={"session_id": session_id})
        return stored

    def read(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int = 1000,
        order: Order = "asc",
        types: Sequence[str] | None = None,
        processed: TimeRange | None = None,
    ) -> list[StoredEvent]:
        return self.inner.read(
            session_id,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            order=order,
            types=types,
            processed=processed,
        )

    def get(self, session_id: str, event_id: str) -> StoredEvent | None:
        return self.inner.get(session_id, event_id)

    def last_seq(self, session_id: str) -> int:
        return self.inner.last_seq(session_id)

    def delete_session(self, session_id: str) -> None:
        self.inner.delete_session(session_id)

    def __getattr__(self, name: str) -> Any:
        """The adapter's own extras (SQLite's `read_wire_json` fast path, DynamoDB's table names) pass through."""
        return getattr(self.inner, name)
