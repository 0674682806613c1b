"""The model port on the official SDK: streaming Messages API, any Anthropic-compatible endpoint.

The SDK's own retries are off (max_retries=0): the harness owns retries so that every attempt is visible as
`session.error` / `session.status_rescheduled` events. Every way a response can fail after it started is a retryable
`ModelError` too, as a 5xx is: a connection dropped or stalled mid-stream (the SDK raises its connection or timeout
error, or before 2.12 httpx2's own), and a stream that ends before `message_stop` (the SDK would hand back the
partial message as if it were whole, or fail an assertion when even `message_start` was missing).

A request that can be cancelled (the embedded orchestrator passes a cancel token) runs as an asyncio task on
one event loop shared by every session of the process, through `AsyncAnthropic`: the embedded server's own loop
while it serves (`run_requests_on`, from the app's lifespan), else a loop on a thread of the adapter's own. (A second
loop thread beside the server's contended with it for the GIL on every wake-up of either: the server's CPU per
scripted turn was ~8% higher, bench/concurrent_sessions.py.) Cancelling the token
cancels the task: a request not yet sent is never sent, and one in flight, even one still waiting for its
response headers, has its connection closed, so the model endpoint sees the disconnect at once. (The sync client
could do neither: it blocks in `messages.stream(...).__enter__` until the headers arrive, so an interrupted
request used to be sent late, after the next turn's request, or to keep its connection open until the model
answered.) Without a token (a task Lambda) the request runs on the calling thread with the sync client.

The loop's requests go through one async client whose transport is `adapters/lean_http.py`'s HTTP/1.1 on asyncio
protocols, not httpcore: httpcore re-checked every idle connection of its pool (a socket probe and a getpeername each)
whenever a request was added or removed, wrapped every socket read in an anyio cancel scope and ran h11's state
machine, ~1.3 ms of CPU per request with a hundred sessions streaming (bench/model_adapter_cpu.py). (It used to be
spread over up to 64 clients, each with its own pool, to keep that scan short.) With an HTTP proxy in the environment
the client is the SDK's default one, so proxies work as the SDK makes them work. The TLS context is made once
(`httpx2.create_ssl_context()`, what the client would have made): loading the CA bundle costs ~30 ms of CPU.

The SDK builds and sends the request (base URL, credentials from the arguments, the environment or a profile,
`ANTHROPIC_CUSTOM_HEADERS`, its status errors), but the response's event stream is read here (`_StreamReader`):
the SDK's `messages.stream` made a pydantic event object for every delta, re-ran partial JSON parsing of a tool
input on every delta and accumulated a typed message, about a third of the server's CPU per scripted turn
(bench/concurrent_sessions.py --profile py-spy). The reader splits the SSE bytes, decodes each event's JSON once
and builds the final message from plain dicts, with the SDK's accumulation rules; anything it cannot read is the
same retryable `ModelError` as before.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import inspect
import json
import ssl
import threading
import urllib.request
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar, cast

import anthropic
import httpx2

from managed_agents.adapters.lean_http import LeanAsyncTransport
from managed_agents.domain.events import JsonObject
from managed_agents.ports import (
    Cancelled,
    CancelToken,
    ModelError,
    ModelErrorKind,
    ModelResponse,
    ModelUsage,
    StreamListener,
)

_KIND_BY_ERROR_TYPE: dict[str, ModelErrorKind] = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limited",
    "api_error": "server",
    "timeout_error": "timeout",
    "authentication_error": "auth",
    "permission_error": "auth",
}


def _kind_for_status(status: int, error_type: str | None) -> ModelErrorKind:
    if error_type in _KIND_BY_ERROR_TYPE and status in (200, 500):
        return _KIND_BY_ERROR_TYPE[error_type]
    if status == 200:  # an `error` event in a stream the endpoint had accepted: its failure, not the request's
        return "server"
    if status == 429:
        return "rate_limited"
    if status == 529:
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "server"
    if status in (401, 403):
        return "auth"
    return "invalid"


T = TypeVar("T")


def _api_message(exc: anthropic.APIStatusError) -> tuple[str | None, str]:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    etype = error.get("type")
    message = error.get("message")
    return (str(etype) if etype else None, str(message) if message else exc.message)


def _model_error(exc: Exception) -> ModelError | None:
    """The port's error for an SDK failure, or None when it is not a model endpoint failure."""
    if isinstance(exc, anthropic.APIStatusError):
        etype, text = _api_message(exc)
        return ModelError(_kind_for_status(exc.status_code, etype), text, status=exc.status_code)
    if isinstance(exc, anthropic.APITimeoutError):
        return ModelError("timeout", "the model did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError):
        return ModelError("connection", f"could not reach the model endpoint: {exc}")
    # SDK versions before 2.12 let the transport's own errors out of a stream that breaks after its headers
    if isinstance(exc, httpx2.TimeoutException):
        return ModelError("timeout", f"the model stream stalled mid-response: {type(exc).__name__}")
    if isinstance(exc, httpx2.TransportError):
        return ModelError("connection", f"the connection to the model endpoint broke mid-response: {exc}")
    return None


def _cut_short() -> ModelError:
    return ModelError("connection", "the model stream ended before the message was complete (no message_stop)")


def _stream_error(exc: Exception) -> ModelError:
    """What reading the next event of a started response raised: the endpoint's failure, never ours (what the
    harness's listener raises is not read here), so anything not named above is a malformed stream."""
    error = _model_error(exc)
    if error is not None:
        return error
    return ModelError("server", f"the model endpoint sent a stream that cannot be read ({type(exc).__name__}: {exc})")


def _error_event(data: bytes, status: int) -> ModelError:
    """An `error` event mid-stream, as the SDK reported it: the body's error type and message when it is JSON."""
    try:
        body: object = json.loads(data)
        fallback = f"{body}"
    except ValueError:
        body, fallback = None, data.decode("utf-8", "replace") or f"Error code: {status}"
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    etype, message = error.get("type"), error.get("message")
    return ModelError(
        _kind_for_status(status, str(etype) if etype else None), str(message) if message else fallback, status=status
    )


def _without_none(value: Any) -> Any:
    """`value` with every None-valued key dropped, at every depth (the SDK's `exclude_none` dump of a block)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _block_json(block: JsonObject) -> JsonObject:
    """A finished content block as the harness logs it: no None fields, except inside a tool's input (a tool
    may be called with an explicit null, and the SDK kept those too)."""
    out = cast(JsonObject, _without_none({k: v for k, v in block.items() if k != "input"}))
    if "input" in block:
        out["input"] = block["input"]
    return out


_TOOL_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_FORWARDED = frozenset({"content_block_start", "content_block_delta"})


class _StreamReader:
    """Reads a streaming Messages response: SSE bytes in, the final message out (`response()`).

    `feed` takes the body chunk by chunk, as it arrives. It never raises: the first failure (an `error` event,
    JSON that does not parse, events out of order) is kept in `failure` and ends the reading, so the caller can
    hand the events before it to its listener first. With `forward`, `feed` returns the `content_block_start` and
    `content_block_delta` events of the chunk (as their JSON, None fields dropped) for the listener.

    The message is built as the SDK's `accumulate_event` builds it: text and thinking deltas are appended, a
    signature delta replaces the signature, a citation delta appends a citation, a tool input is the JSON of its
    `input_json_delta`s (parsed once, when the block ends, not on every delta), `message_delta` sets the stop
    reason, stop details, container and usage (a usage count it omits keeps its `message_start` value). Events and
    deltas of unknown types are skipped, as the SDK skips them. SSE: `event:`/`data:` fields, `:` comments, CRLF,
    CR or LF line ends; an event needs its blank line (an event the stream ends in is dropped, as the SDK drops
    it); events without an `event:` line and `ping`s are skipped.
    """

    def __init__(self, status: int, *, forward: bool) -> None:
        self.status = status
        self.forward = forward
        self.failure: ModelError | None = None
        self.complete = False  # message_stop seen
        self._rest = b""
        self._event: bytes | None = None
        self._data: list[bytes] = []
        self._message: JsonObject | None = None
        self._blocks: list[JsonObject] = []
        self._pieces: dict[int, list[str]] = {}  # block index -> text/thinking/partial JSON pieces

    def feed(self, chunk: bytes) -> list[JsonObject]:
        if self.failure is not None:
            return []
        buf = self._rest + chunk if self._rest else chunk
        lines = buf.splitlines(keepends=True)
        # the last line is kept for the next chunk unless it ended in LF (a CR may be the first half of a CRLF)
        self._rest = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        out: list[JsonObject] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if line:
                if line[0] != 58:  # ':' starts a comment
                    name, _, value = line.partition(b":")
                    if value[:1] == b" ":
                        value = value[1:]
                    if name == b"data":
                        self._data.append(value)
                    elif name == b"event":
                        self._event = value
                continue
            event, data = self._event, b"\n".join(self._data)
            self._event, self._data = None, []
            if event is None or event == b"ping":
                continue
            if event == b"error":
                self.failure = _error_event(data, self.status)
                return out
            if not data:
                continue
            try:
                forwarded = self._apply(json.loads(data))
            except Exception as exc:
                self.failure = _stream_error(exc)
                return out
            if forwarded is not None:
                out.append(forwarded)
        return out

    def end(self) -> list[JsonObject]:
        """The body ended: read its last line if it ended in a lone CR (held back in case an LF followed)."""
        rest, self._rest = self._rest, b""
        return self.feed(rest + b"\n") if rest.endswith(b"\r") else []

    def _apply(self, event: JsonObject) -> JsonObject | None:
        etype = event["type"]
        if self._message is None:
            if etype != "message_start":
                raise ValueError(f"{etype!r} before message_start")
            self._message = cast(JsonObject, dict(cast(JsonObject, event["message"])))
            self._message["usage"] = dict(cast(JsonObject, self._message.get("usage") or {}))
            self._blocks = [dict(b) for b in cast(list[JsonObject], self._message.get("content") or [])]
        elif etype == "content_block_delta":
            index = cast(int, event["index"])
            block, delta = self._blocks[index], cast(JsonObject, event["delta"])
            dtype, btype = delta["type"], block.get("type")
            if (dtype == "text_delta" and btype == "text") or (dtype == "thinking_delta" and btype == "thinking"):
                field = "text" if btype == "text" else "thinking"
                pieces = self._pieces.get(index)
                if pieces is None:
                    pieces = self._pieces[index] = [cast(str, block.get(field) or "")]
                pieces.append(cast(str, delta[field]))
            elif dtype == "input_json_delta" and btype in _TOOL_INPUT_BLOCKS:
                self._pieces.setdefault(index, []).append(cast(str, delta["partial_json"]))
            elif dtype == "signature_delta" and btype == "thinking":
                block["signature"] = delta["signature"]
            elif dtype == "citations_delta" and btype == "text":
                block["citations"] = [*cast(list[Any], block.get("citations") or []), delta["citation"]]
        elif etype == "content_block_start":
            self._blocks.append(dict(cast(JsonObject, event["content_block"])))
        elif etype == "content_block_stop":
            self._finish_block(cast(int, event["index"]))
        elif etype == "message_delta":
            delta, usage = cast(JsonObject, event["delta"]), cast(JsonObject, event.get("usage") or {})
            message = self._message
            message["stop_reason"] = delta.get("stop_reason")
            message["stop_sequence"] = delta.get("stop_sequence")
            message["stop_details"] = delta.get("stop_details")
            if delta.get("container") is not None:
                message["container"] = delta["container"]
            totals = cast(JsonObject, message["usage"])
            totals.update({k: v for k, v in usage.items() if v is not None})
        elif etype == "message_stop":
            self.complete = True
        if self.forward and etype in _FORWARDED:
            return cast(JsonObject, _without_none({k: event[k] for k in _FORWARD_KEYS if k in event}))
        return None

    def _finish_block(self, index: int) -> None:
        pieces = self._pieces.pop(index, None)
        if pieces is None:
            return
        block = self._blocks[index]
        btype = block.get("type")
        if btype in _TOOL_INPUT_BLOCKS:
            joined = "".join(pieces)
            if joined:
                block["input"] = json.loads(joined)
        else:
            block["text" if btype == "text" else "thinking"] = "".join(pieces)

    def response(self) -> ModelResponse:
        """The whole message (call once `complete`; a failure to read a tool's input JSON raises `ModelError`)."""
        assert self._message is not None
        try:
            for index in list(self._pieces):  # blocks whose content_block_stop never came
                self._finish_block(index)
        except ValueError as exc:
            raise _stream_error(exc) from exc
        message, usage = self._message, cast(JsonObject, self._message["usage"])
        stop_details = message.get("stop_details")
        if isinstance(stop_details, dict) and stop_details.get("type") == "refusal":
            stop_details = {"category": None, "explanation": None, **stop_details}
        return ModelResponse(
            content=[_block_json(b) for b in self._blocks],
            stop_reason=cast(str | None, message.get("stop_reason")),
            usage=ModelUsage(
                input_tokens=cast(int, usage.get("input_tokens") or 0),
                output_tokens=cast(int, usage.get("output_tokens") or 0),
                cache_read_input_tokens=cast(int, usage.get("cache_read_input_tokens") or 0),
                cache_creation_input_tokens=cast(int, usage.get("cache_creation_input_tokens") or 0),
            ),
            model=cast(str, message.get("model") or ""),
            stop_details=cast(JsonObject, stop_details) if isinstance(stop_details, dict) else None,
        )


_FORWARD_KEYS = ("type", "index", "content_block", "delta")


class _LoopThread:
    """An event loop running on a daemon thread until stopped; coroutines are submitted from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="model-requests", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Stop the loop (requests still running are abandoned, their connections dropped with the loop)."""
        with contextlib.suppress(RuntimeError):  # already closed
            self.loop.call_soon_threadsafe(self.loop.stop)


class _AsyncAnthropic(anthropic.AsyncAnthropic):
    """The SDK's async client, with its join of the base URL and a request's path kept per path: `_prepare_url`
    parsed the path and copied the base URL (~37 us) on every request, for the one path the adapter posts to. A
    join is reused only with the base URL it was made from (assigning `base_url` makes a new one)."""

    def _prepare_url(self, url: str) -> httpx2.URL:
        joined: dict[str, tuple[httpx2.URL, httpx2.URL]] = self.__dict__.setdefault("_joined_urls", {})
        base, known = joined.get(url, (None, None))
        if known is not None and base is self.base_url:
            return known
        prepared = super()._prepare_url(url)
        joined[url] = (self.base_url, prepared)
        return prepared


# the SDK's User-Agent names the client's class: the requests stay the SDK's own, byte for byte
_AsyncAnthropic.__name__ = _AsyncAnthropic.__qualname__ = "AsyncAnthropic"


class _OnLoop:
    """Coroutines submitted from any thread to an event loop someone else runs (the embedded server's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


class AnthropicMessagesModel:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        client: anthropic.Anthropic | None = None,
    ) -> None:
        self._client = client
        self._async_client: anthropic.AsyncAnthropic | None = None
        self._runner: _LoopThread | None = None
        # the loop given by `run_requests_on` and its own client (a client's connections belong to one loop)
        self._on_loop: tuple[_OnLoop, anthropic.AsyncAnthropic] | None = None
        self._options = {"api_key": api_key, "base_url": base_url, "timeout": timeout}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None  # made once (see the module's docstring)

    def _client_options(self) -> dict[str, Any]:
        return {
            "api_key": cast(str | None, self._options["api_key"]) or "missing-api-key",
            "base_url": cast(str | None, self._options["base_url"]),
            "timeout": cast(float, self._options["timeout"]),
            "max_retries": 0,
        }

    @property
    def client(self) -> anthropic.Anthropic:
        with self._lock:
            if self._client is None:
                self._client = anthropic.Anthropic(**self._client_options())
            return self._client

    def run_requests_on(self, loop: asyncio.AbstractEventLoop | None, *, leaving: bool = False) -> None:
        """Run the async requests that start from now on `loop` (the embedded server's, while it serves) instead of
        the adapter's own loop thread. `leaving=True`: that loop stops serving; requests go back to the own thread
        (unless another loop was given since). Requests already running stay on the loop they started on."""
        with self._lock:
            current = self._on_loop[0].loop if self._on_loop is not None else None
            if leaving:
                if current is loop:
                    self._on_loop = None
            elif loop is not current:
                self._on_loop = (_OnLoop(loop), self._new_async_client()) if loop is not None else None

    def _async(self) -> tuple[_LoopThread | _OnLoop, anthropic.AsyncAnthropic]:
        """The loop and the client for the async requests: the loop given by `run_requests_on` while it runs, else
        the own loop thread (made with its first request)."""
        with self._lock:
            if self._on_loop is not None and not self._on_loop[0].loop.is_closed():
                return self._on_loop
            if self._runner is None or self._async_client is None:
                self._runner = _LoopThread()
                weakref.finalize(self, self._runner.stop)  # no thread outlives a model nobody closed
                self._async_client = self._new_async_client()
            return self._runner, self._async_client

    def _new_async_client(self) -> anthropic.AsyncAnthropic:
        if self._tls is None:
            self._tls = httpx2.create_ssl_context()
        timeout = cast(float, self._options["timeout"])
        if urllib.request.getproxies():  # the SDK's client routes through the proxies as it does
            http_client = anthropic.DefaultAsyncHttpxClient(verify=self._tls, timeout=timeout)
        else:
            http_client = anthropic.DefaultAsyncHttpxClient(transport=LeanAsyncTransport(self._tls), timeout=timeout)
        return _AsyncAnthropic(**self._client_options(), http_client=http_client)

    def close(self) -> None:
        """Stop the request loop thread, if one was started (idempotent; a later request starts a new one), and
        forget a loop given by `run_requests_on`."""
        with self._lock:
            runner, self._runner, self._async_client, self._on_loop = self._runner, None, None, None
        if runner is not None:
            runner.stop()

    def stream_message(
        self, request: JsonObject, *, cancel: CancelToken | None = None, on_event: StreamListener | None = None
    ) -> ModelResponse:
        if cancel is None:
            return self._stream_message(request, on_event)
        if cancel.cancelled:
            raise Cancelled()
        runner, client = self._async()
        try:
            future = runner.submit(self._astream_message(client, request, on_event))
            cancel.on_cancel(future.cancel)  # cancels the task: the request is never sent, or its connection closed
            return future.result()
        except concurrent.futures.CancelledError:
            raise Cancelled() from None

    async def _astream_message(
        self, client: anthropic.AsyncAnthropic, request: JsonObject, on_event: StreamListener | None
    ) -> ModelResponse:
        try:
            response = await client.post(_PATH, cast_to=httpx2.Response, stream=True, **_body(request))
        except Exception as exc:
            raise _request_error(exc) from exc
        reader = _StreamReader(response.status_code, forward=on_event is not None)
        try:
            async for chunk in _read_abody(response):
                _hand_over(reader, reader.feed(chunk), on_event)
        finally:
            await response.aclose()
        return _finished(reader, on_event)

    def _stream_message(self, request: JsonObject, on_event: StreamListener | None) -> ModelResponse:
        try:
            response = self.client.post(_PATH, cast_to=httpx2.Response, stream=True, **_body(request))
        except Exception as exc:
            raise _request_error(exc) from exc
        reader = _StreamReader(response.status_code, forward=on_event is not None)
        try:
            for chunk in _read_body(response):
                _hand_over(reader, reader.feed(chunk), on_event)
        finally:
            response.close()
        return _finished(reader, on_event)


_PATH = "/v1/messages"
# the SDK's own body encoding (anthropic._utils._json.openapi_dumps) for the plain JSON a harness request is
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# SDKs whose `post` takes a ready body (`content=`): the request is sent as encoded here, not walked and copied first
_TAKES_CONTENT = all(
    "content" in inspect.signature(c.post).parameters for c in (anthropic.Anthropic, anthropic.AsyncAnthropic)
)


def _body(request: JsonObject) -> dict[str, Any]:
    """The request's body for `client.post`: encoded here, once, where the SDK takes encoded bytes.

    Given `body=`, the SDK walks the whole request and copies every mapping and list in it before encoding it
    (`_copy_and_prepare`, for file inputs and `Omit` markers, which a harness request never holds), in Python, on
    every request: with 20 earlier turns in the transcript that was ~1 ms of the adapter's ~2.9 ms per request
    (bench/model_adapter_cpu.py --history 20), and it grows with the session. The bytes are the ones the SDK would
    send (its encoder's settings, the request's key order); what cannot be encoded raises here as it raised there.
    The messages but the last are encoded once each (`_EncodedMessages`): a session's next request repeats them."""
    body = {**request, "stream": True}
    if not _TAKES_CONTENT:
        return {"body": body}
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return {"content": _encode_json(body).encode()}
    parts = []
    for key, value in body.items():
        encoded = _ENCODED_MESSAGES.encode_list(messages) if key == "messages" else _encode_json(value)
        parts.append(f"{_encode_json(key)}:{encoded}")
    return {"content": ("{" + ",".join(parts) + "}").encode()}


class _EncodedMessages:
    """The JSON of a transcript's messages, kept by the message object's identity (the object held with it, so its id
    is not reused while kept), least recently used first out beyond `budget` characters; one over `largest` is not
    kept (a file block inlined into a new message per request would only churn the others out).

    A session's request repeats every earlier message of its transcript, the same objects from one turn to the next
    (the harness's folded state keeps them; harness/context.py `build_request` and harness/file_blocks.py share them
    and never change a message in place: what they change is a new dict). Encoding them all again made a request's
    CPU grow with the session: 3.46 ms per request with 200 earlier turns against 0.70 ms with none
    (bench/model_adapter_cpu.py --history). The last message is encoded apart and not kept: it is the request's own
    copy (it carries the cache breakpoint)."""

    def __init__(self, budget: int, largest: int) -> None:
        self.largest = largest
        self._lock = threading.Lock()
        self._kept: collections.OrderedDict[int, tuple[object, str]] = collections.OrderedDict()
        self._size = 0
        self.budget = budget

    def encode_list(self, messages: list[object]) -> str:
        encoded = [self._encode(m) for m in messages[:-1]]
        encoded.append(_encode_json(messages[-1]))
        return "[" + ",".join(encoded) + "]"

    def _encode(self, message: object) -> str:
        key = id(message)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] is message:
                self._kept.move_to_end(key)
                return kept[1]
        text = _encode_json(message)
        if len(text) > self.largest:  # (such as a file inlined into a new message for each request)
            return text
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._size -= len(old[1])
            self._kept[key] = (message, text)
            self._size += len(text)
            self._evict()
        return text

    def resize(self, budget: int) -> None:
        with self._lock:
            self.budget = budget
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently used beyond the budget (the lock held)."""
        while self._size > self.budget and self._kept:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._size -= len(dropped)


_ENCODED_MESSAGES = _EncodedMessages(budget=16 * 1024 * 1024, largest=256 * 1024)


def keep_encoded_messages(budget: int) -> None:
    """How many characters of earlier messages' JSON this process keeps (`_EncodedMessages`: 16 MB unless told).
    What it keeps also keeps those messages alive, so a runtime with little memory keeps less (aws_runtime.py)."""
    _ENCODED_MESSAGES.resize(budget)


def _request_error(exc: Exception) -> Exception:
    """What sending the request raised (the SDK's status, connection and timeout errors) as the port's error."""
    return _model_error(exc) or exc


async def _read_abody(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body's chunks; what reading them raises is the endpoint's failure (`_stream_error`)."""
    chunks = response.aiter_bytes()
    while True:
        try:
            yield await anext(chunks)
        except StopAsyncIteration:
            return
        except Exception as exc:
            raise _stream_error(exc) from exc


def _read_body(response: httpx2.Response) -> Iterator[bytes]:
    """The sync client's `_read_abody`."""
    chunks = response.iter_bytes()
    while True:
        try:
            yield next(chunks)
        except StopIteration:
            return
        except Exception as exc:
            raise _stream_error(exc) from exc


def _hand_over(reader: _StreamReader, events: list[JsonObject], on_event: StreamListener | None) -> None:
    """The listener gets a chunk's block events (what it raises is the harness's, passed on as is), then the
    stream's failure, if the chunk held one, is raised."""
    if on_event is not None:
        for event in events:
            on_event(event)
    if reader.failure is not None:
        raise reader.failure


def _finished(reader: _StreamReader, on_event: StreamListener | None) -> ModelResponse:
    _hand_over(reader, reader.end(), on_event)
    if not reader.complete:
        raise _cut_short()
    return reader.response()
