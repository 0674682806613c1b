"""In-process event notifier: stream readers of this process wake as soon as an append lands."""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress


class _LocalSubscription:
    def __init__(self, owner: LocalNotifier, session_id: str) -> None:
        self.owner = owner
        self.session_id = session_id
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        self.deleted = False

    def notify(self, deleted: bool = False) -> None:
        def _set() -> None:
            self.deleted = self.deleted or deleted
            self.event.set()

        with suppress(RuntimeError):  # loop already closed
            self.loop.call_soon_threadsafe(_set)

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

    def subscribe(self, session_id: str) -> _LocalSubscription:
        sub = _LocalSubscription(self, session_id)
        with self._lock:
            self._subs.setdefault(session_id, set()).add(sub)
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
