"""A session's usage and budget include its child threads' model requests (api-reference §2.3 `usage`, `budget`;
the SDK's SessionThreadUsage: "the session figure is authoritative and is what a budget is enforced against").

claude-sonnet-4-6 lists at $3 / $15 per million input / output tokens: a scripted request of 1,000 input and 1,000
output tokens costs 1.8 cents (domain/prices.py); amounts are shown rounded up.
"""

from __future__ import annotations

from typing import Any

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle, wait_until

USAGE_1K = {"input_tokens": 1000, "output_tokens": 1000, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
TICKET = {
    "type": "custom",
    "name": "ticket",
    "description": "Open a ticket",
    "input_schema": {"type": "object", "properties": {"title": {"type": "string"}}},
}


def _budget(cents: str) -> Any:
    return {"type": "limit", "max_list_cost": {"amount": cents, "currency": "USD"}}


def _msg(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def test_a_child_threads_requests_count_in_the_session_usage_and_stop_it_at_its_budget(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    ops = client.beta.agents.create(name="ops", model="claude-sonnet-4-6", tools=[TICKET])  # type: ignore[list-item]
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [ops.id]}
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    # Given a 5-cent budget, a coordinator that delegates (1.8 cents) to a subagent whose first request (1.8 more)
    # calls a custom tool, so that its second request (1.8 more: 5.4) would cross the ceiling
    model_server.push(
        {
            "match": "clean up",
            "content": [{"type": "tool_use", "name": "delegate_to_ops", "input": {"message": "clean the disk"}}],
            "usage": USAGE_1K,
        },
        {
            "match": "clean the disk",
            "content": [{"type": "tool_use", "name": "ticket", "input": {"title": "disk"}}],
            "usage": USAGE_1K,
        },
        {"match": "TICKET-7 filed", "content": [{"type": "text", "text": "filed TICKET-7"}], "usage": USAGE_1K},
        {"match": "filed TICKET-7", "content": [{"type": "text", "text": "Cleanup is TICKET-7."}], "usage": USAGE_1K},
    )
    sid = client.beta.sessions.create(
        agent=lead.id, environment_id=env.id, budget=_budget("5"), initial_events=[_msg("clean up")]
    ).id
    events = wait_idle(client, sid)
    custom = next(e for e in events if e.type == "agent.custom_tool_use")
    # Then the session's usage is the coordinator's request and the subagent's, each thread keeping its own
    wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle")
    session = client.beta.sessions.retrieve(sid)
    assert session.usage.input_tokens == 2000 and session.usage.output_tokens == 2000
    assert session.usage.list_cost is not None and session.usage.list_cost.amount == "4"  # 3.6
    primary, child = list(client.beta.sessions.threads.list(sid))
    assert child.parent_thread_id == primary.id
    assert primary.usage is not None and primary.usage.input_tokens == 1000
    assert child.usage is not None and child.usage.input_tokens == 1000
    # And each request's session.usage snapshot on the session's log counts both threads
    snapshots = [e.usage.list_cost.amount for e in events if e.type == "session.usage"]
    assert snapshots == ["2", "4"]
    # When the custom tool's result lets the subagent go on, its next request would cross the 5-cent ceiling
    result = {"type": "user.custom_tool_result", "custom_tool_use_id": custom.id, "content": [_text("TICKET-7 filed")]}
    client.beta.sessions.events.send(sid, events=[result])  # type: ignore[list-item]
    events = wait_idle(client, sid, count=2)
    # Then the subagent's thread and the session stop with budget_reached before that request starts
    assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == "budget_reached"
    stops = [e for e in events if e.type == "session.thread_status_idle" and e.session_thread_id == child.id]
    assert stops[-1].stop_reason is not None and stops[-1].stop_reason.type == "budget_reached"
    assert model_server.remaining() == 2
    wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle")
    # And lowering the budget below what the threads spent together is refused
    try:
        client.beta.sessions.update(sid, budget=_budget("3"))
        raise AssertionError("a budget below the consumed 3.6 cents was accepted")
    except anthropic.BadRequestError as exc:
        assert "budget_not_raised" in str(exc.body)
    # When the budget is raised, Then the subagent resumes, answers, and the coordinator ends its turn
    client.beta.sessions.update(sid, budget=_budget("20"))
    events = wait_idle(client, sid, count=3)
    assert events[-1].stop_reason.type == "end_turn"
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Cleanup is TICKET-7."]
    model_server.assert_complete()
    # And the session's usage is the four requests (7.2 cents), the threads' their own two each
    wait_until(lambda: client.beta.sessions.retrieve(sid).usage.input_tokens == 4000)
    assert client.beta.sessions.retrieve(sid).usage.list_cost.amount == "8"  # type: ignore[union-attr]
    threads = {t.id: t for t in client.beta.sessions.threads.list(sid)}
    assert threads[primary.id].usage.input_tokens == 2000  # type: ignore[union-attr]
    assert threads[child.id].usage.input_tokens == 2000  # type: ignore[union-attr]
    own = [e.type for e in client.beta.sessions.threads.events.list(child.id, session_id=sid)]
    assert "session.usage" not in own  # a thread's snapshots are the session's, on the session's log
    snapshots = [e.usage.list_cost.amount for e in events if e.type == "session.usage"]
    assert snapshots[-2:] == ["6", "8"]


def _text(text: str) -> Any:
    return {"type": "text", "text": text}
