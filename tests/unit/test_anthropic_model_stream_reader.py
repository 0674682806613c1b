"""The model adapter reads the Messages event stream itself: it must build what the SDK's streaming helper built.

Each stream below has the shape the Messages API documents (extended thinking with its signature, a tool call
whose input arrives as partial JSON, a server tool with its result block and cited text, redacted thinking, a
refusal with stop details, pings and an unknown event type). For each, the same bytes go through the official SDK
(`messages.stream` + `get_final_message`, as the adapter used it before, on an httpx2 mock transport) and through
the adapter: the final message and the block events handed to the listener must be equal. The reader is also fed
the bytes in every chunking (down to one byte at a time) and with CRLF and CR line ends, which must not change what
it reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import anthropic
import httpx2
import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel, _StreamReader
from managed_agents.ports import ModelError, ModelResponse, ModelUsage

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "hi"}],
}
Event = tuple[str, dict[str, Any]]


def _start(usage: dict[str, Any] | None = None) -> Event:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-4-6",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage
                or {
                    "input_tokens": 472,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 2,
                },
            },
        },
    )


def _block(index: int, block: dict[str, Any], *deltas: dict[str, Any]) -> list[Event]:
    out: list[Event] = [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
    ]
    out += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return out


def _end(stop_reason: str, usage: dict[str, Any], **delta: Any) -> list[Event]:
    return [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None, **delta},
                "usage": usage,
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def _text(text: str) -> dict[str, Any]:
    return {"type": "text_delta", "text": text}


def _json(part: str) -> dict[str, Any]:
    return {"type": "input_json_delta", "partial_json": part}


PING: Event = ("ping", {"type": "ping"})

STREAMS: dict[str, list[Event]] = {
    "text with pings": [
        _start(),
        PING,
        *_block(0, {"type": "text", "text": ""}, _text("Hello"), _text(", wor"), _text("ld! é ☃ 🎉")),
        PING,
        *_end("end_turn", {"output_tokens": 15}),
    ],
    "extended thinking then text": [
        _start(),
        *_block(
            0,
            {"type": "thinking", "thinking": "", "signature": ""},
            {"type": "thinking_delta", "thinking": "Let me solve this step by step:\n\n1. First break down 27 * 453"},
            {"type": "thinking_delta", "thinking": "\n2. 453 = 400 + 50 + 3"},
            {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
        ),
        *_block(1, {"type": "text", "text": ""}, _text("27 * 453 = 12,231")),
        *_end("end_turn", {"output_tokens": 23}),
    ],
    "redacted thinking": [
        _start(),
        *_block(
            0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr"}
        ),
        *_block(1, {"type": "text", "text": ""}, _text("Done.")),
        *_end("end_turn", {"output_tokens": 9}),
    ],
    "tool use with partial JSON input": [
        _start(),
        *_block(0, {"type": "text", "text": ""}, _text("Okay, let's check the weather for San Francisco, CA:")),
        *_block(
            1,
            {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}},
            _json(""),
            _json('{"location":'),
            _json(' "San Fra'),
            _json('ncisco, CA", "unit": "fahr'),
            _json('enheit", "days": [1, 2.5e0, null], "note": null}'),
        ),
        *_end("tool_use", {"output_tokens": 89}),
    ],
    "tool use with no input deltas": [
        _start(),
        *_block(0, {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "now", "input": {}}),
        *_end("tool_use", {"output_tokens": 12}),
    ],
    "server tool, its result and cited text": [
        _start(
            {"input_tokens": 2679, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 3}
        ),
        *_block(0, {"type": "text", "text": ""}, _text("I'll check the current weather in New York City for you.")),
        *_block(
            1,
            {"type": "server_tool_use", "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB", "name": "web_search", "input": {}},
            _json(""),
            _json('{"query'),
            _json('": "weather NY'),
            _json('C today"}'),
        ),
        *_block(
            2,
            {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
                "content": [
                    {
                        "type": "web_search_result",
                        "title": "Weather in New York City in May 2025 (New York)",
                        "url": "https://world-weather.info/forecast/usa/new_york/may-2025/",
                        "encrypted_content": "Ev0DCioIAxgCIiQ3NmU4ZmI4OC1k",
                        "page_age": None,
                    }
                ],
            },
        ),
        *_block(
            3,
            {"type": "text", "text": "", "citations": []},
            {
                "type": "citations_delta",
                "citation": {
                    "type": "web_search_result_location",
                    "cited_text": "Sunny, 75°F",
                    "url": "https://world-weather.info/forecast/usa/new_york/may-2025/",
                    "title": "Weather in New York City in May 2025 (New York)",
                    "encrypted_index": "EpMBCioIAxgCIiQ3",
                },
            },
            _text("It is sunny and 75°F."),
        ),
        *_end(
            "end_turn",
            {
                "input_tokens": 10682,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 510,
                "server_tool_use": {"web_search_requests": 1},
            },
        ),
    ],
    "document citations on a text block": [
        _start(),
        *_block(
            0,
            {"type": "text", "text": "", "citations": None},
            _text("The grass is green"),
            {
                "type": "citations_delta",
                "citation": {
                    "type": "char_location",
                    "cited_text": "The grass is green.",
                    "document_index": 0,
                    "document_title": None,
                    "start_char_index": 0,
                    "end_char_index": 20,
                },
            },
        ),
        *_end("end_turn", {"output_tokens": 7}),
    ],
    "refusal with stop details": [
        _start(),
        *_block(0, {"type": "text", "text": ""}, _text("I can't help with that.")),
        *_end("refusal", {"output_tokens": 8}, stop_details={"type": "refusal", "category": "cyber"}),
    ],
    "usage counted on message_delta": [
        _start({"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}),
        *_block(0, {"type": "text", "text": ""}, _text("ok")),
        *_end("max_tokens", {"input_tokens": 31, "cache_read_input_tokens": 4096, "output_tokens": 2}),
    ],
    "an event type this adapter does not know": [
        _start(),
        ("message_annotation", {"type": "message_annotation", "note": "future"}),
        *_block(0, {"type": "text", "text": ""}, _text("still read"), {"type": "future_delta", "value": 1}),
        *_end("end_turn", {"output_tokens": 3}),
    ],
}


def _sse(events: list[Event], newline: str = "\n") -> bytes:
    return "".join(
        f"event: {name}{newline}data: {json.dumps(data)}{newline}{newline}" for name, data in events
    ).encode()


def _client(body: bytes, chunk: int = 4096) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))

    return anthropic.Anthropic(
        api_key="test",
        base_url="http://model.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def _sdk_reading(body: bytes) -> tuple[ModelResponse, list[dict[str, Any]]]:
    """What the adapter returned when the SDK's streaming helper read the stream (its code before this change)."""
    forwarded: list[dict[str, Any]] = []
    with _client(body).messages.stream(**REQUEST) as stream:
        for event in stream:
            if event.type in ("content_block_start", "content_block_delta"):
                include = {"type", "index", "content_block", "delta"}
                forwarded.append(event.model_dump(mode="json", exclude_none=True, include=include))
        message = stream.get_final_message()
    usage, stop_details = message.usage, getattr(message, "stop_details", None)
    response = ModelResponse(
        content=[cast(dict[str, Any], b.model_dump(mode="json", exclude_none=True)) for b in message.content],
        stop_reason=message.stop_reason,
        usage=ModelUsage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        ),
        model=message.model,
        stop_details=stop_details.model_dump(mode="json") if stop_details is not None else None,
    )
    return response, forwarded


