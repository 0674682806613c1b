"""The model adapter on a response that breaks after it started: every way a stream can end early is a retryable
`ModelError`, never an exception the harness does not know (which ended the turn in `unknown_error`).

The scripted model cuts its reply short (`drop_after_bytes`: the connection closes mid-body; `end_after_bytes`: the
body ends cleanly before `message_stop`) or pauses between chunks longer than the client's read timeout. Each case
runs on both adapter paths: the sync client (task Lambdas) and the async client behind a cancel token (embedded).
What the SDK raises for these differs between its versions (2.11 lets httpx2's own errors through, 2.17 wraps them),
so the adapter maps both.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken
from managed_agents.ports import ModelError
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.loopback_http import serve

REQUEST = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
TEXT = "a reply long enough to be cut in the middle of its text deltas " * 4

CUTS: dict[str, dict[str, Any]] = {
    "dropped mid-text": {"drop_after_bytes": 900},
    "dropped before message_start": {"drop_after_bytes": 20},
    "dropped after the headers": {"drop_after_bytes": 0},
    "ended mid-text": {"end_after_bytes": 900},
    "ended after message_start": {"end_after_bytes": 420},
    "ended inside message_start": {"end_after_bytes": 60},
    "ended with no body": {"end_after_bytes": 0},
}


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(fallback="error") as s:
        yield s


def _call(model: AnthropicMessagesModel, path: str) -> object:
    return model.stream_message(REQUEST, cancel=ThreadCancelToken() if path == "async" else None)


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("cut", list(CUTS))
def test_a_reply_cut_short_is_a_retryable_connection_error(
    model_server: ScriptedModelServer, cut: str, path: str
) -> None:
    # Given a model whose reply is cut short
    model_server.push({"content": [{"type": "text", "text": TEXT}], **CUTS[cut]})
    model = AnthropicMessagesModel(api_key="test", base_url=model_server.base_url, timeout=10)
    try:
        # When the adapter streams it
        with pytest.raises(ModelError) as info:
            _call(model, path)
    finally:
        model.close()
    # Then it is a retryable connection failure, named as such
    assert info.value.kind == "connection" and info.value.retryable
    assert "model" in info.value.message
    model_server.assert_complete()


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_stream_that_stalls_mid_response_is_a_retryable_timeout(model_server: ScriptedModelServer, path: str) -> None:
    # Given a model that starts its reply, then pauses longer than the client's read timeout between chunks
    model_server.push({"content": [{"type": "text", "text": TEXT}], "chunk_delay_ms": 1500})
    model = AnthropicMessagesModel(api_key="test", base_url=model_server.base_url, timeout=0.5)
    try:
        # When the adapter streams it
        with pytest.raises(ModelError) as info:
            _call(model, path)
    finally:
        model.close()
    # Then it is a retryable timeout
    assert info.value.kind == "timeout" and info.value.retryable


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_whole_reply_still_parses(model_server: ScriptedModelServer, path: str) -> None:
    # Given a reply that is not cut (the cut-off check must not reject a complete stream)
    model_server.push({"content": [{"type": "text", "text": TEXT}], "end_after_bytes": 1_000_000})
    model = AnthropicMessagesModel(api_key="test", base_url=model_server.base_url, timeout=10)
    try:
        # When the adapter streams it
        response = _call(model, path)
    finally:
        model.close()
    # Then the whole text and stop reason come back
    assert getattr(response, "stop_reason", None) == "end_turn"
    assert getattr(response, "content", None) == [{"type": "text", "text": TEXT}]


class _GarbledStream(BaseHTTPRequestHandler):
    """An endpoint that accepts the request and streams an event whose data is not JSON."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b'event: message_start\ndata: {"type": "message_start", "message": {bro\n\n')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_stream_that_cannot_be_parsed_is_a_retryable_server_error(path: str) -> None:
    # Given an endpoint whose stream is garbled
    with serve(_GarbledStream) as url:
        model = AnthropicMessagesModel(api_key="test", base_url=url, timeout=10)
        try:
            # When the adapter streams it
            with pytest.raises(ModelError) as info:
                _call(model, path)
        finally:
            model.close()
    # Then it is the endpoint's failure, retried like a 5xx
    assert info.value.kind == "server" and info.value.retryable
    assert "cannot be read" in info.value.message


@pytest.mark.parametrize("path", ["sync", "async"])
def test_an_error_event_of_an_unknown_type_mid_stream_is_retryable(
    model_server: ScriptedModelServer, path: str
) -> None:
    # Given a stream that breaks with an error event whose type the adapter does not know
    model_server.push({"stream_error": {"type": "mystery_error", "message": "something broke"}, "after_text": "hal"})
    model = AnthropicMessagesModel(api_key="test", base_url=model_server.base_url, timeout=10)
    try:
        # When the adapter streams it
        with pytest.raises(ModelError) as info:
            _call(model, path)
    finally:
        model.close()
    # Then it is a server failure (the endpoint had accepted the request), not a request that cannot succeed
    assert info.value.kind == "server" and info.value.retryable
    assert "something broke" in info.value.message
