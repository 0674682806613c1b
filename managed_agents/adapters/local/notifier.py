"""In-process event notifier: stream readers of this process wake as soon as an append lands.

It also carries the stream-only previews (`event_start` / `event_delta`) from the harness thread running a model
request to the streams that opted in with `event_deltas[]`; previews are never logged.

A model response's events are logged together when it ends, so a stream previews at most one `agent.message` at
a time: the official SDK's accumulator folds deltas into a single snapshot, which the next `event_start` would
replace before the first message's final event arrived. A later message of the same response arrives whole.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress

from managed_agents.domain.events import JsonObject


class _LocalSubscription:
    def __init__(self, owner: LocalNotifier, session_id: str, previews: frozenset[str] = frozenset()) -> None:
        self.owner = owner
        self.session_id = session_id
        self.previews = previews
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        self.deleted = False
        self._lock = threading.Lock()
        self._queued: list[JsonObject] = []
        self._started: set[str] = set()
        self._open_message: str | None = None

    def notify(self, deleted: bool = False) -> None:
        def _set() -> None:
            self.deleted = self.deleted or deleted
            self.event.set()

        with suppress(RuntimeError):  # loop already closed
            self.loop.call_soon_threadsafe(_set)

    def offer_preview(self, preview: JsonObject) -> None:
        """Queue a preview if the reader wants it: starts of the opted-in types, deltas of starts it was given."""
        with self._lock:
            if preview.get("type") == "event_start":
                target = preview.get("event")
                if not isinstance(target, dict) or target.get("type") not in self.previews:
                    return
                if target.get("type") == "agent.message":
                    if self._open_message is not None:
                        return  # one message preview at a time (see the module docstring)
                    self._open_message = str(target.get("id"))
                self._started.add(str(target.get("id")))
            elif preview.get("event_id") not in self._started:
                return  # the reader opened the stream after this preview started
            self._queued.append(preview)
        self.notify()

    def take_previews(self) -> list[JsonObject]:
        with self._lock:
            taken, self._queued = self._queued, []
        return taken

    def forget_preview(self, event_id: str | None) -> None:
        """The final event was delivered (None: the model request ended): later deltas of it are stale."""
        with self._lock:
            if event_id is None or event_id == self._open_message:
                self._open_message = None
            if event_id is None:
                self._started.clear()
            else:
                self._started.discard(event_id)

    async def wait(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)
        self.event.clear()

    def close(self) -> None:
        self.owner._remove(self)


class LocalNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[_LocalSubscription]] = {}

    def subscribe(self, session_id: str, previews: frozenset[str] = frozenset()) -> _LocalSubscription:
        return self._add(_LocalSubscription(self, session_id, previews))

    def _add(self, sub: _LocalSubscription) -> _LocalSubscription:
        with self._lock:
            self._subs.setdefault(sub.session_id, set()).add(sub)
        return sub

    def _remove(self, sub: _LocalSubscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.session_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.session_id]

    def _targets(self, session_id: str) -> list[_LocalSubscription]:
        with self._lock:
            return list(self._subs.get(session_id, ()))

    def publish(self, session_id: str, seq: int) -> None:
        for sub in self._targets(session_id):
            sub.notify()

    def publish_deleted(self, session_id: str) -> None:
        for sub in self._targets(session_id):
            sub.notify(deleted=True)

    def wants_previews(self, session_id: str) -> frozenset[str]:
        wanted: frozenset[str] = frozenset()
        for sub in self._targets(session_id):
            wanted |= sub.previews
        return wanted

    def publish_preview(self, session_id: str, preview: JsonObject) -> None:
        for sub in self._targets(session_id):
            sub.offer_preview(preview)
