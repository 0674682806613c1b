"""A plain turn (a message, one answer, idle) is one harness step: the step that logs the idle knows the state is the
whole log (its append was conditional on the end it saw) and parks at once, with no second step that only decides to
park. A message sent right after the idle still runs its own turn."""

from __future__ import annotations

from typing import Any

import pytest

import managed_agents.adapters.local.in_process_orchestrator as orchestrator
from tests.e2e.conftest import Server, embedded_only, strict_client, wait_until


@embedded_only("counts the embedded orchestrator's advance() calls; the AWS leg runs the same harness in ModelTurn")
def test_each_plain_turn_is_one_step_that_parks(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a session, and the orchestrator's harness steps counted with their outcomes
    client = strict_client(server)
    outcomes: list[str] = []
    advance = orchestrator.advance

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = advance(*args, **kwargs)
        outcomes.append(f"{type(out).__name__}:{getattr(out, 'reason', '')}")
        return out

    monkeypatch.setattr(orchestrator, "advance", counted)
    server.model.push(*(f"answer {turn}" for turn in range(1, 4)))
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    with client.beta.sessions.events.stream(sid) as stream:
        events = iter(stream)
        for turn in range(1, 4):
            # When a turn runs to its idle
            text = [{"type": "text", "text": f"turn {turn}"}]
            client.beta.sessions.events.send(sid, events=[{"type": "user.message", "content": text}])
            while next(events).type != "session.status_idle":
                pass
            orch = server.rt.orchestrator
            assert orch is not None
            wait_until(orch.idle)
            # Then it took one step, which parked the session idle, and the record says so
            assert outcomes == ["Parked:idle"] * turn, outcomes
            assert client.beta.sessions.retrieve(sid).status == "idle"
    types = [e.type for e in client.beta.sessions.events.list(sid)]
    assert types.count("agent.message") == 3 and types.count("session.status_idle") == 3
