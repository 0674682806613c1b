"""The model port on the official SDK: streaming Messages API, any Anthropic-compatible endpoint.

The SDK's own retries are off (max_retries=0): the harness owns retries so that every attempt is visible as
`session.error` / `session.status_rescheduled` events. Every way a response can fail after it started is a retryable
`ModelError` too, as a 5xx is: a connection dropped or stalled mid-stream (the SDK raises its connection or timeout
error, or before 2.12 httpx2's own), and a stream that ends before `message_stop` (the SDK would hand back the
partial message as if it were whole, or fail an assertion when even `message_start` was missing).

A request that can be cancelled (the embedded orchestrator passes a cancel token) runs as an asyncio task on
one event loop thread shared by every session of the process, through `AsyncAnthropic`. Cancelling the token
cancels the task: a request not yet sent is never sent, and one in flight, even one still waiting for its
response headers, has its connection closed, so the model endpoint sees the disconnect at once. (The sync client
could do neither: it blocks in `messages.stream(...).__enter__` until the headers arrive, so an interrupted
request used to be sent late, after the next turn's request, or to keep its connection open until the model
answered.) Without a token (a task Lambda) the request runs on the calling thread with the sync client.

The loop's requests are spread over up to `POOL_SHARDS` async clients, each with its own connection pool:
httpcore re-checks every idle connection of a pool (a socket probe and a getpeername each) whenever a request is
added or removed, so one pool shared by a hundred streaming sessions spent about a quarter of the server's CPU in
that scan (bench/concurrent_sessions.py --profile sample). A request takes the least busy client, and a client is
made only when every one made so far has a request in flight: a Lambda, one request at a time, makes one (each
costs about 20 ms of TLS setup on its first request).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar, cast

import anthropic
import httpx2
from anthropic.types import Message

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
POOL_SHARDS = 8


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
    harness's listener raises is not read here), so anything the SDK does not name is a malformed stream."""
    error = _model_error(exc)
    if error is not None:
        return error
    return ModelError("server", f"the model endpoint sent a stream that cannot be read ({type(exc).__name__}: {exc})")


def _next_event(events: Iterator[Any]) -> Any:
    try:
        return next(events, None)
    except Exception as exc:
        raise _stream_error(exc) from exc


async def _anext_event(events: AsyncIterator[Any]) -> Any:
    try:
        return await anext(events, None)
    except Exception as exc:
        raise _stream_error(exc) from exc


def _response(message: Message) -> ModelResponse:
    usage = message.usage
    stop_details = getattr(message, "stop_details", None)
    return ModelResponse(
        content=[cast(JsonObject, b.model_dump(mode="json", exclude_none=True)) for b in message.content],
        stop_reason=message.stop_reason,
        usage=ModelUsage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        ),
        model=message.model,
        stop_details=cast(JsonObject, stop_details.model_dump(mode="json")) if stop_details is not None else None,
    )


_FORWARDED = frozenset({"content_block_start", "content_block_delta"})


def _forward(event: Any, on_event: StreamListener) -> None:
    """Hand a block start or delta to the listener (the SDK's synthesized `text`/`input_json` events are skipped)."""
    if event.type in _FORWARDED:
        on_event(
            cast(
                JsonObject,
                event.model_dump(mode="json", exclude_none=True, include={"type", "index", "content_block", "delta"}),
            )
        )


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
        self._async_clients: dict[anthropic.AsyncAnthropic, int] = {}  # client -> requests in flight
        self._runner: _LoopThread | None = None
        self._options = {"api_key": api_key, "base_url": base_url, "timeout": timeout}
        self._lock = threading.Lock()

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

    def _async(self) -> tuple[_LoopThread, anthropic.AsyncAnthropic]:
        """The loop and the client for one request (the caller gives the client back with `_done`)."""
        with self._lock:
            if self._runner is None:
                self._runner = _LoopThread()
                self._async_clients = {}
                weakref.finalize(self, self._runner.stop)  # no thread outlives a model nobody closed
            clients = self._async_clients
            client = min(clients, key=clients.__getitem__, default=None)
            if client is None or (clients[client] and len(clients) < POOL_SHARDS):
                client = anthropic.AsyncAnthropic(**self._client_options())
                clients[client] = 0
            clients[client] += 1
            return self._runner, client

    def _done(self, client: anthropic.AsyncAnthropic) -> None:
        with self._lock:
            if client in self._async_clients:  # not if the model was closed meanwhile
                self._async_clients[client] -= 1

    def close(self) -> None:
        """Stop the request loop thread, if one was started (idempotent; a later request starts a new one)."""
        with self._lock:
            runner, self._runner, self._async_clients = self._runner, None, {}
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
        finally:
            self._done(client)

    async def _astream_message(
        self, client: anthropic.AsyncAnthropic, request: JsonObject, on_event: StreamListener | None
    ) -> ModelResponse:
        try:
            async with client.messages.stream(**request) as stream:  # type: ignore[arg-type]
                events, complete = aiter(stream), False
                while (event := await _anext_event(events)) is not None:
                    complete = complete or event.type == "message_stop"
                    if on_event is not None:
                        _forward(event, on_event)
                if not complete:
                    raise _cut_short()
                message = await stream.get_final_message()
        except Exception as exc:
            error = _model_error(exc)
            if error is None:
                raise
            raise error from exc
        return _response(message)

    def _stream_message(self, request: JsonObject, on_event: StreamListener | None) -> ModelResponse:
        try:
            with self.client.messages.stream(**request) as stream:  # type: ignore[arg-type]
                events, complete = iter(stream), False
                while (event := _next_event(events)) is not None:
                    complete = complete or event.type == "message_stop"
                    if on_event is not None:
                        _forward(event, on_event)
                if not complete:
                    raise _cut_short()
                message = stream.get_final_message()
        except Exception as exc:
            error = _model_error(exc)
            if error is None:
                raise
            raise error from exc
        return _response(message)
