"""The model adapter's cancellation: an interrupted request never lingers at the model endpoint.

The endpoint here is a bare TCP listener that reads a request and never answers, so the adapter is stuck
waiting for response headers, the moment the sync SDK cannot be interrupted in.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken
from managed_agents.ports import Cancelled, ModelResponse
from managed_agents.testing.loopback import loop_thread

REQUEST = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class SilentEndpoint:
    """Accepts connections, reads what arrives, never answers; records each request and each client close."""

    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    received: threading.Event = field(default_factory=threading.Event)

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closed.set()
                    return
                data += chunk
                if b"\r\n\r\n" in data and b'"messages"' in data:
                    self.requests.append(data)
                    self.received.set()


@pytest.fixture
def endpoint() -> Iterator[SilentEndpoint]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    ep = SilentEndpoint(port=listener.getsockname()[1])
    threading.Thread(target=ep.serve, args=(listener,), daemon=True).start()
    yield ep
    listener.close()


def _run(model: AnthropicMessagesModel, token: ThreadCancelToken, out: list[object]) -> None:
    try:
        out.append(model.stream_message(REQUEST, cancel=token))
    except BaseException as exc:
        out.append(exc)


def test_cancel_while_waiting_for_headers_returns_and_closes_the_connection(endpoint: SilentEndpoint) -> None:
    # Given a request the endpoint has received but will never answer
    model = AnthropicMessagesModel(api_key="test", base_url=f"http://127.0.0.1:{endpoint.port}", timeout=30)
    token = ThreadCancelToken()
    out: list[object] = []
    caller = threading.Thread(target=_run, args=(model, token, out), daemon=True)
    caller.start()
    assert endpoint.received.wait(10)
    # When the token is cancelled
    started = time.monotonic()
    token.cancel()
    caller.join(2)
    # Then the call returns Cancelled at once and the endpoint sees the connection close (nothing lingers)
    assert not caller.is_alive()
    assert len(out) == 1 and isinstance(out[0], Cancelled)
    assert endpoint.closed.wait(2)
    assert time.monotonic() - started < 2
    assert len(endpoint.requests) == 1
    model.close()


def test_a_cancelled_token_sends_nothing(endpoint: SilentEndpoint) -> None:
    # Given a token cancelled before the request
    model = AnthropicMessagesModel(api_key="test", base_url=f"http://127.0.0.1:{endpoint.port}", timeout=30)
    token = ThreadCancelToken()
    token.cancel()
    # When the harness asks for a model response, Then it gets Cancelled and the endpoint never hears of it
    with pytest.raises(Cancelled):
        model.stream_message(REQUEST, cancel=token)
    time.sleep(0.2)  # a late send would arrive within this (negative check: there is no event to poll for)
    assert endpoint.requests == []
    model.close()


def test_requests_after_close_start_a_new_loop(endpoint: SilentEndpoint) -> None:
    # Given a model whose request loop was stopped
    from managed_agents.testing.scripted_model import ScriptedModelServer

    with ScriptedModelServer(["first", "second"]) as server:
        model = AnthropicMessagesModel(api_key="test", base_url=server.base_url, timeout=30)
        first = model.stream_message(dict(REQUEST), cancel=ThreadCancelToken())
        model.close()
        # When another request comes, Then it is served on a fresh loop
        second = model.stream_message(dict(REQUEST), cancel=ThreadCancelToken())
        model.close()
    assert isinstance(first, ModelResponse) and isinstance(second, ModelResponse)
    assert [first.content[0]["text"], second.content[0]["text"]] == ["first", "second"]


@pytest.fixture
def server_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running on a thread of its own, as the embedded server's does."""
    with loop_thread(asyncio.new_event_loop()) as loop:
        yield loop


def _request_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "model-requests"]


def test_a_request_on_the_servers_loop_is_cancelled_as_on_the_own_thread(
    endpoint: SilentEndpoint, server_loop: asyncio.AbstractEventLoop
) -> None:
    # Given a model whose requests run on the server's loop, and a request the endpoint will never answer
    model = AnthropicMessagesModel(api_key="test", base_url=f"http://127.0.0.1:{endpoint.port}", timeout=30)
    model.run_requests_on(server_loop)
    before = _request_threads()
    token = ThreadCancelToken()
    out: list[object] = []
    caller = threading.Thread(target=_run, args=(model, token, out), daemon=True)
    caller.start()
    assert endpoint.received.wait(10)
    # When the token is cancelled
    token.cancel()
    caller.join(2)
    # Then the call returns Cancelled at once and the connection is closed, with no loop thread of the model's own
    assert not caller.is_alive()
    assert len(out) == 1 and isinstance(out[0], Cancelled)
    assert endpoint.closed.wait(2)
    assert _request_threads() == before
    model.close()


def test_requests_run_on_the_servers_loop_while_it_serves_then_on_the_own_thread(
    server_loop: asyncio.AbstractEventLoop,
) -> None:
    from managed_agents.testing.scripted_model import ScriptedModelServer

    seen: list[bool] = []

    def on_event(_: object) -> None:  # called on the loop the request runs on
        seen.append(threading.current_thread() is not threading.main_thread() and _loop_is(server_loop))

    with ScriptedModelServer(["first", "second", "third"]) as server:
        # Given a model given the server's loop
        model = AnthropicMessagesModel(api_key="test", base_url=server.base_url, timeout=30)
        model.run_requests_on(server_loop)
        # When a request runs, Then it runs on that loop
        first = model.stream_message(dict(REQUEST), cancel=ThreadCancelToken(), on_event=on_event)
        assert seen and all(seen)
        # When another loop leaves (not the one given), Then requests stay on the server's loop
        model.run_requests_on(asyncio.new_event_loop(), leaving=True)
        seen.clear()
        second = model.stream_message(dict(REQUEST), cancel=ThreadCancelToken(), on_event=on_event)
        assert seen and all(seen)
        # When the server's loop leaves, Then the next request runs on the model's own loop thread
        model.run_requests_on(server_loop, leaving=True)
        seen.clear()
        third = model.stream_message(dict(REQUEST), cancel=ThreadCancelToken(), on_event=on_event)
        assert seen and not any(seen)
        assert _request_threads()
        model.close()
    assert [r.content[0]["text"] for r in (first, second, third)] == ["first", "second", "third"]


def _loop_is(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
