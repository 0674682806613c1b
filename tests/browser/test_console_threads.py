"""The session page shows a coordinator's delegations as lanes of the turn's waterfall, one per child thread, and
the thread events in the trace."""

from __future__ import annotations

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.browser.conftest import Console
from tests.e2e.conftest import wait_idle


def test_child_threads_are_lanes_of_the_waterfall(
    console: Console, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a coordinator session that delegated to two subagents
    helpers = [client.beta.agents.create(name=n, model="claude-sonnet-4-6") for n in ("scout", "scribe")]
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [h.id for h in helpers]}
    )
    env = client.beta.environments.create(name="env", config={"type": "cloud"})
    calls = [
        {"type": "tool_use", "name": f"delegate_to_{n}", "input": {"message": f"{n} task"}} for n in ("scout", "scribe")
    ]
    model_server.push(
        {"match": "go", "content": calls},
        {"match": "scout task", "content": [{"type": "text", "text": "scouted"}], "delay_ms": 200},
        {"match": "scribe task", "content": [{"type": "text", "text": "written"}], "delay_ms": 200},
        {"match": "scouted", "content": [{"type": "text", "text": "both done"}]},
    )
    session = client.beta.sessions.create(agent=lead.id, environment_id=env.id)
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
    )
    wait_idle(client, session.id)
    children = {t.id for t in client.beta.sessions.threads.list(session.id) if t.parent_thread_id}
    # When its page is opened
    console.sign_in(fragment=f"#/sessions/{session.id}")
    console.wait_trace()
    page = console.page
    # Then the turn's waterfall row has one lane per child thread, named after its agent
    lanes = page.locator(".wf-lane")
    assert lanes.count() == 2
    assert {lanes.nth(i).get_attribute("data-thread") for i in range(2)} == children
    assert sorted(lanes.all_inner_texts()) == ["scout", "scribe"]
    assert "2 threads" in page.locator(".wf-totals").first.inner_text()
    # And the trace names the messages between the threads
    sent = page.locator('li.ev[data-type="agent.thread_message_sent"]')
    assert sent.count() == 2 and "scout task" in sent.nth(0).inner_text()
    received = page.locator('li.ev[data-type="agent.thread_message_received"]').all_inner_texts()
    assert any("scouted" in r for r in received) and any("written" in r for r in received)
    console.screenshot("thread-lanes")
