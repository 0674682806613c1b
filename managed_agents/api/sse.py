"""Server-sent events exactly as the official SDK parses them (api-reference §5).

Every message has an `event:` line (the SDK drops messages without one), `ping` keep-alives, failures as
`event: error` with the error envelope, never a `[DONE]` sentinel. The stream carries live events; history is
`events.list` (the SDK's reconnect recipe re-lists and dedupes by id). `Last-Event-ID` resumes for other
clients. The stream ends cleanly after `sse_max_seconds` (API Gateway cuts streams at 15 minutes).

A stream re-checks its credential about once per ping interval (`recheck`, one key lookup): a key revoked, or a
work item stopped, while its stream is open ends the stream with an `event: error` (authentication_error).

A graceful shutdown of the server ends its open streams at once, cleanly (STREAM_END), so that a restart neither
waits on them nor cuts them mid-chunk.

A session deleted while its stream is open ends the stream with `session.deleted`: the notifier says so where it can
(embedded), else a record read finds it, at most once per `DELETED_CHECK_SECONDS` (AWS: a stream re-reads the log's
tail every 0.5 s, and a record read after each empty one was half of what an open stream reads; once per 2 s, still
a fifth; once per 10 s, a deleted session's open streams end within 10 s of the delete).

A Fargate sandbox's worker stream may ask (`x-managed-agents-inputs: announce`, work tokens only) to be told what the
session's file resources are as of each `agent.tool_use` it receives: the frame of each tool use carries an SSE
comment line, `: managed-agents-inputs <etag>` (the ETag of `/v1/sessions/{id}/inputs`, read after the
event was), which SSE clients ignore. The sandbox then skips the request before a tool call when nothing was added
(sandbox/entrypoint.py InputsSync): one record read on the stream instead of one API request per tool call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

from anyio import to_thread

from managed_agents.domain.errors import ApiError
from managed_agents.domain.events import JsonObject
from managed_agents.ports import EventStore, Subscription, read_wire_tail

log = logging.getLogger("managed_agents.sse")
PING = b"event: ping\ndata: {}\n\n"
CLOSING_TYPES = frozenset({"session.deleted", "session.status_terminated"})
PREVIEWED_TYPES = frozenset({"agent.message", "agent.thinking"})
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# How often a stream whose log brings nothing new looks at the session's record for a deletion its notifier cannot
# tell (AWS); a stream answered from memory (embedded) looks once per ping interval.
DELETED_CHECK_SECONDS = 10.0
INPUTS_HEADER = "x-managed-agents-inputs"  # = "announce": the comment below on a work token's stream
INPUTS_COMMENT = ": managed-agents-inputs "
# The ASGI scope key under which a stream's handler leaves its subscription's `end`: the server's protocol calls it
# when a graceful shutdown begins (api/server.py EdgeH11Protocol.shutdown), and the stream ends at once, cleanly, as
# at `sse_max_seconds` (its client reconnects with Last-Event-ID, or re-lists, as after any end of a stream).
STREAM_END = "managed_agents.stream_end"


class _Logged(NamedTuple):
    seq: int
    id: str
    type: str
    wire: str  # the event's wire JSON


_TYPE_MARK = '","type":"'


def _read(store: EventStore, session_id: str, after_seq: int, page: int) -> list[_Logged]:
    """The next events as the log's own wire JSON (`read_wire`: SQLite splices its stored text), neither decoded
    nor encoded again; id and type are cut from the text's head, `{"id":"<id>","type":"<type>",` (ids and types
    never hold a quote). A tail read (`read_wire_tail`): one that lags is caught up by the next poll."""
    out: list[_Logged] = []
    for seq, text in read_wire_tail(store, session_id, after_seq=after_seq, limit=page):
        id_, _, rest = text[7:].partition(_TYPE_MARK)
        out.append(_Logged(seq, id_, rest[: rest.index('"')], text))
    return out


def frame(event: JsonObject) -> bytes:
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {_encode(event)}\n\n".encode()


def _logged_frame(ev: _Logged) -> bytes:
    return f"id: {ev.id}\nevent: {ev.type}\ndata: {ev.wire}\n\n".encode()


def preview_frame(preview: JsonObject) -> bytes:
    """`event_start` / `event_delta`: stream-only, no `id:` line (they are not log events)."""
    return f"event: {preview['type']}\ndata: {_encode(preview)}\n\n".encode()


def _preview_target(preview: JsonObject) -> str:
    target = preview.get("event")
    return str(target.get("id") if isinstance(target, dict) else preview.get("event_id"))


def error_frame(body: dict[str, Any]) -> bytes:
    return f"event: error\ndata: {_encode(body)}\n\n".encode()


async def event_stream(
    *,
    store: EventStore,
    session_id: str,
    subscription: Subscription,
    after_seq: int,
    ping_seconds: float,
    max_seconds: float,
    deleted_event: Callable[[], JsonObject],
    still_exists: Callable[[], Awaitable[bool]],
    error_body: Callable[[Exception], dict[str, Any]],
    recheck: Callable[[], Awaitable[None]] | None = None,
    page: int = 500,
    yield_to: Callable[[], Awaitable[None]] | None = None,
    inputs_etag: Callable[[], Awaitable[str | None]] | None = None,
) -> AsyncIterator[bytes]:
    """`yield_to`: awaited once the stream is woken, before it reads and writes (the embedded server's requests
    first: adapters/local/request_priority.py). `inputs_etag`: the session's file resources as an ETag (None: not
    known), announced in each `agent.tool_use` frame (read once per write, after its events were)."""
    started = last_sent = last_check = last_found = time.monotonic()
    # the embedded notifier's tail (adapters/local/notifier.py): events appended in this process, from memory
    from_memory = getattr(subscription, "logged_after", None)
    read_store = True  # the first pass reads the store (a Last-Event-ID backlog, appends before the subscription)
    try:
        while True:
            if subscription.ended or (max_seconds and time.monotonic() - started >= max_seconds):
                return
            if recheck is not None and time.monotonic() - last_check >= ping_seconds:
                await recheck()  # raises ApiError when the credential no longer holds
                last_check = time.monotonic()
            known = None if read_store or from_memory is None else from_memory(after_seq)
            if known is None:
                events = await to_thread.run_sync(_read, store, session_id, after_seq, page)
            else:
                events = [_Logged(*ev) for ev in known]
            read_store = False
            # Previews taken after the read: one whose final event was just read is stale (the final carries the
            # full content), the others belong to a message still streaming and go after the events read. (A final
            # delivered in an earlier pass needs no check: the subscription drops its previews once it is forgotten,
            # and none is made after it is logged.)
            previews = subscription.take_previews()
            finals = {ev.id for ev in events if ev.type in PREVIEWED_TYPES}
            if events or previews:  # one write for everything read: a turn's events reach the client in one chunk
                frames: list[bytes] = []
                closing = False
                inputs: bytes | None = None  # read once per write, at its first tool use
                for ev in events:
                    if inputs_etag is not None and ev.type == "agent.tool_use":
                        if inputs is None:
                            etag = await inputs_etag()
                            inputs = f"{INPUTS_COMMENT}{etag}\n".encode() if etag is not None else b""
                        frames.append(inputs)  # a comment line of the tool use's own frame
                    frames.append(_logged_frame(ev))
                    after_seq = ev.seq
                    if ev.type in PREVIEWED_TYPES:
                        subscription.forget_preview(ev.id)
                    elif ev.type == "span.model_request_end":
                        subscription.forget_preview(None)
                    if ev.type in CLOSING_TYPES:
                        closing = True
                        break
                if not closing:
                    frames.extend(preview_frame(p) for p in previews if _preview_target(p) not in finals)
                yield b"".join(frames)
                if closing:
                    return
                last_sent = time.monotonic()
                if len(events) == page:
                    read_store = True
                    continue
            if subscription.deleted:
                yield frame(deleted_event())
                return
            # A session deleted without its notice reaching this process (a lost hub line, or another Lambda on
            # AWS): found by a record read after a pass that brought nothing, at most once per DELETED_CHECK_SECONDS
            # after a store read, or once per ping interval when the pass was answered from memory (an idle stream).
            every = DELETED_CHECK_SECONDS if known is None else ping_seconds
            if not events and time.monotonic() - last_found >= every:
                if not await still_exists():
                    yield frame(deleted_event())
                    return
                last_found = time.monotonic()
            now = time.monotonic()
            if now - last_sent >= ping_seconds:
                yield PING
                last_sent = now
            wait = ping_seconds - (now - last_sent)
            if max_seconds:
                wait = min(wait, max_seconds - (now - started))
            await subscription.wait(max(0.0, wait))
            if subscription.ended:
                return
            if yield_to is not None:
                await yield_to()
    except ApiError as exc:  # the stream is already 200: report in-band (a revoked key, a deleted session)
        yield error_frame(error_body(exc))
    except Exception as exc:
        log.exception("event stream failed", extra={"session_id": session_id})
        yield error_frame(error_body(exc))
    finally:
        subscription.close()
