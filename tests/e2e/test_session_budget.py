"""Session budgets through the official SDK (api-reference §2.3 `budget`, §3.2 `session.usage`, §3.3 Budget).

Prices come from the platform's table (domain/prices.py): claude-sonnet-4-6 is $3 / $15 per million input / output
tokens, so a scripted request of 1,000 input and 1,000 output tokens costs 0.3 + 1.5 = 1.8 cents.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, wait_idle, wait_until

LOOKUP_TOOL = {
    "type": "custom",
    "name": "lookup",
    "description": "Look a word up",
    "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
}
USAGE_1K = {"input_tokens": 1000, "output_tokens": 1000, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def _budget(cents: str) -> Any:
    return {"type": "limit", "max_list_cost": {"amount": cents, "currency": "USD"}}


def _setup(client: anthropic.Anthropic, model: str = "claude-sonnet-4-6", **agent_kw: Any) -> tuple[str, str]:
    agent = client.beta.agents.create(name="budgeted", model=model, **agent_kw)
    env = client.beta.environments.create(name="env", config={"type": "cloud"})
    return agent.id, env.id


def _error_code(info: pytest.ExceptionInfo[anthropic.BadRequestError]) -> str:
    body: Any = info.value.body
    code: str = body["error"]["details"]["error_code"]
    return code


def test_budget_rules_on_create_and_update(server: Server) -> None:
    client = server.client(_strict_response_validation=True)
    agent_id, env_id = _setup(client)
    # Given an agent on a model with no public list price
    unpriced, _ = _setup(client, model="claude-scripted-unpriced")
    # When a budgeted session would run it, Then the budget cannot measure it
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.create(agent=unpriced, environment_id=env_id, budget=_budget("100"))
    assert _error_code(info) == "model_not_budgetable"
    # Given a session created without a budget, When one is added, Then it is refused
    plain = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    assert plain.budget is None
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.update(plain.id, budget=_budget("100"))
    assert _error_code(info) == "budget_create_only"
    # Given a budgeted session, Then it shows its budget and a list cost of nothing yet
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id, budget=_budget("250"))
    assert session.budget is not None and session.budget.max_list_cost.amount == "250"
    assert session.budget.max_list_cost.currency == "USD"
    assert session.usage.list_cost is not None and session.usage.list_cost.amount == "0"
    # When the budget is lowered to what it already spent (nothing), Then it is not raised
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.update(session.id, budget=_budget("0"))
    assert _error_code(info) == "budget_not_raised"
    # When it is replaced, Then the new one holds and session.updated says so
    updated = client.beta.sessions.update(session.id, budget=_budget("500"))
    assert updated.budget is not None and updated.budget.max_list_cost.amount == "500"
    # When it is removed, Then it cannot be added again
    assert client.beta.sessions.update(session.id, budget=None).budget is None
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.update(session.id, budget=_budget("900"))
    assert _error_code(info) == "budget_create_only"
    # And malformed amounts are refused by the schema
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.create(agent=agent_id, environment_id=env_id, budget=_budget("012"))
    updates = [e for e in all_events(client, session.id) if e.type == "session.updated"]
    assert [u.budget.max_list_cost.amount if u.budget else None for u in updates] == ["500", None]


def test_budget_reached_mid_session_and_raised_to_continue(server: Server, model_server: ScriptedModelServer) -> None:
    client = server.client(_strict_response_validation=True)
    agent_id, env_id = _setup(client, tools=[LOOKUP_TOOL])
    # Given a 3-cent budget and a model whose requests cost 1.8 cents each
    model_server.push(
        {"content": [{"type": "tool_use", "name": "lookup", "input": {"word": "budget"}}], "usage": USAGE_1K},
        {"content": [{"type": "text", "text": "Looked it up."}], "usage": USAGE_1K},
    )
    session = client.beta.sessions.create(
        agent=agent_id,
        environment_id=env_id,
        budget=_budget("3"),
        initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "define budget"}]}],
    )
    events = wait_idle(client, session.id)
    use = next(e for e in events if e.type == "agent.custom_tool_use")
    # Then the first request was priced in a session.usage snapshot
    usage_events = [e for e in events if e.type == "session.usage"]
    assert len(usage_events) == 1
    assert usage_events[0].usage.list_cost.amount == "2"  # 1.8 cents, rounded up
    assert usage_events[0].budget.max_list_cost.amount == "3"
    # When the tool result comes back, a second request (1.8 more) would cross the 3-cent ceiling
    client.beta.sessions.events.send(
        session.id,
        events=[
            {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": use.id,
                "content": [{"type": "text", "text": "a plan"}],
            }
        ],
    )
    events = wait_idle(client, session.id, count=2)
    # Then the session goes idle with budget_reached before that request starts
    assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == "budget_reached"
    assert events[-2].type == "session.usage" and events[-2].usage.list_cost.amount == "2"
    assert [e.type for e in events].count("span.model_request_start") == 1
    assert model_server.remaining() == 1
    wait_until(lambda: client.beta.sessions.retrieve(session.id).status == "idle")
    assert client.beta.sessions.retrieve(session.id).usage.list_cost.amount == "2"
    # When the budget is changed but the next request would still cross it, Then the session stays stopped
    client.beta.sessions.update(session.id, budget=_budget("2"))
    assert wait_until(lambda: client.beta.sessions.retrieve(session.id).status == "idle", timeout=30)
    # When it is raised enough, Then the turn resumes with the tool result and ends normally
    client.beta.sessions.update(session.id, budget=_budget("10"))
    events = wait_idle(client, session.id, count=3)
    assert events[-1].stop_reason.type == "end_turn"
    assert [e.type for e in events].count("session.status_idle") == 3  # nothing said twice while stopped
    tool_results = [
        b for b in model_server.requests[-1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"
    ]
    assert tool_results and tool_results[0]["content"][0]["text"] == "a plan"
    # 3.6 cents (the record follows the log right after each append)
    wait_until(lambda: client.beta.sessions.retrieve(session.id).usage.list_cost.amount == "4")
    model_server.assert_complete()


def test_a_message_to_a_stopped_session_is_answered_with_budget_reached(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    agent_id, env_id = _setup(client)
    # Given a session that spent its whole 2-cent budget on one reply
    model_server.push({"content": [{"type": "text", "text": "one"}], "usage": USAGE_1K})
    session = client.beta.sessions.create(
        agent=agent_id,
        environment_id=env_id,
        budget=_budget("2"),
        initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}],
    )
    wait_idle(client, session.id)
    # When the user writes again
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "more"}]}]
    )
    # Then the session answers with budget_reached and calls no model
    events = wait_idle(client, session.id, count=2)
    assert events[-1].stop_reason.type == "budget_reached"
    assert len(model_server.requests) == 1
    wait_until(lambda: client.beta.sessions.retrieve(session.id).status == "idle")