def _adapter_reading(body: bytes, chunk: int = 4096) -> tuple[ModelResponse, list[dict[str, Any]]]:
    forwarded: list[dict[str, Any]] = []
    model = AnthropicMessagesModel(client=_client(body, chunk))
    return model.stream_message(dict(REQUEST), on_event=forwarded.append), forwarded


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the SDK's dump of a delta type it lacks
@pytest.mark.parametrize("name", list(STREAMS))
def test_the_adapter_reads_a_stream_as_the_sdk_helper_did(name: str) -> None:
    # Given a stream of a shape the Messages API sends
    body = _sse(STREAMS[name])
    # When the SDK's streaming helper and the adapter each read it
    expected, expected_events = _sdk_reading(body)
    response, events = _adapter_reading(body, chunk=97)
    # Then the final message and the listener's events are the same
    assert response == expected
    assert events == expected_events
    assert response.content  # the streams are not trivially empty


def test_a_tool_input_keeps_its_nulls_and_numbers() -> None:
    # Given a tool call whose input holds nulls, a float written with an exponent and unicode
    body = _sse(STREAMS["tool use with partial JSON input"])
    # When the adapter reads it
    response, _ = _adapter_reading(body)
    # Then the input is the JSON the deltas spelled, nulls included (a tool may be called with an explicit null)
    assert response.content[1]["input"] == {
        "location": "San Francisco, CA",
        "unit": "fahrenheit",
        "days": [1, 2.5, None],
        "note": None,
    }
    assert response.stop_reason == "tool_use"


