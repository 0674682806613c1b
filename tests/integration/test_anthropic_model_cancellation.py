"""The model adapter's cancellation: an interrupted request never lingers at the model endpoint.

The endpoint here is a bare TCP listener that reads a request and never answers, so the adapter is stuck
waiting for response headers, the moment the sync SDK cannot be interrupted in.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken
from managed_agents.ports import Cancelled, ModelResponse

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
