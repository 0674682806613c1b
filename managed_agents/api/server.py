"""How the embedded server (and the tests' loopback servers) run the ASGI app on uvicorn, with the connection-level
limits the app itself cannot enforce: a cap on a request's head (request line and headers) and a deadline for it.

uvicorn reads a request's head without a time limit: a client that connects and sends a few header bytes (or
nothing) holds its connection open for good, and a few hundred of them hold the server's descriptors. Every
connection here must deliver a complete head within `header_timeout_seconds` of connecting (or, on a kept-alive
connection, of the next request's first byte), else it is closed. The body's own deadline is the app's
(`api/edge.py`), because the app is where the body is read. On AWS, API Gateway receives whole requests before the
API Lambda sees them, so `functions/api/run.sh` needs neither.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from managed_agents.adapters.local.request_priority import PRIORITY
from managed_agents.api.sse import STREAM_END
from managed_agents.domain.ids import new_id
from managed_agents.settings import ServerSettings


class EdgeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head and a readable answer to an oversized one."""

    header_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._counted: object = None  # the request cycle last counted into PRIORITY

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.cycle is not None:  # a request whose client left before its response started
            answered(self.cycle.scope)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete  # between requests: this is a new head
        if waiting:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._arm()
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:  # the head is in: the app takes over
            self._disarm()
            self._head_bytes = 0
        cycle = self.cycle
        # a request whole (its body too: an upload arriving slowly holds nothing back) and not answered yet: background
        # work waits until its response starts (adapters/local/request_priority.py)
        if cycle is not None and cycle is not self._counted and not cycle.more_body and not cycle.response_started:
            self._counted = cycle
            scope: dict[str, Any] = cycle.scope  # type: ignore[assignment]
            if PRIORITY.counts(scope["path"]):
                PRIORITY.enter()
                scope[_COUNTED] = True

    def shutdown(self) -> None:
        """A graceful shutdown begins (uvicorn): an event stream in flight is told to end (api/sse.py STREAM_END),
        so it finishes its response cleanly and the connection closes, instead of holding the shutdown until
        `timeout_graceful_shutdown` cancels it mid-chunk. Any other response in flight finishes as it would."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            end: Callable[[], None] | None = cycle.scope.get(STREAM_END)  # type: ignore[assignment]
            if end is not None:
                end()
        super().shutdown()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_bytes = 0  # the keep-alive timeout runs until the next request's first byte re-arms the deadline

    def send_400_response(self, msg: str) -> None:
        """h11 refused the head: malformed, or larger than the cap. Answer in the API's error envelope."""
        too_large = self._head_bytes > self.max_header_bytes
        status = 431 if too_large else 400
        message = (
            f"the request line and headers exceed {self.max_header_bytes} bytes"
            if too_large
            else "invalid HTTP request: the request line or headers could not be parsed"
        )
        req_id = new_id("request")
        body = json.dumps(
            {"type": "error", "error": {"type": "invalid_request_error", "message": message}, "request_id": req_id}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"request-id", req_id.encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


_COUNTED = "managed_agents.priority"  # scope key: the request is counted in PRIORITY until its response starts


def answered(scope: Any) -> None:
    """The request's response started (or never will): it no longer holds background work back. Once per request."""
    if scope.pop(_COUNTED, False):
        PRIORITY.leave()


def prioritized(app: Any) -> Any:
    """The app, with each request counted in PRIORITY (adapters/local/request_priority.py, from the moment the whole
    request is in: EdgeH11Protocol) until its response starts: an event stream counts while its handler checks it,
    not while it streams."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # (a request may be counted after its handler started: when its body is in)
            await app(scope, receive, send)
            return

        async def send_started(message: Any) -> None:
            if message["type"] == "http.response.start":
                answered(scope)
            await send(message)

        try:
            await app(scope, receive, send_started)
        finally:
            answered(scope)

    return wrapper


GC_THRESHOLDS = (10_000, 10, 10)  # gc.set_threshold of a server process (freeze_heap); CPython's default: 700, 10, 10


def freeze_heap() -> None:
    """Put every object alive now out of the garbage collector's sight (`gc.freeze`), once a server process has
    built what it keeps (its modules, runtime and app: ~250,000 objects).

    A full collection scans every tracked object while the process holds the GIL: with the server's own heap that
    paused the event loop and every thread for 100-500 ms whenever the burst of a few hundred requests set one off
    (bench/mixed_load.py, `gc_max`), i.e. every request then in flight took that much longer. Frozen objects are
    never scanned (nor freed: what startup built lives as long as the process anyway), so a collection costs what
    requests and turns allocated since. Called before forking workers it also keeps the shared pages shared.

    The youngest generation is also collected after 10,000 net allocations instead of 700 (GC_THRESHOLDS): a burst's
    requests, streams and turns allocate far more than that per request, and with the heap frozen the collector's
    "long-lived objects grew by 25%" rule (measured against the few unfrozen ones) let every 100th young collection
    become a full one, scanning every stream, connection and cached session state: 100-900 ms pauses under
    bench/mixed_load.py. Ten times fewer young collections make few full ones; garbage cycles live a little longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def uvicorn_config(app: Any, *, host: str, port: int, settings: ServerSettings, **kwargs: Any) -> uvicorn.Config:
    """The one uvicorn configuration of `managed-agents serve` and the loopback servers of tests and benches."""
    protocol = type(
        "EdgeH11Protocol",
        (EdgeH11Protocol,),
        {"header_timeout": settings.header_timeout_seconds, "max_header_bytes": settings.max_header_bytes},
    )
    options: dict[str, Any] = {
        # asyncio's loop, not uvicorn's "auto" (uvloop when importable, e.g. beside uvicorn[standard]): what the
        # server is tested on wherever it runs. uvloop measured no gain here: server CPU per turn 6.4-7.6 ms against
        # 5.6-8.0 on asyncio (bench/concurrent_sessions.py, the same window), the cost being Python code, not the loop
        "loop": "asyncio",
        "log_level": "warning",
        "timeout_graceful_shutdown": 2,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        **kwargs,
    }
    return uvicorn.Config(prioritized(app), host=host, port=port, http=protocol, **options)
