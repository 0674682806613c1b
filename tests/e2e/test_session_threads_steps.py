"""The steps a fan-out takes between model requests (issue 17's bench, bench/threads_fanout.py): the step that logs a
coordinator's delegation calls starts their threads and parks, and the step that logs a child's last answer sends it
to the coordinator, so neither waits one more harness step (a yield to the server's requests, a record read, a fold)
on the critical path from one model request to the next. Both legs run the same harness steps (embedded: the
in-process loop; AWS: ModelTurn in the state machine), which the test watches in-process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import managed_agents.harness.turn as turn_module
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle, wait_until


class _Steps:
    """Each harness step's run id, outcome, and whether it ran a model request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, object, bool]] = []
        self.local = threading.local()


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Steps]:
    rec = _Steps()
    step, run_model = turn_module._step, turn_module._run_model

    def watched_step(turn: Any, cancel: Any) -> Any:
        rec.local.model = False
        outcome = step(turn, cancel)
        with rec.lock:
            rec.seen.append((turn.sid, outcome, rec.local.model))
        return outcome

    def watched_model(turn: Any, action: Any, cancel: Any) -> Any:
        rec.local.model = True
        return run_model(turn, action, cancel)

    monkeypatch.setattr(turn_module, "_step", watched_step)
    monkeypatch.setattr(turn_module, "_run_model", watched_model)
    yield rec


def _delegate(agent: str, message: str) -> dict[str, Any]:
    return {"type": "tool_use", "name": f"delegate_to_{agent}", "input": {"message": message}}


def test_a_fan_out_starts_its_threads_and_answers_its_coordinator_in_the_steps_that_log_the_calls_and_answers(
    server: Server, model_server: ScriptedModelServer, steps: _Steps
) -> None:
    client = server.client(_strict_response_validation=True)
    helpers = [client.beta.agents.create(name=n, model="claude-sonnet-4-6") for n in ("flights", "hotels", "cars")]
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [h.id for h in helpers]}
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=lead.id, environment_id=env.id).id
    # Given a coordinator that delegates to three subagents in one turn, each answering in one request
    model_server.push(
        {
            "match": "plan the trip",
            "content": [
                _delegate("flights", "find flights"),
                _delegate("hotels", "find hotels"),
                _delegate("cars", "a car"),
            ],
        },
        {"match": "find flights", "content": [{"type": "text", "text": "flight AB123"}]},
        {"match": "find hotels", "content": [{"type": "text", "text": "hotel Ritz"}]},
        {"match": "a car", "content": [{"type": "text", "text": "car XY"}]},
        {"match": "AB123", "content": [{"type": "text", "text": "Booked."}]},
    )
    # When the session runs the fan-out to its end
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "plan the trip"}]}]
    )
    events = wait_idle(client, sid)
    assert [e for e in events if e.type == "agent.message"][-1].content[0].text == "Booked."
    children = {t.id for t in client.beta.sessions.threads.list(sid) if t.parent_thread_id}
    assert len(children) == 3
    wait_until(lambda: len({s for s, _, _ in steps.seen} & children) == 3)
    with steps.lock:
        seen = list(steps.seen)
    # Then the coordinator's step that ran its delegating request also started the three threads and parked
    coordinator = [(outcome, model) for s, outcome, model in seen if s == sid]
    first = next(outcome for outcome, model in coordinator if model)
    assert isinstance(first, turn_module.Parked) and first.reason == "threads", coordinator
    created = [e for e in events if e.type == "session.thread_created"]
    assert {e.session_thread_id for e in created} == children
    # And each child's step that ran its answering request parked idle, its answer sent in that step
    for tid in children:
        own = [(outcome, model) for s, outcome, model in seen if s == tid]
        last = [outcome for outcome, model in own if model][-1]
        assert isinstance(last, turn_module.Parked) and last.reason == "idle", own
    received = [e for e in events if e.type == "agent.thread_message_received"]
    assert {e.from_session_thread_id for e in received} == children
    # And the log stays in order: each thread is created before any of its status copies reach the session's log
    at = {e.id: i for i, e in enumerate(events)}
    for e in created:
        copies = [
            x
            for x in events
            if x.type.startswith("session.thread_status_") and x.session_thread_id == e.session_thread_id
        ]
        assert copies and all(at[x.id] > at[e.id] for x in copies)
    assert len({e.id for e in events}) == len(events)  # and nothing is logged twice