def _read(body: bytes, sizes: Iterator[int]) -> tuple[ModelResponse, list[dict[str, Any]]]:
    reader = _StreamReader(200, forward=True)
    events: list[dict[str, Any]] = []
    at = 0
    while at < len(body):
        size = next(sizes)
        events += reader.feed(body[at : at + size])
        at += size
    events += reader.end()
    assert reader.failure is None and reader.complete
    return reader.response(), events


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_chunking_and_line_ends_do_not_change_what_is_read(newline: str, size: int) -> None:
    # Given the longest stream, with one kind of line end, cut into chunks of one size (1: every byte alone, so
    # every multi-byte character and every CRLF is split)
    events = STREAMS["server tool, its result and cited text"]
    expected = _read(_sse(events), iter([1 << 30]))
    # When the reader is fed those chunks
    got = _read(_sse(events, newline), iter(lambda: size, None))
    # Then it reads the same message and the same block events
    assert got == expected


def test_comments_extra_fields_and_multi_line_data_are_sse() -> None:
    # Given a stream with a comment, id and retry fields, and an event whose JSON is split over two data lines
    body = (
        b": keep-alive\n\n"
        + _sse([_start()])
        + b'id: 7\nretry: 100\nevent: content_block_start\ndata: {"type": "content_block_start",\n'
        + b'data:  "index": 0, "content_block": {"type": "text", "text": "hi"}}\n\n'
        + _sse([("content_block_stop", {"type": "content_block_stop", "index": 0}), *_end("end_turn", {})])
    )
    # When the reader reads it
    response, _ = _read(body, iter([1 << 30]))
    # Then the data lines were joined with a newline, and the rest skipped
    assert response.content == [{"type": "text", "text": "hi"}]


def _failure(body: bytes) -> ModelError:
    reader = _StreamReader(200, forward=False)
    reader.feed(body)
    reader.end()
    assert reader.failure is not None
    return reader.failure


