"""A child thread whose run fails where the harness cannot say so itself (a bug, a crashed ModelTurn) is reported as a
session's is (harness/failures.py): `session.error` and its idle on the thread's log, and, since a coordinator waits
on it, the idle copied to the session's log, an error answer to the delegation and the session woken to read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from managed_agents.adapters.aws import session_run
from managed_agents.adapters.local import in_process_orchestrator
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle


def _crashing_once(advance: Callable[..., Any], crashed: list[str]) -> Callable[..., Any]:
    def run(run_id: str, *args: Any, **kwargs: Any) -> Any:
        if run_id.startswith("sthr_") and not crashed:
            crashed.append(run_id)
            raise RuntimeError("injected: the child thread's harness crashed")
        return advance(run_id, *args, **kwargs)

    return run


def test_a_child_threads_failed_run_answers_its_coordinator_with_an_error(
    server: Server, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = server.client(_strict_response_validation=True)
    flights = client.beta.agents.create(name="flights", model="claude-sonnet-4-6")
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [flights.id]}
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=lead.id, environment_id=env.id).id
    # Given a coordinator that delegates, and a child thread whose first step crashes (embedded: the orchestrator's
    # loop; AWS: its ModelTurn, caught by the state machine's ReportFailure)
    model_server.push(
        {
            "match": "book it",
            "content": [{"type": "tool_use", "name": "delegate_to_flights", "input": {"message": "x"}}],
        },
        {"match": "stopped on an error", "content": [{"type": "text", "text": "The search failed."}]},
    )
    crashed: list[str] = []
    monkeypatch.setattr(in_process_orchestrator, "advance", _crashing_once(in_process_orchestrator.advance, crashed))
    monkeypatch.setattr(session_run, "advance", _crashing_once(session_run.advance, crashed))
    # When the user asks
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "book it"}]}]
    )
    # Then the coordinator gets an error answer for its delegation and ends its turn
    events = wait_idle(client, sid, timeout=60)
    (child,) = crashed
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["The search failed."]
    (answer,) = [e for e in events if e.type == "agent.thread_message_received"]
    assert answer.from_session_thread_id == child and "stopped on an error" in answer.content[0].text
    assert events[-1].stop_reason.type == "end_turn"
    # And the child's log says why, and its stop is copied to the session's log
    own = list(client.beta.sessions.threads.events.list(child, session_id=sid))
    assert [e.type for e in own][-3:] == ["session.error", "session.thread_status_idle", "agent.thread_message_sent"]
    assert "injected: the child thread's harness crashed" in own[-3].error.message
    copied = [e for e in events if e.type == "session.thread_status_idle"]
    assert [(e.session_thread_id, e.stop_reason.type) for e in copied] == [(child, "retries_exhausted")]
    assert client.beta.sessions.threads.retrieve(child, session_id=sid).status == "idle"
    model_server.assert_complete()
