"""A scripted fake of the Anthropic Messages API, served over HTTP.

Point the official SDK at it (``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT``) and every call to
``POST /v1/messages`` consumes the next eligible *step* of a script instead of calling a model.
Tests and benchmarks use it to script model turns; from the command line it lets a newcomer watch a
full session without an API key::

    python -m managed_agents.testing.scripted_model --port 8788 --script turns.json --latency-ms 100

Script steps (dicts, or a JSON file holding a list of them, or ``{"steps": [...]}``):

* reply: ``{"content": [blocks], "stop_reason": ..., "usage": {...}, "delay_ms": N, "chunk_delay_ms": N}``
  where a block is ``{"type": "text", "text": ...}``, ``{"type": "thinking", "thinking": ..., "signature": ...}``,
  ``{"type": "redacted_thinking", "data": ...}`` or ``{"type": "tool_use", "name": ..., "input": {...}, "id": ...}``.
  ``stop_reason`` defaults to ``"tool_use"`` when a tool_use block is present, else ``"end_turn"``.
  A bare string is a reply with one text block.
* error: ``{"error": {"status": 429, "type": "rate_limit_error", "message": ...}, "delay_ms": N}`` (HTTP error).
* mid-stream error: ``{"stream_error": {"type": "overloaded_error", "message": ...}, "after_text": "partial"}``.
* hang: ``{"hang_ms": N}`` sleeps N ms before sending anything, then answers 504 ``timeout_error``; combined
  with ``content``/``error``/``stream_error`` it delays that answer instead.
* dropped reply: a reply with ``"drop_after_bytes": N`` sends the first N bytes of its response body (status and
  headers go first), then closes the connection mid-body, as a network failure or a crashed proxy does (the SDK
  raises a connection error while streaming). ``"end_after_bytes": N`` instead ends the body cleanly after N bytes,
  as a proxy that cuts a stream short does (the stream ends without ``message_stop``). The full SSE stream of a
  one-text-block reply is about 800 bytes plus 140 per 24 characters of text; ``message_start`` alone is about 300.

Any step may carry ``"match": "substring"``: it is then only eligible when the text of the last user message
(text blocks and tool_result text) contains the substring. Each request takes the first unconsumed eligible
step. When none is eligible, ``fallback="echo"`` replies ``"echo: <last user text>"`` and ``fallback="error"``
answers HTTP 500 ``api_error`` saying the script is exhausted. Keys starting with ``_`` (and ``comment``) are
ignored; any other unknown key is rejected when the step is pushed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = [
    "ScriptState",
    "ScriptedModelServer",
    "build_app",
    "estimate_input_tokens",
    "last_user_text",
    "load_script",
    "main",
    "serve",
]

logger = logging.getLogger(__name__)

Fallback = Literal["echo", "error"]
StepInput = str | Mapping[str, Any]

DEFAULT_MODEL = "claude-scripted"
STOP_REASONS = frozenset(
    {"end_turn", "tool_use", "max_tokens", "refusal", "stop_sequence", "pause_turn", "model_context_window_exceeded"}
)
STATUS_FOR_ERROR_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
ERROR_TYPE_FOR_STATUS: dict[int, str] = {status: kind for kind, status in STATUS_FOR_ERROR_TYPE.items()}

_STEP_KEYS = frozenset(
    {
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
        "delay_ms",
        "chunk_delay_ms",
        "match",
        "error",
        "stream_error",
        "after_text",
        "hang_ms",
        "drop_after_bytes",
        "end_after_bytes",
        "comment",
    }
)
_CUT_KEYS = ("drop_after_bytes", "end_after_bytes")
_BLOCK_TYPES = frozenset({"text", "thinking", "redacted_thinking", "tool_use"})
_CHUNK_CHARS = 24  # size of one text/thinking/json delta
_CACHE_LOOKBACK = 20  # the API checks ~20 block boundaries before each breakpoint for a hit
_CACHE_ENTRIES = 4096


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _new_signature() -> str:
    return base64.b64encode(os.urandom(48)).decode("ascii")


# --------------------------------------------------------------------------------------------------------------------
# Script steps
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    index: int  # position in push order, for logs and `assert_complete`
    kind: Literal["reply", "error", "stream_error", "hang"]
    data: dict[str, Any]
    match: str | None

    def summary(self) -> str:
        where = f" match={self.match!r}" if self.match is not None else ""
        return f"#{self.index} {self.kind}{where}"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"invalid script step: {message}")


def _is_ms(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _normalize_block(block: object) -> dict[str, Any]:
    _require(isinstance(block, Mapping), f"content block must be an object, got {block!r}")
    assert isinstance(block, Mapping)
    out = dict(block)
    kind = out.get("type")
    _require(kind in _BLOCK_TYPES, f"content block type must be one of {sorted(_BLOCK_TYPES)}, got {kind!r}")
    if kind == "text":
        _require(isinstance(out.get("text"), str), "text block needs a string 'text'")
    elif kind == "thinking":
        _require(isinstance(out.get("thinking"), str), "thinking block needs a string 'thinking'")
        _require(isinstance(out.get("signature", ""), str), "thinking 'signature' must be a string")
    elif kind == "redacted_thinking":
        _require(isinstance(out.get("data"), str), "redacted_thinking block needs a string 'data'")
    else:
        _require(isinstance(out.get("name"), str), "tool_use block needs a string 'name'")
        out.setdefault("input", {})
        _require(isinstance(out["input"], Mapping), "tool_use 'input' must be an object")
        _require(isinstance(out.get("id", ""), str), "tool_use 'id' must be a string")
    return out


def _normalize_error(error: object, key: str) -> dict[str, Any]:
    _require(isinstance(error, Mapping), f"'{key}' must be an object")
    assert isinstance(error, Mapping)
    out = dict(error)
    status, kind = out.get("status"), out.get("type")
    _require(status is None or (isinstance(status, int) and 400 <= status <= 599), f"bad {key} status {status!r}")
    _require(kind is None or isinstance(kind, str), f"bad {key} type {kind!r}")
    if status is None:
        status = STATUS_FOR_ERROR_TYPE.get(kind or "", 500)
    if kind is None:
        kind = ERROR_TYPE_FOR_STATUS.get(status, "invalid_request_error" if status < 500 else "api_error")
    out["status"], out["type"] = status, kind
    out["message"] = str(out.get("message") or f"scripted {kind}")
    return out


def _normalize_step(raw: StepInput, index: int) -> _Step:
    if isinstance(raw, str):
        return _Step(index, "reply", {"content": [{"type": "text", "text": raw}]}, None)
    _require(isinstance(raw, Mapping), f"a step is a string or an object, got {type(raw).__name__}")
    data = dict(raw)
    unknown = sorted(k for k in data if k not in _STEP_KEYS and not k.startswith("_"))
    _require(not unknown, f"unknown keys {unknown}")
    match = data.get("match")
    _require(match is None or isinstance(match, str), "'match' must be a string")
    for key in ("delay_ms", "chunk_delay_ms", "hang_ms"):
        _require(key not in data or _is_ms(data[key]), f"'{key}' must be a non-negative number")
    kinds = [k for k in ("content", "error", "stream_error") if k in data]
    _require(len(kinds) <= 1, f"a step has at most one of content/error/stream_error, got {kinds}")
    cuts = [k for k in _CUT_KEYS if k in data]
    _require(len(cuts) <= 1, f"a step has at most one of {'/'.join(_CUT_KEYS)}, got {cuts}")
    for key in cuts:
        value = data[key]
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"'{key}' must be an int >= 0")
        _require("content" in data, f"'{key}' cuts a reply short: it needs 'content'")
    if not kinds:
        _require("hang_ms" in data, "a step needs 'content', 'error', 'stream_error' or 'hang_ms'")
        return _Step(index, "hang", data, match)
    if "content" in data:
        content = data["content"]
        _require(isinstance(content, list), "'content' must be a list of blocks")
        data["content"] = [_normalize_block(b) for b in content]
        stop = data.get("stop_reason")
        _require(stop is None or stop in STOP_REASONS, f"'stop_reason' must be one of {sorted(STOP_REASONS)}")
        _require(isinstance(data.get("usage", {}), Mapping), "'usage' must be an object")
        return _Step(index, "reply", data, match)
    if "error" in data:
        data["error"] = _normalize_error(data["error"], "error")
        return _Step(index, "error", data, match)
    data["stream_error"] = _normalize_error(data["stream_error"], "stream_error")
    _require(isinstance(data.get("after_text", ""), str), "'after_text' must be a string")
    return _Step(index, "stream_error", data, match)


class ScriptError(ValueError):
    """The scripted model cannot serve: its script file is unreadable or invalid, or its address is taken."""


def load_script(path: str | os.PathLike[str]) -> list[StepInput]:
    """Read script steps from a JSON file: a list of steps, or an object with a ``steps`` list."""
    loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(loaded, Mapping):
        loaded = loaded.get("steps")
    if not isinstance(loaded, list):
        raise ValueError(f"{path}: a script file holds a JSON list of steps or an object with a 'steps' list")
    return loaded


# --------------------------------------------------------------------------------------------------------------------
# Request analysis: last user text, token estimates, prompt-cache simulation
# --------------------------------------------------------------------------------------------------------------------


def _block_text(block: object) -> list[str]:
    if isinstance(block, str):
        return [block]
    if not isinstance(block, Mapping):
        return []
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return [block["text"]]
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return [content]
        if isinstance(content, list):
            return [t for sub in content for t in _block_text(sub)]
    return []


def last_user_text(messages: object) -> str:
    """The text of the last user message: its text blocks and tool_result text, joined by newlines."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            blocks = content if isinstance(content, list) else [content]
            return "\n".join(t for b in blocks for t in _block_text(b))
    return ""


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """``len(JSON of system+messages+tools) / 4``, at least 1."""
    payload = {"system": body.get("system"), "messages": body.get("messages"), "tools": body.get("tools")}
    return max(1, len(_dumps(payload)) // 4)


def _without_cache_control(value: object) -> object:
    if isinstance(value, Mapping) and "cache_control" in value:
        return {k: v for k, v in value.items() if k != "cache_control"}
    return value


def _cache_segments(body: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    """The request flattened in cache-prefix order (tools, system, message blocks) and the marker positions."""
    segments: list[str] = []
    markers: list[int] = []

    def add(item: object, wrapper: Mapping[str, Any] | None = None) -> None:
        if isinstance(item, Mapping) and item.get("cache_control"):
            markers.append(len(segments))
        stripped = _without_cache_control(item)
        segments.append(_dumps(stripped if wrapper is None else {**wrapper, "block": stripped}))

    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            add(tool, {"tool": True})
    system = body.get("system")
    if isinstance(system, list):
        for block in system:
            add(block, {"system": True})
    elif system is not None:
        add(system, {"system": True})
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, Mapping):
                continue
            role = message.get("role")
            content = message.get("content")
            for block in content if isinstance(content, list) else [content]:
                add(block, {"role": role})
    if body.get("cache_control") and segments:
        markers.append(len(segments) - 1)
    return segments, markers


class _PromptCache:
    """An LRU of prefix hashes standing in for the API's prompt cache."""

    def __init__(self, max_entries: int = _CACHE_ENTRIES) -> None:
        self._entries: OrderedDict[str, None] = OrderedDict()
        self._max = max_entries

    def usage(self, body: Mapping[str, Any], total_tokens: int) -> tuple[int, int, int]:
        """Return ``(input_tokens, cache_creation_input_tokens, cache_read_input_tokens)`` for a request."""
        segments, markers = _cache_segments(body)
        if not markers:
            return total_tokens, 0, 0
        last = max(markers)
        candidates = {j for m in markers for j in range(max(0, m - _CACHE_LOOKBACK), m + 1)}
        digest = hashlib.sha256()
        hashes: list[str] = []
        chars: list[int] = []
        running = 0
        for seg in segments[: last + 1]:
            digest.update(seg.encode("utf-8"))
            digest.update(b"\x1e")
            hashes.append(digest.copy().hexdigest())
            running += len(seg)
            chars.append(running)
        hit = next((j for j in sorted(candidates, reverse=True) if hashes[j] in self._entries), None)
        if hit is not None:
            self._entries.move_to_end(hashes[hit])
        for m in set(markers):
            self._entries[hashes[m]] = None
            self._entries.move_to_end(hashes[m])
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        prefix_tokens = min(total_tokens, chars[last] // 4)
        read = 0 if hit is None else min(prefix_tokens, chars[hit] // 4)
        return total_tokens - prefix_tokens, prefix_tokens - read, read


# --------------------------------------------------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------------------------------------------------


class ScriptState:
    """The script, the recorded requests and the simulated prompt cache; safe to use from any thread."""

    def __init__(
        self, script: Iterable[StepInput] | None = None, *, fallback: Fallback = "error", latency_ms: float = 0
    ) -> None:
        if fallback not in ("echo", "error"):
            raise ValueError(f"fallback must be 'echo' or 'error', got {fallback!r}")
        if not _is_ms(latency_ms):
            raise ValueError("latency_ms must be a non-negative number")
        self.fallback: Fallback = fallback
        self.latency_ms = latency_ms
        self._lock = threading.Lock()
        self._pending: list[_Step] = []
        self._pushed = 0
        self._requests: list[dict[str, Any]] = []
        self._cache = _PromptCache()
        self.push(*(script or ()))

    def push(self, *steps: StepInput) -> None:
        """Append steps to the script (validated now, so a typo fails the test that wrote it)."""
        with self._lock:
            normalized = []
            for i, raw in enumerate(steps):
                try:
                    normalized.append(_normalize_step(raw, self._pushed + i))
                except ValueError as exc:
                    raise ValueError(f"{exc} (step {self._pushed + i + 1})") from None
            self._pending.extend(normalized)
            self._pushed += len(normalized)

    def remaining(self) -> int:
        with self._lock:
            return len(self._pending)

    def pending_summaries(self) -> list[str]:
        with self._lock:
            return [step.summary() for step in self._pending]

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the recorded requests: ``{"path", "body", "headers", "step", "time"}`` each."""
        with self._lock:
            return list(self._requests)

    def record(self, path: str, body: object, headers: Mapping[str, str], step: _Step | None = None) -> None:
        entry = {
            "path": path,
            "body": body,
            "headers": dict(headers),
            "step": None if step is None else step.index,
            "time": time.time(),
        }
        with self._lock:
            self._requests.append(entry)

    def take(self, user_text: str) -> _Step | None:
        """Consume and return the first unconsumed step eligible for ``user_text``, if any."""
        with self._lock:
            for i, step in enumerate(self._pending):
                if step.match is None or step.match in user_text:
                    del self._pending[i]
                    return step
        return None

    def usage_for(self, body: Mapping[str, Any]) -> tuple[int, int, int]:
        total = estimate_input_tokens(body)
        with self._lock:
            return self._cache.usage(body, total)


# --------------------------------------------------------------------------------------------------------------------
# Wire format
# --------------------------------------------------------------------------------------------------------------------


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {_dumps(data)}\n\n".encode()


def _pieces(text: str) -> list[str]:
    return [text[i : i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS)]


def _materialize(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The response content blocks, with generated tool ids and thinking signatures filled in."""
    blocks: list[dict[str, Any]] = []
    for block in content:
        kind = block["type"]
        if kind == "text":
            blocks.append({"type": "text", "text": block["text"]})
        elif kind == "thinking":
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": block["thinking"],
                    "signature": block.get("signature") or _new_signature(),
                }
            )
        elif kind == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
        else:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": block.get("id") or _new_id("toolu"),
                    "name": block["name"],
                    "input": block["input"],
                }
            )
    return blocks


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    chars = 0
    for block in blocks:
        kind = block["type"]
        if kind == "text":
            chars += len(block["text"])
        elif kind == "thinking":
            chars += len(block["thinking"])
        elif kind == "redacted_thinking":
            chars += len(block["data"])
        else:
            chars += len(block["name"]) + len(_dumps(block["input"]))
    return max(1, chars // 4)


def _delta_events(index: int, delta_type: str, field: str, pieces: Iterable[str]) -> list[bytes]:
    # Deltas are most of the stream: format them from a template and encode only the string (C fast path).
    head = (
        "event: content_block_delta\ndata: "
        f'{{"type":"content_block_delta","index":{index},"delta":{{"type":"{delta_type}","{field}":'
    )
    return [f"{head}{json.dumps(piece)}}}}}\n\n".encode() for piece in pieces]


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    kind = block["type"]
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = _delta_events(index, "text_delta", "text", _pieces(block["text"]))
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = _delta_events(index, "thinking_delta", "thinking", _pieces(block["thinking"]))
        deltas += _delta_events(index, "signature_delta", "signature", [block["signature"]])
    elif kind == "redacted_thinking":
        start, deltas = dict(block), []
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        deltas = _delta_events(index, "input_json_delta", "partial_json", ["", *_pieces(_dumps(block["input"]))])
    return [
        _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
        *deltas,
        _sse("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _message_shell(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }


def _error_body(kind: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}


def _error_response(status: int, kind: str, message: str, request_id: str) -> JSONResponse:
    headers = {"request-id": request_id, "x-should-retry": "false"}
    if status == 429:
        headers["retry-after"] = "0"
    return JSONResponse(_error_body(kind, message, request_id), status_code=status, headers=headers)


async def _pause(receive: Receive, seconds: float) -> bool:
    """Sleep ``seconds``; return False early if the client disconnects meanwhile."""
    if seconds <= 0:
        return True
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return True
    return False


async def _paced(events: Sequence[bytes], chunk_delay: float) -> AsyncIterator[bytes]:
    if chunk_delay <= 0:
        yield b"".join(events)
        return
    for i, event in enumerate(events):
        if i:
            await asyncio.sleep(chunk_delay)
        yield event


_SSE_HEADERS = {"cache-control": "no-cache"}


class _CutResponse(StreamingResponse):
    """A 200 whose body stops after ``limit`` bytes: ``abort`` closes the connection mid-body (the chunked body is
    never terminated, so the client sees the peer close early); otherwise the body ends cleanly there."""

    def __init__(
        self, parts: AsyncIterator[bytes], limit: int, *, abort: bool, media_type: str, headers: Mapping[str, str]
    ) -> None:
        super().__init__(parts, media_type=media_type, headers=dict(headers))  # no content-length: a chunked body
        self.parts, self.limit, self.abort = parts, limit, abort

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        sent = 0
        async for part in self.parts:
            piece = part[: self.limit - sent]
            if piece:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += len(piece)
            if sent >= self.limit:
                break
        logger.info("reply cut after %d bytes (%s)", sent, "connection dropped" if self.abort else "body ended")
        if not self.abort:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        # abort: returning without finishing the response makes the server close the connection mid-body


def _reply(
    data: Mapping[str, Any], parts: AsyncIterator[bytes], media_type: str, headers: Mapping[str, str]
) -> Response:
    """The reply's response, cut short when its step says so."""
    for key in _CUT_KEYS:
        if key in data:
            return _CutResponse(
                parts, data[key], abort=key == "drop_after_bytes", media_type=media_type, headers=headers
            )
    return StreamingResponse(parts, media_type=media_type, headers=headers)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


# --------------------------------------------------------------------------------------------------------------------
# The ASGI app
# --------------------------------------------------------------------------------------------------------------------


def build_app(state: ScriptState) -> Starlette:
    """The Starlette app serving ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` from ``state``."""

    async def read_body(request: Request) -> dict[str, Any] | str:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return f"request body is not valid JSON: {exc}"
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        return body

    async def messages(request: Request) -> Response:
        request_id = _new_id("req")
        body = await read_body(request)
        if isinstance(body, str) or not isinstance(body.get("messages"), list):
            state.record(request.url.path, body, request.headers)
            message = body if isinstance(body, str) else "messages: field required"
            return _error_response(400, "invalid_request_error", message, request_id)
        user_text = last_user_text(body["messages"])
        stream = body.get("stream") is True
        model = str(body.get("model") or DEFAULT_MODEL)
        step = state.take(user_text)
        state.record(request.url.path, body, request.headers, step)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s stream=%s user=%r -> %s",
                request.url.path,
                stream,
                user_text[-80:],
                step.summary() if step else f"fallback {state.fallback}",
            )
        if step is None:
            if state.fallback == "error":
                message = f"scripted model: script exhausted, no eligible step for last user text {user_text[:200]!r}"
                return _error_response(500, "api_error", message, request_id)
            step = _Step(-1, "reply", {"content": [{"type": "text", "text": f"echo: {user_text}"}]}, None)

        data = step.data
        if "hang_ms" in data and not await _pause(request.receive, data["hang_ms"] / 1000):
            return Response(status_code=499)
        if step.kind == "hang":
            message = f"scripted hang of {data['hang_ms']} ms ended without a reply"
            return _error_response(504, "timeout_error", message, request_id)
        delay_ms = data.get("delay_ms", state.latency_ms)
        if not await _pause(request.receive, delay_ms / 1000):
            return Response(status_code=499)

        if step.kind == "error" or (step.kind == "stream_error" and not stream):
            error = data["error"] if step.kind == "error" else data["stream_error"]
            return _error_response(error["status"], error["type"], error["message"], request_id)

        input_tokens, cache_creation, cache_read = state.usage_for(body)
        usage: dict[str, Any] = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
        }
        headers = {"request-id": request_id}
        chunk_delay = data.get("chunk_delay_ms", 0) / 1000

        if step.kind == "stream_error":
            after_text: str = data.get("after_text", "")
            shell = _message_shell(model, {**usage, "output_tokens": 1})
            events = [
                _sse("message_start", {"type": "message_start", "message": shell}),
                _sse("ping", {"type": "ping"}),
            ]
            if after_text:
                events += _block_events(0, {"type": "text", "text": after_text})[:-1]  # no content_block_stop
            error = data["stream_error"]
            events.append(_sse("error", _error_body(error["type"], error["message"], request_id)))
            return StreamingResponse(
                _paced(events, chunk_delay), media_type="text/event-stream", headers={**headers, **_SSE_HEADERS}
            )

        blocks = _materialize(data["content"])
        has_tool_use = any(b["type"] == "tool_use" for b in blocks)
        stop_reason = data.get("stop_reason") or ("tool_use" if has_tool_use else "end_turn")
        stop_sequence = data.get("stop_sequence")
        usage["output_tokens"] = _output_tokens(blocks)
        usage.update(data.get("usage", {}))

        if not stream:
            reply = _message_shell(model, usage)
            reply.update(content=blocks, stop_reason=stop_reason, stop_sequence=stop_sequence)
            if any(key in data for key in _CUT_KEYS):
                return _reply(data, _once(_dumps(reply).encode()), "application/json", headers)
            return JSONResponse(reply, headers=headers)

        shell = _message_shell(model, {**usage, "output_tokens": 1})
        events = [_sse("message_start", {"type": "message_start", "message": shell}), _sse("ping", {"type": "ping"})]
        for index, block in enumerate(blocks):
            events += _block_events(index, block)
        delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        events.append(_sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(_sse("message_stop", {"type": "message_stop"}))
        return _reply(data, _paced(events, chunk_delay), "text/event-stream", {**headers, **_SSE_HEADERS})

    async def count_tokens(request: Request) -> Response:
        body = await read_body(request)
        state.record(request.url.path, body, request.headers)
        if isinstance(body, str):
            return _error_response(400, "invalid_request_error", body, _new_id("req"))
        return JSONResponse({"input_tokens": estimate_input_tokens(body)})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "remaining_steps": state.remaining()})

    async def not_found(request: Request) -> Response:
        message = f"scripted model serves POST /v1/messages only, not {request.method} {request.url.path}"
        return _error_response(404, "not_found_error", message, _new_id("req"))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/{path:path}", not_found, methods=methods),
        ]
    )


