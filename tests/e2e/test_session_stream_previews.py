"""`event_deltas[]` previews on the live stream (api-reference §3.2, §5), read with the official SDK.

Previews (`event_start`, `event_delta`) are stream-only: they carry the id of the final event, which arrives
buffered with the full content; the SDK's `accumulate_managed_agents_event` folds them into a snapshot.
"""

from __future__ import annotations

import threading
from typing import Any

import anthropic
from anthropic.lib.sessions import accumulate_managed_agents_event

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import all_events, embedded_only

pytestmark = embedded_only(
    "previews reach the streams of the process running the model request; on AWS that is the ModelTurn Lambda, "
    "not the API Lambda holding the stream (ports.EventNotifier)"
)

PREVIEWS = ("event_start", "event_delta")
LONG = "The quick brown fox jumps over the lazy dog, three times over, to make several deltas."
# Streamed with a pause between chunks, so previews reach the stream before the response's events are logged (a
# preview whose final event is read in the same pass is dropped as stale: the final carries the full content).
PACE = {"chunk_delay_ms": 15}
TOOL = {"type": "custom", "name": "lookup", "description": "look something up", "input_schema": {"type": "object"}}


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="previews", model="claude-sonnet-4-6", tools=[TOOL])  # type: ignore[list-item]
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _read_turn(client: anthropic.Anthropic, sid: str, deltas: list[str], text: str) -> list[Any]:
    """Open the stream with `deltas`, send a message, return everything streamed up to the idle."""
    got: list[Any] = []
    opened = threading.Event()

    def read() -> None:
        with client.beta.sessions.events.stream(sid, event_deltas=deltas) as stream:  # type: ignore[arg-type]
            opened.set()
            for ev in stream:
                got.append(ev)
                if ev.type == "session.status_idle":
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(5)
    message = {"type": "user.message", "content": [{"type": "text", "text": text}]}
    client.beta.sessions.events.send(sid, events=[message])  # type: ignore[list-item]
    reader.join(10)
    assert not reader.is_alive(), "the stream did not reach session.status_idle"
    return got


def test_message_and_thinking_previews_fold_into_the_final_events(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a reply with thinking, two text blocks (one agent.message), a custom tool call, then more text
    sid = _session(client)
    model_server.push(
        {
            "content": [
                {"type": "thinking", "thinking": "let me think about this for a while"},
                {"type": "text", "text": LONG},
                {"type": "text", "text": "Second block."},
                {"type": "tool_use", "name": "lookup", "input": {"q": "fox"}},
                {"type": "text", "text": "After the tool call, more words to stream."},
            ],
            **PACE,
        }
    )
    # When a stream that asked for both previews reads the turn
    got = _read_turn(client, sid, ["agent.message", "agent.thinking"], "go")

    # Then the stream's log events are exactly the history, with previews in between
    history = all_events(client, sid)
    assert [e.id for e in got if e.type not in PREVIEWS] == [e.id for e in history]
    finals = {e.id: e for e in history if e.type in ("agent.message", "agent.thinking")}
    assert [e.type for e in finals.values()] == ["agent.thinking", "agent.message", "agent.message"]
    # And the thinking and the first message were previewed by an event_start with their own ids, before they
    # arrived; the second message of the response arrived whole (one message preview at a time: the SDK's
    # accumulator holds one snapshot, and a response's events are logged when it ends)
    starts = [e for e in got if e.type == "event_start"]
    assert [(s.event.type, s.event.id) for s in starts] == [(e.type, e.id) for e in list(finals.values())[:2]]
    for start in starts:
        assert got.index(start) < next(i for i, e in enumerate(got) if getattr(e, "id", None) == start.event.id)
    # And thinking previews are start-only; text arrived in several deltas at content indices 0 and 1
    deltas = [e for e in got if e.type == "event_delta"]
    thinking_id = next(e.id for e in finals.values() if e.type == "agent.thinking")
    assert all(d.event_id != thinking_id for d in deltas)
    first_message = next(e for e in finals.values() if e.type == "agent.message")
    assert {d.delta.index for d in deltas if d.event_id == first_message.id} == {0, 1}
    assert len(deltas) > 4
    # And the SDK's accumulator, fed the stream, has each message's full text just before its final event
    snapshot = None
    for ev in got:
        if ev.id == first_message.id if hasattr(ev, "id") else False:
            assert snapshot is not None and snapshot.id == ev.id
            assert [b.text for b in snapshot.content] == [b.text for b in ev.content]
        snapshot = accumulate_managed_agents_event(snapshot, ev)
    assert [b.text for b in first_message.content] == [LONG, "Second block."]


def test_a_stream_gets_only_the_previews_it_asked_for(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    sid = _session(client)
    model_server.push(
        {"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": LONG}], **PACE},
        {"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": LONG}], **PACE},
    )
    # Given a stream that asked for thinking previews only
    got = _read_turn(client, sid, ["agent.thinking"], "one")
    # Then it got one start-only thinking preview and no message previews
    previews = [e for e in got if e.type in PREVIEWS]
    assert [(p.type, p.event.type) for p in previews] == [("event_start", "agent.thinking")]
    # And a stream that asked for nothing gets no previews at all
    got = _read_turn(client, sid, [], "two")
    assert [e for e in got if e.type in PREVIEWS] == []
    assert got[-1].type == "session.status_idle"