@pytest.mark.parametrize(
    "events",
    [
        [("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})],
        [_start(), ("content_block_delta", {"type": "content_block_delta", "index": 3, "delta": _text("x")})],
        [_start(), ("message_delta", {"type": "message_delta"})],
        [_start(), ("content_block_start", ["not", "an", "object"])],
        [
            _start(),
            *_block(0, {"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}, _json('{"a": ')),
        ],
    ],
    ids=[
        "a block before message_start",
        "a delta for no block",
        "a delta without its delta",
        "not an object",
        "bad tool JSON",
    ],
)
def test_a_stream_out_of_shape_is_a_retryable_server_error(events: list[Event]) -> None:
    # Given a stream that breaks the Messages event grammar
    # When the reader reads it
    failure = _failure(_sse(events))
    # Then it is the endpoint's failure, retried like a 5xx
    assert failure.kind == "server" and failure.retryable
    assert "cannot be read" in failure.message


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            "overloaded",
            "Overloaded",
        ),
        (
            b'{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}',
            "rate_limited",
            "slow down",
        ),
        (b'{"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}', "server", "bad"),
        (b"upstream broke", "server", "upstream broke"),
    ],
)
def test_an_error_event_is_named_as_the_sdk_named_it(data: bytes, kind: str, message: str) -> None:
    # Given a stream that breaks with an error event after it started
    body = _sse([_start(), *_block(0, {"type": "text", "text": ""}, _text("hal"))]) + b"event: error\ndata: " + data
    body += b"\n\n"
    # When the SDK's helper and the reader read it
    with pytest.raises(anthropic.APIStatusError) as sdk:
        _sdk_reading(body)
    failure = _failure(body)
    # Then the reader's error is the one the adapter made of the SDK's (kind, message, status)
    assert (failure.kind, failure.message, failure.status) == (kind, message, 200)
    assert sdk.value.status_code == 200


def test_block_events_before_an_error_in_the_same_chunk_reach_the_listener() -> None:
    # Given one chunk with a block start, a delta and then an error event
    body = _sse([_start(), *_block(0, {"type": "text", "text": ""}, _text("hal"))[:2]])
    body += b'event: error\ndata: {"type": "error", "error": {"type": "api_error", "message": "x"}}\n\n'
    events: list[dict[str, Any]] = []
    model = AnthropicMessagesModel(client=_client(body))
    # When the adapter reads it
    with pytest.raises(ModelError) as info:
        model.stream_message(dict(REQUEST), on_event=events.append)
    # Then the listener saw both block events, then the error was raised
    assert [e["type"] for e in events] == ["content_block_start", "content_block_delta"]
    assert info.value.kind == "server"


def test_what_the_listener_raises_is_not_made_a_model_error() -> None:
    # Given a listener that fails (the harness's own bug, not the endpoint's)
    body = _sse(STREAMS["text with pings"])

    def listener(event: dict[str, Any]) -> None:
        raise KeyError("the listener's own failure")

    model = AnthropicMessagesModel(client=_client(body))
    # When the adapter hands it an event
    # Then its exception comes out as it is
    with pytest.raises(KeyError, match="the listener's own failure"):
        model.stream_message(dict(REQUEST), on_event=listener)


def test_an_event_the_stream_ends_in_is_dropped_so_the_stream_is_cut_short() -> None:
    # Given a stream whose message_stop has no blank line after it (the body ended inside the event)
    body = _sse(STREAMS["text with pings"]).rstrip(b"\n")
    model = AnthropicMessagesModel(client=_client(body))
    # When the adapter reads it
    with pytest.raises(ModelError) as info:
        model.stream_message(dict(REQUEST))
    # Then it is a stream cut short, as with the SDK (which dropped the unterminated event too)
    assert info.value.kind == "connection" and "no message_stop" in info.value.message


def test_the_request_body_is_encoded_as_the_sdk_encodes_it() -> None:
    """The adapter hands the SDK a ready body (`content=`) where the SDK takes one: the bytes must be the ones the
    SDK's own encoder makes of the same request (non-ASCII text kept as is, compact separators, `stream: true`)."""
    from anthropic._utils._json import openapi_dumps

    from managed_agents.adapters import anthropic_model

    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Réponds en français — « vite »"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "ls 🗂"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls", "n": 1.5}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a\nb", "is_error": False}],
            },
        ],
        "tools": [{"name": "bash", "input_schema": {"type": "object", "properties": {}}}],
    }
    body = anthropic_model._body(request)
    expected = openapi_dumps({**request, "stream": True})
    assert body == ({"content": expected} if anthropic_model._TAKES_CONTENT else {"body": {**request, "stream": True}})