# --------------------------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP, and
    # accepted sockets inherit proto 0 from `socket.socket(family, SOCK_STREAM)`. With Nagle on, a response
    # written as headers then body waited out the client's delayed ACK: ~40 ms on every reused connection.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ScriptedModelServer:
    """The scripted model on 127.0.0.1 in a background thread, for tests::

    with ScriptedModelServer(["hello"]) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0)
        ...
        server.assert_complete()
    """

    def __init__(
        self,
        script: Iterable[StepInput] | None = None,
        *,
        fallback: Fallback = "error",
        latency_ms: float = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = ScriptState(script, fallback=fallback, latency_ms=latency_ms)
        self.host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> ScriptedModelServer:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("ScriptedModelServer already started")
        sock = _bind(self.host, self._port)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.state),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            loop="asyncio",  # (as the server's: api/server.py uvicorn_config)
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"scripted-model-{self._port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("scripted model server thread died during startup")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"scripted model server did not start within {timeout} s")
            time.sleep(0.002)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        if self._thread is None:
            raise RuntimeError("ScriptedModelServer is not started")
        return _url(self.host, self._port)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests, oldest first: ``{"path", "body", "headers", "step", "time"}`` each."""
        return self.state.requests

    def push(self, *steps: StepInput) -> None:
        self.state.push(*steps)

    def remaining(self) -> int:
        return self.state.remaining()

    def assert_complete(self) -> None:
        """Raise AssertionError if any scripted step was never consumed."""
        pending = self.state.pending_summaries()
        if pending:
            raise AssertionError(f"{len(pending)} scripted step(s) never consumed: {', '.join(pending)}")


def serve(
    host: str = "127.0.0.1",
    port: int = 8788,
    script_path: str | None = None,
    latency_ms: int = 0,
    fallback: str = "echo",
) -> None:
    """Serve the scripted model in the foreground until interrupted (the ``managed-agents scripted-model`` command).

    A script that cannot be read or is invalid, or an address that cannot be bound, raises `ScriptError` with a
    one-line message (the command prints it and exits with status 2)."""
    if fallback not in ("echo", "error"):
        raise ScriptError(f"--fallback must be 'echo' or 'error', got {fallback!r}")
    try:
        script = load_script(script_path) if script_path else []
        state = ScriptState(script, fallback="echo" if fallback == "echo" else "error", latency_ms=latency_ms)
    except OSError as exc:
        raise ScriptError(f"--script {script_path}: cannot read it: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ScriptError(f"--script {script_path}: not valid JSON: {exc}") from exc
    except ValueError as exc:
        why = str(exc).removeprefix(f"{script_path}: ")
        raise ScriptError(f"--script {script_path}: {why}") from exc
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s scripted-model %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        raise ScriptError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    url = _url(host, sock.getsockname()[1])
    print(
        f"Scripted model listening on {url} ({len(script)} step(s), fallback={fallback}); "
        f"export ANTHROPIC_BASE_URL={url}",
        flush=True,
    )
    config = uvicorn.Config(build_app(state), log_level="warning", access_log=False, lifespan="off", loop="asyncio")
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m managed_agents.testing.scripted_model",
        description="Serve a scripted fake of the Anthropic Messages API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--script", default=None, help="JSON file with a list of steps")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before the first byte of every reply")
    parser.add_argument("--fallback", choices=["echo", "error"], default="echo", help="when no step is eligible")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.script, args.latency_ms, args.fallback)
    except ScriptError as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
