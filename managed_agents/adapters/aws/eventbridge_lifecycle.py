"""Session lifecycle events on the platform's EventBridge bus (AWS), so operators can route them with rules.

Each appended session event that causes a webhook (services/webhooks.py `outbox_events`: `session.status_idled`,
`session.requires_action`, `session.status_run_started`, `session.status_rescheduled`, `session.status_terminated`,
`session.updated`, the `session.thread_*` events with their `session_thread_id`) is also put on the bus, `source`
`managed-agents`, `detail-type` the webhook event type, `detail` the thin webhook event (`{id, type: "event",
created_at, data: {type, id: <session id>, organization_id, workspace_id?}}`; `workspace_id` when the session record
is at hand).

Published after the append, from the function that appended (an observer of the event store): never in the session
loop's way (a failed put is logged and dropped), and at most once (a crash between the append and the put loses the
bus event; the log keeps the event itself).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.events import StoredEvent
from managed_agents.services.webhooks import ORGANIZATION_ID, outbox_events, webhook_event_id

SOURCE = "managed-agents"
MAX_ENTRIES = 10  # PutEvents takes at most 10 entries per call
log = logging.getLogger("managed_agents.eventbridge")


class EventBridgeLifecyclePublisher:
    def __init__(self, *, bus_name: str, client: Any = None) -> None:
        self.bus_name = bus_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("events")
        return self._client

    def entries(self, session_id: str, stored: Sequence[StoredEvent]) -> list[dict[str, Any]]:
        out = []
        for event in stored:
            for type_, data in outbox_events(event):
                detail = {
                    "id": webhook_event_id(event.id, type_),
                    "type": "event",
                    "created_at": rfc3339(event.processed_at),
                    "data": {"type": type_, "id": session_id, "organization_id": ORGANIZATION_ID, **(data or {})},
                }
                out.append(
                    {
                        "EventBusName": self.bus_name,
                        "Source": SOURCE,
                        "DetailType": type_,
                        "Detail": json.dumps(detail, separators=(",", ":")),
                        "Time": event.processed_at,
                    }
                )
        return out

    def __call__(self, session_id: str, stored: Sequence[StoredEvent]) -> None:
        entries = self.entries(session_id, stored)
        for i in range(0, len(entries), MAX_ENTRIES):
            try:
                result = self.client.put_events(Entries=entries[i : i + MAX_ENTRIES])
                if result.get("FailedEntryCount"):
                    log.warning("lifecycle events not put", extra={"failed": result["FailedEntryCount"]})
            except Exception:
                log.exception("lifecycle events not put", extra={"session_id": session_id})
