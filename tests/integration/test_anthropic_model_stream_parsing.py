"""The model adapter against the scripted Messages server, over HTTP: a reply with thinking, text and a tool call
is read as the official SDK reads it, on both adapter paths (sync client for task Lambdas, async client behind a
cancel token for the embedded server), with every block event handed to the listener in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken
from managed_agents.testing.scripted_model import ScriptedModelServer

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
STEP: dict[str, Any] = {
    "content": [
        {"type": "thinking", "thinking": "The user greets me; " * 20, "signature": "sig-EqQBCgIYAhIM1gbcDa9GJwZA"},
        {"type": "text", "text": "Hello there! Let me look that up, ünïcödé ☃ included. " * 5},
        {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "days": [1, 2, 3], "unit": None, "deep": {"a": [{"b": "c"}]}},
        },
    ],
    "usage": {"input_tokens": 42, "output_tokens": 17, "cache_read_input_tokens": 5},
}


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(fallback="error") as s:
        yield s


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_reply_with_thinking_text_and_a_tool_call_reads_as_the_sdk_reads_it(
    model_server: ScriptedModelServer, path: str
) -> None:
    # Given the same scripted reply, twice
    model_server.push(STEP, STEP)
    with anthropic.Anthropic(api_key="test", base_url=model_server.base_url, max_retries=0) as client:
        sdk_events: list[dict[str, Any]] = []
        with client.messages.stream(**REQUEST) as stream:
            for event in stream:
                if event.type in ("content_block_start", "content_block_delta"):
                    sdk_events.append(
                        event.model_dump(
                            mode="json", exclude_none=True, include={"type", "index", "delta", "content_block"}
                        )
                    )
            message = stream.get_final_message()
    model = AnthropicMessagesModel(api_key="test", base_url=model_server.base_url, timeout=10)
    events: list[dict[str, Any]] = []
    try:
        # When the SDK's streaming helper reads one and the adapter the other
        response = model.stream_message(
            dict(REQUEST), cancel=ThreadCancelToken() if path == "async" else None, on_event=events.append
        )
    finally:
        model.close()
    # Then the adapter's message is the SDK's, block for block, and the listener saw the same events
    assert response.content == [b.model_dump(mode="json", exclude_none=True) for b in message.content]
    assert response.content[2]["input"]["unit"] is None
    assert (response.stop_reason, response.model) == ("tool_use", message.model)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (42, 17)
    assert response.usage.cache_read_input_tokens == 5
    assert events == sdk_events and len(events) > 10
    model_server.assert_complete()


# what the SDK's streaming helper adds, as telemetry, and what changes from one request to the next
_HELPER_HEADERS = {"x-stainless-helper-method", "x-stainless-stream-helper", "content-length", "host"}


@pytest.mark.parametrize("path", ["sync", "async"])
def test_the_request_is_the_one_the_sdk_sends(
    model_server: ScriptedModelServer, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a gateway header from the environment, and the SDK's streaming helper sending a request
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", "x-gateway-route: team-a")
    model_server.push("fine", "fine")
    with anthropic.Anthropic(api_key="sk-test-key", base_url=model_server.base_url, max_retries=0, timeout=10) as c:
        with c.messages.stream(**REQUEST) as stream:
            stream.get_final_message()
    model = AnthropicMessagesModel(api_key="sk-test-key", base_url=model_server.base_url, timeout=10)
    try:
        # When the adapter streams the same request
        response = model.stream_message(dict(REQUEST), cancel=ThreadCancelToken() if path == "async" else None)
    finally:
        model.close()
    # Then the endpoint got the same body (stream: true) and the same headers: credentials, API version, the
    # environment's custom headers (the async client names itself in two of them)
    assert response.content == [{"type": "text", "text": "fine"}]
    sdk, ours = model_server.requests
    assert ours["body"] == sdk["body"] == {**REQUEST, "stream": True}
    sdk_headers = {k: v for k, v in sdk["headers"].items() if k not in _HELPER_HEADERS}
    our_headers = {k: v for k, v in ours["headers"].items() if k not in _HELPER_HEADERS}
    if path == "async":  # the async client names itself
        sdk_headers["x-stainless-async"] = our_headers["x-stainless-async"]
        sdk_headers["user-agent"] = "Async" + sdk_headers["user-agent"]
    assert our_headers == sdk_headers
    assert our_headers["x-gateway-route"] == "team-a"
    assert "sk-test-key" in (our_headers.get("x-api-key", "") + our_headers.get("authorization", ""))
