"""A model response that breaks after it started is retried like a 5xx, and every model request span is closed.

The scripted model drops the connection mid-body (`drop_after_bytes`) or ends the body before `message_stop`
(`end_after_bytes`); the session must announce a retry (`retry_status: retrying`), back off, run the request
again, and never leave a `span.model_request_start` without its `span.model_request_end`.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import wait_idle, wait_until

TEXT = "a reply long enough to be cut in the middle of its text deltas " * 4
CUTS = {
    "connection dropped mid-text": {"drop_after_bytes": 900},
    "connection dropped before message_start": {"drop_after_bytes": 20},
    "body ended mid-text": {"end_after_bytes": 900},
    "body ended before message_start": {"end_after_bytes": 60},
}


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e")
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _assert_every_span_closed(events: list[Any]) -> None:
    starts = [e.id for e in events if e.type == "span.model_request_start"]
    ends = [e.model_request_start_id for e in events if e.type == "span.model_request_end"]
    assert starts and ends == starts


@pytest.mark.parametrize("cut", list(CUTS))
def test_a_response_cut_short_is_retried_then_the_turn_finishes(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, cut: str
) -> None:
    # Given a model whose first reply is cut short, and whose second arrives whole
    sid = _session(client)
    model_server.push({"content": [{"type": "text", "text": TEXT}], **CUTS[cut]}, "recovered")
    # When a message is sent
    _say(client, sid, "hi")
    events = wait_idle(client, sid)
    # Then the cut is a retrying model_request_failed_error, the request is run again, and the turn ends normally
    assert [e.type for e in events] == [
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
    error = next(e for e in events if e.type == "session.error").error
    assert error.type == "model_request_failed_error" and error.retry_status.type == "retrying"
    assert "model" in error.message
    assert events[3].is_error is True and events[3].model_request_start_id == events[2].id
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["recovered"]
    assert events[-1].stop_reason.type == "end_turn"
    _assert_every_span_closed(events)
    model_server.assert_complete()


def test_responses_cut_short_every_time_exhaust_the_retries(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a model whose replies all break mid-stream (model_max_attempts defaults to 4)
    sid = _session(client)
    cuts = list(CUTS.values())
    model_server.push(*[{"content": [{"type": "text", "text": TEXT}], **cut} for cut in cuts])
    # When a message is sent
    _say(client, sid, "hi")
    events = wait_idle(client, sid)
    # Then three retries are announced, the fourth is exhausted, the session idles, and every span is closed
    errors = [e.error for e in events if e.type == "session.error"]
    assert [e.retry_status.type for e in errors] == ["retrying", "retrying", "retrying", "exhausted"]
    assert {e.type for e in errors} == {"model_request_failed_error"}
    assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == "retries_exhausted"
    _assert_every_span_closed(events)
    assert all(e.is_error for e in events if e.type == "span.model_request_end")
    assert wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle", timeout=30)
    model_server.assert_complete()
