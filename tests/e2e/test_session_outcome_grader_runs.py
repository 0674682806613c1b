"""The outcome grader while it runs: heartbeats during a slow evaluation, and an interrupt that ends it."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, wait_idle, wait_until


@pytest.fixture
def server_settings(server_settings: ServerSettings) -> ServerSettings:
    fields = {name: getattr(server_settings, name) for name in server_settings.model_fields_set}
    return ServerSettings(**fields, outcome_heartbeat_seconds=0.1)


OUTCOME: Any = {"type": "user.define_outcome", "description": "a poem", "rubric": {"type": "text", "content": "rhymes"}}


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="poet", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def test_a_slow_grader_logs_heartbeats(server: Server, model_server: ScriptedModelServer) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client)
    # Given a grader whose answer takes a while to start
    model_server.push(
        "moon / june", {"content": [{"type": "text", "text": "<verdict>satisfied</verdict>"}], "delay_ms": 800}
    )
    # When the outcome is worked on and judged
    client.beta.sessions.events.send(sid, events=[OUTCOME])
    events = wait_idle(client, sid)
    # Then heartbeats for that evaluation sit between its start and its end
    types = [e.type for e in events]
    start, end = types.index("span.outcome_evaluation_start"), types.index("span.outcome_evaluation_end")
    beats = [e for e in events[start:end] if e.type == "span.outcome_evaluation_ongoing"]
    assert beats and all(b.outcome_id == events[start].outcome_id and b.iteration == 0 for b in beats)
    assert events[end].result == "satisfied"


def test_an_interrupt_ends_a_running_evaluation_interrupted(server: Server, model_server: ScriptedModelServer) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client)
    # Given a grader that hangs
    model_server.push("moon / june", {"hang_ms": 60_000})
    client.beta.sessions.events.send(sid, events=[OUTCOME])
    wait_until(lambda: any(e.type == "span.outcome_evaluation_start" for e in all_events(client, sid)))
    # When the user interrupts
    client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
    events = wait_idle(client, sid, timeout=30)  # (well before the grader's hang would have ended by itself)
    # Then the evaluation ends interrupted and the session idles
    end = next(e for e in events if e.type == "span.outcome_evaluation_end")
    start = next(e for e in events if e.type == "span.outcome_evaluation_start")
    assert end.result == "interrupted" and end.outcome_evaluation_start_id == start.id
    assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == "end_turn"
    evaluation = wait_until(
        lambda: next(
            (o for o in client.beta.sessions.retrieve(sid).outcome_evaluations if o.result == "interrupted"), None
        )
    )
    assert evaluation.completed_at is not None
