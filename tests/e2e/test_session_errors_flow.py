"""Model failures through the official SDK: retried transient errors, exhaustion, non-retryable errors."""

from __future__ import annotations

from typing import Any

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import wait_idle, wait_until


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e")
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _error(status: int, kind: str) -> dict[str, Any]:
    return {"error": {"status": status, "type": kind, "message": f"scripted {kind}"}}


def _types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def test_overloaded_is_retried_then_succeeds(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    # Given a model that is overloaded once, then answers
    sid = _session(client)
    model_server.push(_error(529, "overloaded_error"), "recovered")
    # When a message is sent
    _say(client, sid, "hi")
    events = wait_idle(client, sid)
    # Then the failure is reported as retrying, the session is rescheduled and runs again
    assert _types(events) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "span.model_request_end",
        "session.error",
        "session.status_rescheduled",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    err = next(e for e in events if e.type == "session.error")
    assert err.error.type == "model_overloaded_error"
    assert err.error.retry_status.type == "retrying"
    assert "scripted overloaded_error" in err.error.message
    first_end = events[3]
    assert first_end.is_error is True and first_end.model_request_start_id == events[2].id
    assert next(e for e in events if e.type == "agent.message").content[0].text == "recovered"
    assert events[-1].stop_reason.type == "end_turn"
    assert len(model_server.requests) == 2
    model_server.assert_complete()


def test_rate_limited_maps_to_model_rate_limited_error(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    sid = _session(client)
    model_server.push(_error(429, "rate_limit_error"), "ok")
    _say(client, sid, "hi")
    events = wait_idle(client, sid)
    errors = [e for e in events if e.type == "session.error"]
    assert len(errors) == 1
    assert errors[0].error.type == "model_rate_limited_error"
    assert errors[0].error.retry_status.type == "retrying"
    assert events[-1].stop_reason.type == "end_turn"
    model_server.assert_complete()


def test_repeated_5xx_exhausts_retries_and_session_recovers(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a model failing four times in a row (model_max_attempts defaults to 4)
    sid = _session(client)
    model_server.push(*[_error(500, "api_error")] * 4)
    _say(client, sid, "hi")
    events = wait_idle(client, sid)
    # Then three retries are announced, the fourth failure is exhausted and the session idles
    errors = [e for e in events if e.type == "session.error"]
    assert [e.error.retry_status.type for e in errors] == ["retrying", "retrying", "retrying", "exhausted"]
    assert all(e.error.type == "model_request_failed_error" for e in errors)
    assert _types(events).count("session.status_rescheduled") == 3
    assert events[-1].type == "session.status_idle"
    assert events[-1].stop_reason.type == "retries_exhausted"
    assert not any(e.type == "agent.message" for e in events)
    assert len(model_server.requests) == 4
    # (the record follows the log right after the append: polled, bounded)
    assert wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle", timeout=30)
    # When the user writes again and the model is back (after one more transient failure)
    model_server.push(_error(529, "overloaded_error"), "back again")
    _say(client, sid, "retry please")
    events = wait_idle(client, sid, count=2)
    # Then a fresh turn runs, with a fresh retry budget
    tail = events[
        events.index(next(e for e in events if e.type == "user.message" and e.content[0].text == "retry please")) :
    ]
    assert [e.error.retry_status.type for e in tail if e.type == "session.error"] == ["retrying"]
    assert [e.content[0].text for e in tail if e.type == "agent.message"] == ["back again"]
    assert tail[-1].stop_reason.type == "end_turn"
    model_server.assert_complete()


def test_bad_request_from_model_is_not_retried(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    sid = _session(client)
    model_server.push(_error(400, "invalid_request_error"))
    _say(client, sid, "hi")
    events = wait_idle(client, sid)
    assert len(model_server.requests) == 1
    errors = [e for e in events if e.type == "session.error"]
    assert len(errors) == 1
    assert errors[0].error.type == "model_request_failed_error"
    assert errors[0].error.retry_status.type == "exhausted"
    assert "scripted invalid_request_error" in errors[0].error.message
    assert "session.status_rescheduled" not in _types(events)
    assert events[-1].stop_reason.type == "retries_exhausted"
