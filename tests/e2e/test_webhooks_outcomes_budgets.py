"""Webhooks for outcomes and budgets (api-reference §3.3): `session.outcome_evaluation_ended` when an evaluation
ends, `session.budget_reached` when a session stops at its budget."""

from __future__ import annotations

from typing import Any

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import embedded_only, wait_idle, wait_until
from tests.e2e.test_webhooks_delivery import Receiver, receiver, server_settings

__all__ = ["receiver", "server_settings"]  # the delivery tests' fixtures: a loopback receiver, fast retries

pytestmark = embedded_only("webhook delivery on AWS (a queue and a Lambda) is not built yet")
USAGE_1K = {"input_tokens": 1000, "output_tokens": 1000, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def test_outcome_evaluation_ended_and_budget_reached_are_delivered(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    # Given an endpoint for the two events
    endpoint = client.beta.organization.webhooks.create(
        url=url,
        enabled_events=["session.outcome_evaluation_ended", "session.budget_reached"],  # type: ignore[list-item]
    )
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    # And a 4-cent session whose outcome is met at once by a 1.8-cent reply (the grader's request fits: 3.6 <= 4)
    model_server.push(
        {"content": [{"type": "text", "text": "done"}], "usage": USAGE_1K},
        "<verdict>satisfied</verdict><explanation>ok</explanation>",
    )
    outcome: Any = {"type": "user.define_outcome", "description": "d", "rubric": {"type": "text", "content": "r"}}
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=env.id,
        budget={"type": "limit", "max_list_cost": {"amount": "4", "currency": "USD"}},
        initial_events=[outcome],
    )
    assert wait_idle(client, session.id)[-1].stop_reason.type == "end_turn"
    # When the budget is lowered to 3 cents (above the ~1.9 spent) and the user asks for a turn that would cross it
    client.beta.sessions.update(
        session.id, budget={"type": "limit", "max_list_cost": {"amount": "3", "currency": "USD"}}
    )
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "more"}]}]
    )
    events = wait_idle(client, session.id, count=2)
    assert events[-1].stop_reason.type == "budget_reached"
    # Then the receiver gets both events, verified with the endpoint's secret
    got = wait_until(lambda: len(r.delivered()) >= 2 and r.delivered(), timeout=20)
    unwrapped = [client.beta.webhooks.unwrap(b, headers=h, key=endpoint.signing_secret) for h, b in got]
    assert sorted(e.data.type for e in unwrapped) == ["session.budget_reached", "session.outcome_evaluation_ended"]
    assert all(e.data.id == session.id for e in unwrapped)
