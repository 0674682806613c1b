"""The model request's body: earlier messages encoded once and kept by identity within a budget
(adapters/anthropic_model.py `_EncodedMessages`), and file blocks inlined into new messages only where a message has
one (harness/file_blocks.py), so that the transcript's other messages stay the objects the adapter kept."""

from __future__ import annotations

import json
from typing import Any

from anthropic._utils._json import openapi_dumps

from managed_agents.adapters import anthropic_model
from managed_agents.adapters.anthropic_model import _EncodedMessages
from managed_agents.harness.file_blocks import inline_file_sources


def _message(i: int) -> dict[str, Any]:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": f"m{i} " * 20}]}


def test_the_body_is_the_sdks_bytes_turn_after_turn() -> None:
    transcript = [_message(i) for i in range(6)]
    for n in (2, 4, 6):  # (the same message objects again, as a session's next requests)
        request = {"model": "m", "max_tokens": 5, "messages": transcript[:n], "tools": [{"name": "t"}]}
        assert anthropic_model._body(request) == {"content": openapi_dumps({**request, "stream": True})}


def test_kept_encodings_stay_within_the_budget_and_an_evicted_one_is_encoded_again() -> None:
    messages = [_message(i) for i in range(10)]
    sizes = [len(json.dumps(m, separators=(",", ":"))) for m in messages]
    kept = _EncodedMessages(budget=sum(sizes[6:9]), largest=max(sizes))
    first = kept.encode_list(messages)
    # Then at most three of the nine earlier messages are kept, the latest used
    assert kept._size <= kept.budget and len(kept._kept) == 3
    assert [m for m, _ in kept._kept.values()] == messages[6:9]
    # and encoding again (the evicted ones afresh) gives the same JSON
    assert kept.encode_list(messages) == first == json.dumps(messages, separators=(",", ":"), ensure_ascii=False)


def test_file_blocks_make_new_messages_only_where_they_are() -> None:
    plain = _message(0)
    with_file = {
        "role": "user",
        "content": [
            {"type": "text", "text": "see"},
            {"type": "document", "source": {"type": "file", "file_id": "file_1"}},
        ],
    }
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t", "content": [plain["content"][0]]}],
    }
    request = {"model": "m", "messages": [plain, with_file, result]}
    out = inline_file_sources(request, "ws", lambda ws, file_id: ("text/plain", b"hello"))
    messages = out["messages"]
    # Then the messages without a file block are the same objects, the one with it a new dict with the text inlined
    assert messages[0] is plain and messages[2] is result
    assert messages[1] is not with_file and messages[1]["content"][0] is with_file["content"][0]
    assert messages[1]["content"][1]["source"] == {"type": "text", "media_type": "text/plain", "data": "hello"}
    assert with_file["content"][1]["source"]["type"] == "file"  # (the transcript's own is untouched)


def test_a_large_message_is_encoded_and_not_kept() -> None:
    kept = _EncodedMessages(budget=10_000, largest=150)
    large = {"role": "user", "content": [{"type": "text", "text": "x" * 200}]}
    small = _message(1)
    text = kept.encode_list([large, small, _message(2)])
    assert [m for m, _ in kept._kept.values()] == [small]
    assert json.loads(text)[0] == large


def test_a_smaller_budget_drops_the_least_recently_used_at_once() -> None:
    kept = _EncodedMessages(budget=10_000, largest=1_000)
    messages = [_message(i) for i in range(6)]
    kept.encode_list(messages)
    assert len(kept._kept) == 5
    sizes = [len(json.dumps(m, separators=(",", ":"))) for m in messages]
    kept.resize(sum(sizes[3:5]))
    assert [m for m, _ in kept._kept.values()] == messages[3:5] and kept._size <= kept.budget


def test_the_lambda_model_keeps_a_small_budget() -> None:
    from managed_agents import aws_runtime

    before = anthropic_model._ENCODED_MESSAGES.budget
    try:
        # (from the embedded server's budget: another test of this process may have built a Lambda's model already)
        anthropic_model.keep_encoded_messages(16 * 1024 * 1024)
        aws_runtime.sdk_model("key", 30)
        assert anthropic_model._ENCODED_MESSAGES.budget == aws_runtime.LAMBDA_ENCODED_MESSAGES_BUDGET < 16 * 1024 * 1024
    finally:
        anthropic_model.keep_encoded_messages(before)
