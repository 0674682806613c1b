"""A session's model request encodes only the messages its transcript gained since the last one: the earlier ones
are the same objects turn after turn (the harness's folded state; build_request and file_blocks share them), and the
adapter keeps their JSON (adapters/anthropic_model.py `_EncodedMessages`). The bytes sent are the whole request."""

from __future__ import annotations

from typing import Any

import pytest

from managed_agents.adapters import anthropic_model
from tests.e2e.conftest import Server, embedded_only, strict_client, wait_idle

pytestmark = embedded_only("the embedded harness's model adapter, in this process")
TURNS = 6


def test_each_request_encodes_the_new_messages_only(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded_messages: list[int] = []  # per request: the message objects encoded for it
    encode = anthropic_model._encode_json

    def counting(value: Any) -> str:
        if isinstance(value, dict) and "role" in value:
            encoded_messages[-1] += 1
        return encode(value)

    body = anthropic_model._body

    def per_request(request: Any) -> Any:
        encoded_messages.append(0)
        return body(request)

    monkeypatch.setattr(anthropic_model, "_encode_json", counting)
    monkeypatch.setattr(anthropic_model, "_body", per_request)
    client = strict_client(server)
    agent = client.beta.agents.create(name="enc", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="enc", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    # When a session runs turn after turn (the model echoes each message)
    server.model.push(*[{"content": [{"type": "text", "text": f"answer {t}"}]} for t in range(1, TURNS + 1)])
    for turn in range(1, TURNS + 1):
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": f"turn {turn}"}]}]
        )
        wait_idle(client, sid, count=turn)
    # Then from the third request on, each encoded three messages (the last turn's user message and answer, and its
    # own last message), not the whole transcript (2 x turn - 1 messages)
    assert len(encoded_messages) == TURNS
    assert encoded_messages[2:] == [3] * (TURNS - 2)
    # and the model got every message of the transcript each time
    sent = [r["body"]["messages"] for r in server.model.requests[-TURNS:]]
    assert [len(m) for m in sent] == [2 * t - 1 for t in range(1, TURNS + 1)]
    assert [b["text"] for m in sent[-1] for b in m["content"] if b.get("type") == "text"][-1] == f"turn {TURNS}"
