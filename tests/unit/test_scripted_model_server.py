"""The scripted Messages API fake, driven only through the official `anthropic` SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from managed_agents.testing.loopback import free_port
from managed_agents.testing.scripted_model import ScriptedModelServer

MODEL = "claude-test-model"


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


def client_for(server: ScriptedModelServer, **kwargs: Any) -> anthropic.Anthropic:
    kwargs.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=server.base_url, api_key="test", **kwargs)


def text_of(message: anthropic.types.Message) -> str:
    """The text of a reply made of exactly one text block."""
    assert len(message.content) == 1
    block = message.content[0]
    assert block.type == "text"
    return block.text


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as srv:
        yield srv


@pytest.fixture
def client(server: ScriptedModelServer) -> Iterator[anthropic.Anthropic]:
    with client_for(server) as c:
        yield c


# --- replies ------------------------------------------------------------------------------------------------------


def test_streaming_text_reply(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a one-step script with a bare-string reply long enough to be split into several deltas
    text = "Hello! I am the scripted model, and this sentence spans several text deltas."
    server.push(text)

    # When the SDK streams it
    with client.messages.stream(model=MODEL, max_tokens=100, messages=user("hi")) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()

    # Then the deltas concatenate to the scripted text and the final message is well formed
    assert len(deltas) > 1
    assert "".join(deltas) == text
    assert final.id.startswith("msg_")
    assert final.model == MODEL
    assert final.role == "assistant"
    assert [b.type for b in final.content] == ["text"]
    assert text_of(final) == text
    assert final.stop_reason == "end_turn"
    assert final.stop_sequence is None
    assert final.usage.input_tokens >= 1
    assert final.usage.output_tokens == len(text) // 4
    assert server.remaining() == 0


def test_non_streaming_reply(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a reply step written as a dict
    server.push({"content": [{"type": "text", "text": "plain JSON reply"}]})

    # When the SDK calls messages.create without streaming
    message = client.messages.create(model=MODEL, max_tokens=100, messages=user("hi"))

    # Then the SDK parses a complete Message
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.content[0].type == "text"
    assert message.content[0].text == "plain JSON reply"
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.output_tokens >= 1
    assert message.usage.cache_read_input_tokens == 0
    assert message._request_id is not None and message._request_id.startswith("req_")
    assert server.requests[-1]["body"].get("stream") in (None, False)


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "create"])
def test_thinking_text_and_tool_use_reply(
    server: ScriptedModelServer, client: anthropic.Anthropic, streaming: bool
) -> None:
    # Given a reply with thinking (explicit signature), text and two tool calls (one with a generated id)
    tool_input = {"command": "ls -la /workspace", "env": {"A": "1"}, "flags": [1, 2, 3], "note": "x" * 80}
    server.push(
        {
            "content": [
                {"type": "thinking", "thinking": "Let me list the files first, then read them.", "signature": "sig-1"},
                {"type": "text", "text": "Listing files."},
                {"type": "tool_use", "id": "toolu_fixed", "name": "bash", "input": tool_input},
                {"type": "tool_use", "name": "read", "input": {"path": "a.txt"}},
            ]
        }
    )

    # When the SDK fetches it, streaming or not
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 2000, "messages": user("list files")}
    if streaming:
        with client.messages.stream(**kwargs) as stream:
            event_types = {event.type for event in stream}
            message = stream.get_final_message()
        assert {"message_start", "content_block_start", "content_block_delta", "message_delta"} <= event_types
    else:
        message = client.messages.create(**kwargs)

    # Then every block is parsed, tool inputs are dicts, ids and signatures are present
    thinking, text, bash, read = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "Let me list the files first, then read them."
    assert thinking.signature == "sig-1"
    assert text.type == "text" and text.text == "Listing files."
    assert bash.type == "tool_use" and read.type == "tool_use"
    assert bash.id == "toolu_fixed" and bash.name == "bash"
    assert bash.input == tool_input
    assert read.name == "read" and read.input == {"path": "a.txt"}
    assert read.id.startswith("toolu_") and len(read.id) > len("toolu_")
    assert message.stop_reason == "tool_use"


def test_thinking_signature_is_generated_when_omitted(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a thinking block without a signature
    server.push({"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "ok"}]})

    # When streamed
    with client.messages.stream(model=MODEL, max_tokens=100, messages=user("x")) as stream:
        message = stream.get_final_message()

    # Then the SDK sees a non-empty signature delta
    assert message.content[0].type == "thinking"
    assert isinstance(message.content[0].signature, str) and len(message.content[0].signature) > 10


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ({"content": [{"type": "text", "text": "done"}]}, "end_turn"),
        ({"content": [{"type": "tool_use", "name": "bash", "input": {}}]}, "tool_use"),
        ({"content": [{"type": "text", "text": "trunc"}], "stop_reason": "max_tokens"}, "max_tokens"),
        ({"content": [{"type": "text", "text": "no"}], "stop_reason": "refusal"}, "refusal"),
    ],
    ids=["text-defaults-end_turn", "tool-defaults-tool_use", "explicit-max_tokens", "explicit-refusal"],
)
def test_stop_reason_defaults_and_overrides(
    server: ScriptedModelServer, client: anthropic.Anthropic, step: dict[str, Any], expected: str
) -> None:
    # Given a reply with or without an explicit stop_reason, twice (stream and create)
    server.push(step, step)

    # When fetched both ways
    with client.messages.stream(model=MODEL, max_tokens=100, messages=user("x")) as stream:
        streamed = stream.get_final_message()
    created = client.messages.create(model=MODEL, max_tokens=100, messages=user("x"))

    # Then both report the expected stop_reason
    assert streamed.stop_reason == expected
    assert created.stop_reason == expected


def test_usage_overrides_win(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a reply with usage overrides
    server.push({"content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": 1234, "output_tokens": 56}})

    # When streamed
    with client.messages.stream(model=MODEL, max_tokens=100, messages=user("x")) as stream:
        message = stream.get_final_message()

    # Then the overrides are what the SDK reports
    assert message.usage.input_tokens == 1234
    assert message.usage.output_tokens == 56


def test_count_tokens_estimates_chars_over_four(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a request with a long user message
    messages = user("a" * 4000)

    # When the SDK counts its tokens
    counted = client.messages.count_tokens(model=MODEL, messages=messages)

    # Then the estimate is about chars/4, and no script step was needed
    assert 1000 <= counted.input_tokens <= 1030
    assert server.requests[-1]["path"] == "/v1/messages/count_tokens"


# --- errors -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "exc_type"),
    [
        (429, "rate_limit_error", anthropic.RateLimitError),
        (529, "overloaded_error", anthropic.OverloadedError),
        (500, "api_error", anthropic.InternalServerError),
        (400, "invalid_request_error", anthropic.BadRequestError),
    ],
)
def test_error_steps_raise_the_sdk_error(
    server: ScriptedModelServer, status: int, kind: str, exc_type: type[anthropic.APIStatusError]
) -> None:
    # Given an error step, and a client that would retry if the server allowed it
    server.push({"error": {"status": status, "type": kind, "message": f"scripted {status}"}})
    client = client_for(server, max_retries=3)

    # When the SDK calls the API
    with pytest.raises(exc_type) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))

    # Then it raises the matching error with the Anthropic error body, and did not retry on its own
    err = caught.value
    assert err.status_code == status
    assert isinstance(err.body, dict)
    assert err.body["type"] == "error"
    assert err.body["error"] == {"type": kind, "message": f"scripted {status}"}
    assert err.request_id is not None and err.request_id.startswith("req_")
    assert err.response.headers["x-should-retry"] == "false"
    if status == 429:
        assert err.response.headers["retry-after"] == "0"
    assert len(server.requests) == 1


def test_error_status_is_derived_from_type(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given an error step naming only its type
    server.push({"error": {"type": "overloaded_error"}})

    # When called (streaming this time)
    with pytest.raises(anthropic.OverloadedError) as caught:
        with client.messages.stream(model=MODEL, max_tokens=10, messages=user("x")) as stream:
            stream.get_final_message()

    # Then the status is 529
    assert caught.value.status_code == 529
    assert issubclass(anthropic.OverloadedError, anthropic.InternalServerError)


def test_mid_stream_error_raises_during_iteration(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a mid-stream error after some partial text
    partial = "I was about to say something long and important when"
    server.push({"stream_error": {"type": "overloaded_error", "message": "Overloaded"}, "after_text": partial})

    # When the SDK iterates the stream
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(model=MODEL, max_tokens=100, messages=user("x")) as stream:
            for chunk in stream.text_stream:
                received.append(chunk)

    # Then the partial text arrived before the error event, whose body is the Anthropic error
    assert "".join(received) == partial
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_mid_stream_error_on_non_streaming_request_is_an_http_error(
    server: ScriptedModelServer, client: anthropic.Anthropic
) -> None:
    # Given a mid-stream error step
    server.push({"stream_error": {"type": "overloaded_error", "message": "Overloaded"}, "after_text": "abc"})

    # When a non-streaming request consumes it
    with pytest.raises(anthropic.OverloadedError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))

    # Then it is answered as the equivalent HTTP error
    assert caught.value.status_code == 529


def test_drop_after_bytes_closes_the_connection_mid_body(
    server: ScriptedModelServer, client: anthropic.Anthropic
) -> None:
    # Given a reply dropped after its first 900 bytes (message_start and some of the text)
    text = "a reply long enough to be cut in the middle of its text deltas " * 4
    server.push({"content": [{"type": "text", "text": text}], "drop_after_bytes": 900})

    # When the SDK streams it
    received: list[str] = []
    with pytest.raises(anthropic.APIConnectionError, match="incomplete chunked read"):
        with client.messages.stream(model=MODEL, max_tokens=100, messages=user("x")) as stream:
            received.extend(stream.text_stream)

    # Then part of the text arrived before the connection broke, and the next request is served normally
    assert received and text.startswith("".join(received)) and "".join(received) != text
    server.push("after the drop")
    assert text_of(client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))) == "after the drop"


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "create"])
def test_end_after_bytes_ends_the_body_early(server: ScriptedModelServer, streaming: bool) -> None:
    # Given a reply whose body ends cleanly after 40 bytes
    server.push({"content": [{"type": "text", "text": "never whole"}], "end_after_bytes": 40})
    # When it is requested
    body = {"model": MODEL, "max_tokens": 10, "messages": user("x"), "stream": streaming}
    response = httpx2.post(f"{server.base_url}/v1/messages", json=body, headers={"x-api-key": "test"})
    # Then the response is a complete HTTP message whose body holds only the first 40 bytes of the reply
    assert response.status_code == 200 and len(response.content) == 40
    assert response.content.startswith(b"event: message_start" if streaming else b'{"id":"msg_')
    server.assert_complete()


# --- selection and fallback ---------------------------------------------------------------------------------------


def test_match_selects_steps_across_interleaved_conversations(
    server: ScriptedModelServer, client: anthropic.Anthropic
) -> None:
    # Given steps for two conversations, all of alpha's first, plus an unmatched catch-all at the end
    server.push(
        {"match": "alpha", "content": [{"type": "text", "text": "alpha-1"}]},
        {"match": "alpha", "content": [{"type": "text", "text": "alpha-2"}]},
        {"match": "beta", "content": [{"type": "text", "text": "beta-1"}]},
        {"match": "beta", "content": [{"type": "text", "text": "beta-2"}]},
        "anyone",
    )

    def ask(messages: Any) -> str:
        reply = client.messages.create(model=MODEL, max_tokens=10, messages=messages)
        assert reply.content[0].type == "text"
        return reply.content[0].text

    # When the conversations interleave, beta first, and alpha's second turn is a tool_result
    got = [
        ask(user("beta: hello")),
        ask(user("alpha: hello")),
        ask(user("beta: again")),
        ask(
            [
                {"role": "user", "content": "start"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "alpha"}],
                        }
                    ],
                },
            ]
        ),
        ask(user("gamma")),
    ]

    # Then each conversation got its own steps in order, and the unmatched step went to the other caller
    assert got == ["beta-1", "alpha-1", "beta-2", "alpha-2", "anyone"]
    assert [r["step"] for r in server.requests] == [2, 0, 3, 1, 4]


def test_concurrent_sessions_with_latency_share_one_server() -> None:
    # Given 20 sessions x 3 matched steps and 50 ms latency per reply
    sessions, turns = 20, 3
    script = [
        {"match": f"[s{s}]", "content": [{"type": "text", "text": f"session-{s} turn-{t}"}]}
        for t in range(turns)
        for s in range(sessions)
    ]
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    with ScriptedModelServer(script, latency_ms=50) as srv, client_for(srv) as client:

        def run(session: int) -> None:
            try:
                for _ in range(turns):
                    with client.messages.stream(model=MODEL, max_tokens=10, messages=user(f"[s{session}]")) as stream:
                        results.setdefault(session, []).append(text_of(stream.get_final_message()))
            except BaseException as exc:
                errors.append(exc)

        # When all sessions run at once
        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(s,)) for s in range(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - started

        # Then each session saw its own turns in order, latency overlapped, and the script is used up
        assert errors == []
        assert results == {s: [f"session-{s} turn-{t}" for t in range(turns)] for s in range(sessions)}
        assert elapsed < sessions * turns * 0.05
        srv.assert_complete()


def test_fallback_echo_replies_with_last_user_text() -> None:
    # Given an empty script with echo fallback
    with ScriptedModelServer(fallback="echo") as srv, client_for(srv) as client:
        # When the last user message is a tool_result with text
        messages: Any = [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "tool said hi"}]},
        ]
        created = client.messages.create(model=MODEL, max_tokens=10, messages=messages)
        with client.messages.stream(model=MODEL, max_tokens=10, messages=user("streamed")) as stream:
            streamed = stream.get_final_message()

    # Then it echoes the last user text
    assert created.content[0].type == "text" and created.content[0].text == "echo: tool said hi"
    assert streamed.content[0].type == "text" and streamed.content[0].text == "echo: streamed"
    assert created.stop_reason == "end_turn"


def test_fallback_error_fails_unexpected_calls(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a script with one step (programmatic default fallback is "error")
    server.push("only one")
    client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))

    # When a second, unexpected call arrives
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("unexpected call"))

    # Then it fails with an api_error saying the script is exhausted
    assert caught.value.status_code == 500
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "api_error"
    assert "exhausted" in caught.value.body["error"]["message"]
    assert "unexpected call" in caught.value.body["error"]["message"]


def test_unmatched_steps_are_not_eligible(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given only a step matching "needle"
    server.push({"match": "needle", "content": [{"type": "text", "text": "found"}]})

    # When a request without the needle arrives, then one with it
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("haystack"))
    reply = client.messages.create(model=MODEL, max_tokens=10, messages=user("a needle here"))

    # Then only the matching request consumed it
    assert reply.content[0].type == "text" and reply.content[0].text == "found"
    assert server.remaining() == 0


# --- prompt caching -----------------------------------------------------------------------------------------------


def test_cache_simulation_creates_then_reads(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a long system prompt marked for caching, and the same request sent twice
    server.push("one", "two")
    system: Any = [{"type": "text", "text": "You are helpful. " * 200, "cache_control": {"type": "ephemeral"}}]

    # When both are sent
    first = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=user("q"))
    with client.messages.stream(model=MODEL, max_tokens=10, system=system, messages=user("q")) as stream:
        second = stream.get_final_message()

    # Then the first writes the cache, the second reads the same prefix back, totals being equal
    assert first.usage.cache_creation_input_tokens is not None and first.usage.cache_creation_input_tokens > 800
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens
    assert 0 < first.usage.input_tokens < 50


def test_cache_simulation_growing_conversation_and_top_level_marker(
    server: ScriptedModelServer, client: anthropic.Anthropic
) -> None:
    # Given a conversation cached through its first turn by a top-level cache_control
    server.push("a", "b", "c")
    tools: Any = [{"name": "bash", "description": "run " * 100, "input_schema": {"type": "object"}}]
    turn1 = user("first question " * 50)
    first = client.messages.create(
        model=MODEL, max_tokens=10, tools=tools, messages=turn1, extra_body={"cache_control": {"type": "ephemeral"}}
    )

    # When the conversation grows and marks its new last block
    turn2 = [
        *turn1,
        {"role": "assistant", "content": "answer " * 50},
        {"role": "user", "content": [{"type": "text", "text": "follow-up", "cache_control": {"type": "ephemeral"}}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=10, tools=tools, messages=turn2)
    # and the same conversation is sent without any marker
    unmarked = [*turn2[:-1], {"role": "user", "content": [{"type": "text", "text": "follow-up"}]}]
    third = client.messages.create(model=MODEL, max_tokens=10, tools=tools, messages=unmarked)

    # Then the first created the cache, the second read the first's prefix and cached only the new part
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation_input_tokens is not None and first.usage.cache_creation_input_tokens > 100
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens is not None and second.usage.cache_creation_input_tokens > 0
    # and the unmarked request neither reads nor writes
    assert third.usage.cache_read_input_tokens == 0 and third.usage.cache_creation_input_tokens == 0
    assert third.usage.input_tokens > second.usage.input_tokens


# --- bookkeeping --------------------------------------------------------------------------------------------------


def test_requests_are_recorded_with_body_and_headers(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given a scripted reply
    server.push("recorded")
    messages = user("what was I sent?")

    # When the SDK streams a request with a system prompt and a tool
    tools: Any = [{"name": "bash", "description": "run", "input_schema": {"type": "object"}}]
    with client.messages.stream(model=MODEL, max_tokens=42, system="sys", tools=tools, messages=messages) as stream:
        stream.get_final_message()

    # Then the body and headers the model was sent are recorded
    recorded = server.requests[-1]
    assert recorded["path"] == "/v1/messages"
    assert recorded["body"]["messages"] == messages
    assert recorded["body"]["system"] == "sys"
    assert recorded["body"]["tools"] == tools
    assert recorded["body"]["max_tokens"] == 42
    assert recorded["body"]["stream"] is True
    headers = recorded["headers"]
    assert headers.get("x-api-key") == "test" or headers.get("authorization") == "Bearer test"
    assert "anthropic-version" in recorded["headers"]
    assert recorded["step"] == 0


def test_assert_complete_push_and_remaining(server: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    # Given two steps pushed at runtime
    server.push("one", {"match": "later", "content": [{"type": "text", "text": "two"}]})
    assert server.remaining() == 2

    # When only one is consumed
    client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))

    # Then assert_complete names the leftover step
    assert server.remaining() == 1
    with pytest.raises(AssertionError, match=r"1 scripted step\(s\) never consumed: #1 reply match='later'"):
        server.assert_complete()

    # And passes once it is consumed
    client.messages.create(model=MODEL, max_tokens=10, messages=user("later"))
    server.assert_complete()
    assert server.remaining() == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"content": "not a list"},
        {"content": [{"type": "image"}]},
        {"content": [{"type": "tool_use", "input": {}}]},
        {"content": [], "stop_reason": "done"},
        {"contnet": []},
        {"content": [], "error": {"status": 500}},
        {"delay_ms": -1, "content": []},
        {"error": {"status": 500}, "drop_after_bytes": 10},
        {"content": [], "drop_after_bytes": -1},
        {"content": [], "end_after_bytes": True},
        {"content": [], "drop_after_bytes": 1, "end_after_bytes": 1},
        42,
    ],
)
def test_invalid_steps_are_rejected_when_pushed(server: ScriptedModelServer, bad: Any) -> None:
    # Given / When a malformed step is pushed / Then it is rejected at once, not at request time
    with pytest.raises(ValueError, match="invalid script step"):
        server.push(bad)
    assert server.remaining() == 0


# --- timing -------------------------------------------------------------------------------------------------------


def test_delay_ms_and_latency_are_honoured() -> None:
    # Given 50 ms default latency, a step overriding it with 400 ms, and a step with chunk delays
    script: list[Any] = [
        {"content": [{"type": "text", "text": "slow"}], "delay_ms": 400},
        "default latency",
        {"content": [{"type": "text", "text": "x" * 100}], "delay_ms": 0, "chunk_delay_ms": 40},
    ]
    with ScriptedModelServer(script, latency_ms=50) as srv, client_for(srv) as client:
        # When each is requested and timed
        timings = []
        for _ in range(2):
            started = time.monotonic()
            client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))
            timings.append(time.monotonic() - started)
        started = time.monotonic()
        with client.messages.stream(model=MODEL, max_tokens=10, messages=user("x")) as stream:
            first_event_at = None
            for _event in stream:
                first_event_at = first_event_at or time.monotonic() - started
        streamed_total = time.monotonic() - started

    # Then each call took at least its delay (generous upper bounds for slow CI machines)
    assert 0.39 <= timings[0] < 3
    assert 0.045 <= timings[1] < 2
    assert first_event_at is not None and first_event_at < streamed_total - 0.2  # events arrived incrementally
    assert streamed_total >= 0.04 * 8  # 100 chars -> 5 deltas + start/ping/stop/... events, 40 ms apart


def test_hang_lets_client_time_out_and_the_next_step_still_serves() -> None:
    # Given a 5 s hang followed by a normal reply
    with ScriptedModelServer([{"hang_ms": 5000}, "after the hang"]) as srv:
        # When a client with a short timeout calls
        with client_for(srv, timeout=0.3) as impatient:
            started = time.monotonic()
            with pytest.raises(anthropic.APITimeoutError):
                impatient.messages.create(model=MODEL, max_tokens=10, messages=user("x"))
            waited = time.monotonic() - started
        # and then retries
        with client_for(srv) as client:
            reply = client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))
        stop_started = time.monotonic()

    # Then the client timed out, the hang step was consumed, and the next step answered
    assert 0.25 <= waited < 3
    assert reply.content[0].type == "text" and reply.content[0].text == "after the hang"
    assert time.monotonic() - stop_started < 3
    assert len(srv.requests) == 2


def test_short_hang_without_reply_answers_timeout_error(
    server: ScriptedModelServer, client: anthropic.Anthropic
) -> None:
    # Given a short hang with nothing after it
    server.push({"hang_ms": 100})

    # When the client waits it out
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))

    # Then it gets a 504 timeout_error after the hang
    assert time.monotonic() - started >= 0.09
    assert caught.value.status_code == 504
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "timeout_error"


# --- command line -------------------------------------------------------------------------------------------------


def test_python_dash_m_entry_point_serves_a_script(tmp_path: Path) -> None:
    # Given a script file and a free port
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"content": [{"type": "text", "text": "from the file"}]}]))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "managed_agents.testing.scripted_model",
        "--port",
        str(port),
        "--script",
        str(script),
        "--latency-ms",
        "10",
    ]

    # When it is started as a subprocess
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="test", max_retries=0, timeout=5)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
            try:
                counted = client.messages.count_tokens(model=MODEL, messages=user("ping"))
                break
            except anthropic.APIConnectionError:
                assert time.monotonic() < deadline, "the scripted model never answered"
                time.sleep(0.1)
        scripted = client.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
        with client.messages.stream(model=MODEL, max_tokens=10, messages=user("and then?")) as stream:
            echoed = stream.get_final_message()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)

    # Then it answered from the script, fell back to echo, and announced its URL
    assert counted.input_tokens >= 1
    assert scripted.content[0].type == "text" and scripted.content[0].text == "from the file"
    assert echoed.content[0].type == "text" and echoed.content[0].text == "echo: and then?"
    assert f"ANTHROPIC_BASE_URL=http://127.0.0.1:{port}" in out
    assert len(out.strip().splitlines()) == 1
    assert "Traceback" not in err
