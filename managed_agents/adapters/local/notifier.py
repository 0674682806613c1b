"""In-process event notifier: stream readers of this process wake as soon as an append lands.

It also carries the stream-only previews (`event_start` / `event_delta`) from the harness thread running a model
request to the streams that opted in with `event_deltas[]`; previews are never logged.

Each session with a stream open here has a tail (`_Tail`): the highest seq this process knows was appended (by
itself, or by another worker through the hub) and the wire JSON of the latest events appended here, encoded once
by the appender (`publish_appended`). A woken stream takes what follows its last event from there
(`logged_after`), on the event loop: no thread, no store read, and one encoding per event whatever the number of
its streams; only a gap (an event appended by another process, or older than the tail) sends it to the store.
That holds only where every append reaches this notifier (`sees_every_append`): the AWS polling notifier, whose
appends happen in other Lambdas, keeps reading the store.

A model response's events are logged together when it ends, so a stream previews at most one `agent.message` at
a time: the official SDK's accumulator folds deltas into a single snapshot, which the next `event_start` would
replace before the first message's final event arrived. A later message of the same response arrives whole.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from managed_agents.domain.events import JsonObject, StoredEvent

TAIL_EVENTS = 64  # events kept per session with open streams (a turn appends ~6; a stream behind reads the store)
TAIL_EVENT_BYTES = 64 * 1024  # a larger event is not kept (its streams read it from the store)
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass
class _Tail:
    """What this process knows of the end of a session's log (guarded by the notifier's lock)."""

    latest: int = 0  # the highest seq appended, here or (through the hub) by another worker
    events: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # seq -> (id, type, wire JSON)


class _LocalSubscription:
    def __init__(self, owner: LocalNotifier, session_id: str, previews: frozenset[str] = frozenset()) -> None:
        self.owner = owner
        self.session_id = session_id
        self.previews = previews
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        self.deleted = False
        self.ended = False
        self._lock = threading.Lock()
        self._queued: list[JsonObject] = []
        self._started: set[str] = set()
        self._open_message: str | None = None
        self.tail: _Tail | None = None  # set by the notifier when it sees every append (module docstring)

    def notify(self, deleted: bool = False) -> None:
        _call_on(self.loop, _set_all, [self], deleted)

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

    def logged_after(self, after_seq: int) -> list[tuple[int, str, str, str]] | None:
        """The events after `after_seq` known to be logged, as (seq, id, type, wire JSON), from memory: [] when no
        later append is known, None when some of them must be read from the store."""
        tail = self.tail
        if tail is None:
            return None
        with self.owner._lock:
            if tail.latest <= after_seq:
                return []
            out: list[tuple[int, str, str, str]] = []
            for seq in range(after_seq + 1, tail.latest + 1):
                known = tail.events.get(seq)
                if known is None:
                    return None
                out.append((seq, *known))
            return out

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
        # The timeout sets the event itself: one timer and the event's future per wait, where asyncio.wait_for made
        # a task besides (under 400 streams the waits were a third of the streams' time on the event loop)
        if not self.event.is_set():
            timer = self.loop.call_later(seconds, self.event.set)
            try:
                await self.event.wait()
            finally:
                timer.cancel()
        self.event.clear()

    def end(self) -> None:
        self.ended = True
        self.event.set()

    def close(self) -> None:
        self.owner._remove(self)


def wake_all(subs: Sequence[_LocalSubscription], deleted: bool = False) -> None:
    """`notify` each subscription, with one call into each event loop for all of them (a session's streams share the
    server's loop): one wake-up of the loop per append, not one per stream."""
    if len(subs) == 1:
        subs[0].notify(deleted)
        return
    by_loop: dict[asyncio.AbstractEventLoop, list[_LocalSubscription]] = {}
    for sub in subs:
        by_loop.setdefault(sub.loop, []).append(sub)
    for loop, group in by_loop.items():
        _call_on(loop, _set_all, group, deleted)


def _call_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
    """Run `fn` on `loop`: at once when called on it (an append by a send made on the loop, api/edge.py
    call_on_loop: no wake-up of the loop through its self-pipe for what it is doing already), else scheduled."""
    if asyncio._get_running_loop() is loop:
        fn(*args)
        return
    with suppress(RuntimeError):  # loop already closed
        loop.call_soon_threadsafe(fn, *args)


def _set_all(subs: list[_LocalSubscription], deleted: bool) -> None:
    for sub in subs:
        sub.deleted = sub.deleted or deleted
        sub.event.set()


class LocalNotifier:
    sees_every_append = True  # every append to the store is published here (module docstring)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[_LocalSubscription]] = {}
        self._tails: dict[str, _Tail] = {}

    def subscribe(self, session_id: str, previews: frozenset[str] = frozenset()) -> _LocalSubscription:
        return self._add(_LocalSubscription(self, session_id, previews))

    def _add(self, sub: _LocalSubscription) -> _LocalSubscription:
        with self._lock:
            self._subs.setdefault(sub.session_id, set()).add(sub)
            if self.sees_every_append:
                sub.tail = self._tails.setdefault(sub.session_id, _Tail())
        return sub

    def _remove(self, sub: _LocalSubscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.session_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.session_id]
                    self._tails.pop(sub.session_id, None)

    def _targets(self, session_id: str) -> list[_LocalSubscription]:
        with self._lock:
            return list(self._subs.get(session_id, ()))

    def publish(self, session_id: str, seq: int) -> None:
        self._announce(session_id, seq)

    def publish_appended(self, session_id: str, stored: Sequence[StoredEvent]) -> None:
        """`publish`, with the events just appended: this process's streams of the session take them from memory
        (encoded here once, only when the session has a stream open here)."""
        if not stored:
            return
        with self._lock:
            tail = self._tails.get(session_id)
        if tail is not None:
            encoded = [(e.seq, e.id, e.type, _encode(e.wire())) for e in stored]
            with self._lock:
                for seq, id_, type_, wire in encoded:
                    if len(wire) <= TAIL_EVENT_BYTES:
                        tail.events[seq] = (id_, type_, wire)
                while len(tail.events) > TAIL_EVENTS:  # the oldest inserted (appends publish almost in seq order)
                    del tail.events[next(iter(tail.events))]
        self._announce(session_id, stored[-1].seq)

    def _announce(self, session_id: str, seq: int) -> None:
        """An append here reached `seq`: wake this process's streams of the session."""
        self._advance(session_id, seq)
        wake_all(self._targets(session_id))

    def _advance(self, session_id: str, seq: int) -> None:
        """The session's log reaches at least `seq` (an append here, or another worker's)."""
        with self._lock:
            tail = self._tails.get(session_id)
            if tail is not None and seq > tail.latest:
                tail.latest = seq

    def publish_deleted(self, session_id: str) -> None:
        wake_all(self._targets(session_id), deleted=True)

    def wants_previews(self, session_id: str) -> frozenset[str]:
        wanted: frozenset[str] = frozenset()
        for sub in self._targets(session_id):
            wanted |= sub.previews
        return wanted

    def publish_preview(self, session_id: str, preview: JsonObject) -> None:
        for sub in self._targets(session_id):
            sub.offer_preview(preview)
