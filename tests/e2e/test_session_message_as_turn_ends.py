"""A user.message logged while a turn ends is answered before the session idles: the idle that ends a turn is logged
only right after the end of the log the harness saw (a conditional append), so it never follows a message the model
has not seen. The run goes on with the next turn instead."""

from __future__ import annotations

from typing import Any

import anthropic

from tests.e2e.conftest import Server, all_events, strict_client, wait_until


def _msg(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _unanswered_at_idles(types: list[str]) -> list[int]:
    """The positions of the idles that follow a user.message no model request started after."""
    bad, waiting = [], False
    for i, t in enumerate(types):
        if t == "user.message":
            waiting = True
        elif t == "span.model_request_start":
            waiting = False
        elif t == "session.status_idle" and waiting:
            bad.append(i)
    return bad


def test_a_message_sent_while_the_model_answers_is_answered_before_the_idle(server: Server) -> None:
    # Given a session whose first model answer takes 2 s, and a second answer
    client: anthropic.Anthropic = strict_client(server)
    server.model.push({"content": [{"type": "text", "text": "first answer"}], "delay_ms": 2000}, "second answer")
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    with client.beta.sessions.events.stream(sid) as stream:
        events = iter(stream)
        client.beta.sessions.events.send(sid, events=[_msg("first question")])
        wait_until(lambda: len(server.model.requests) == 1, timeout=30)
        # When a second message is sent while the first request is on the wire (logged before its answer)
        client.beta.sessions.events.send(sid, events=[_msg("second question")])
        # Then the first idle the stream delivers comes after both answers
        streamed: list[str] = []
        while not streamed or streamed[-1] != "session.status_idle":
            streamed.append(next(events).type)
    assert streamed.count("agent.message") == 2, streamed
    # And the log has no idle after a message no request took, and exactly one idle: the turn went on
    types = [e.type for e in all_events(client, sid)]
    assert _unanswered_at_idles(types) == [], types
    assert types.count("session.status_idle") == 1, types
    assert types.count("span.model_request_start") == 2, types
    # And the second request carried the second message
    assert "second question" in str(server.model.requests[1]["body"]["messages"][-1])
