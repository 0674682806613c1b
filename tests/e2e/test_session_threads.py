"""Session threads through the official SDK with strict response validation (api-reference §2.3.3): every session
has a primary thread whose events are the session's log; child threads come from a coordinator's delegations."""

from __future__ import annotations

import threading
from typing import Any

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, error_body, wait_idle


def _msg(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _session(client: anthropic.Anthropic, **agent_kw: Any) -> str:
    agent = client.beta.agents.create(name="solo", model="claude-sonnet-4-6", **agent_kw)
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def test_a_session_has_a_primary_thread_whose_events_are_the_session_log(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client)
    # Given a new session: one primary thread, idle, running the session's agent
    listed = list(client.beta.sessions.threads.list(sid))
    assert len(listed) == 1
    primary = listed[0]
    assert primary.id.startswith("sthr_") and primary.session_id == sid
    assert primary.parent_thread_id is None and primary.status == "idle"
    assert primary.agent.type == "agent" and primary.agent.name == "solo"
    session = client.beta.sessions.retrieve(sid)
    assert primary.agent.id == session.agent.id and primary.agent.version == session.agent.version
    # When the session runs a turn, watched on the primary thread's stream
    model_server.push("hello back")
    seen: list[Any] = []
    with client.beta.sessions.threads.events.stream(primary.id, session_id=sid) as stream:
        reader = threading.Thread(target=lambda: [seen.append(e) for e in _until_idle(stream)], daemon=True)
        reader.start()
        client.beta.sessions.events.send(sid, events=[_msg("hello")])
        reader.join(30)
    wait_idle(client, sid)
    # Then the thread's events, its stream and the session's events agree, event for event
    session_events = all_events(client, sid)
    thread_events = list(client.beta.sessions.threads.events.list(primary.id, session_id=sid))
    assert [e.id for e in thread_events] == [e.id for e in session_events]
    assert [e.id for e in seen] == [e.id for e in session_events]
    # And the thread reports the session's status and usage
    again = client.beta.sessions.threads.retrieve(primary.id, session_id=sid)
    assert again.status == "idle" and again.usage is not None and again.usage.output_tokens
    assert again.stats is not None and again.stats.startup_seconds == 0
    assert [t.id for t in client.beta.sessions.threads.list(sid, statuses=["idle"])] == [primary.id]
    assert list(client.beta.sessions.threads.list(sid, statuses=["running"])) == []


def _until_idle(stream: Any) -> Any:
    for ev in stream:
        yield ev
        if ev.type == "session.status_idle":
            return


def test_thread_errors(server: Server) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client)
    primary = next(iter(client.beta.sessions.threads.list(sid)))
    # An unknown thread, or a thread of another session, is a 404
    other = _session(client)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.retrieve(primary.id, session_id=other)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.events.list("sthr_nope", session_id=sid)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.list("sesn_nope")
    # The primary thread is archived with its session, not on its own
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.threads.archive(primary.id, session_id=sid)
    assert "primary thread" in error_body(info.value)["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.threads.list(sid, statuses=["sleeping"])  # type: ignore[list-item]
