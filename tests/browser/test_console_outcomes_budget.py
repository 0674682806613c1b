"""The session page shows an outcome's iterations with the grader's verdicts, and what the budget has used."""

from __future__ import annotations

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.browser.conftest import Console
from tests.e2e.conftest import wait_idle, wait_until

USAGE_1K = {"input_tokens": 1000, "output_tokens": 1000, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def test_outcome_iterations_verdicts_and_budget_use(
    console: Console, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a budgeted session (10 cents) whose outcome the grader sends back once, then accepts
    agent = client.beta.agents.create(name="poet", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="env", config={"type": "cloud"})
    model_server.push(
        {"content": [{"type": "text", "text": "draft one"}], "usage": USAGE_1K},
        {
            "content": [
                {"type": "text", "text": "<verdict>needs_revision</verdict><explanation>No title.</explanation>"}
            ]
        },
        {"content": [{"type": "text", "text": "Title: draft two"}], "usage": USAGE_1K},
        {"content": [{"type": "text", "text": "<verdict>satisfied</verdict><explanation>Titled.</explanation>"}]},
    )
    outcome = {
        "type": "user.define_outcome",
        "description": "A titled poem",
        "rubric": {"type": "text", "content": "Has a title."},
    }
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=env.id,
        budget={"type": "limit", "max_list_cost": {"amount": "10", "currency": "USD"}},
        initial_events=[outcome],  # type: ignore[list-item]
    )
    wait_idle(client, session.id)
    got = wait_until(
        lambda: (s := client.beta.sessions.retrieve(session.id)).outcome_evaluations[0].result == "satisfied" and s
    )
    spent = got.usage.list_cost.amount if got.usage.list_cost else "?"
    # When its page is opened
    console.sign_in(fragment=f"#/sessions/{session.id}")
    console.wait_trace()
    page = console.page
    # Then the header shows the budget's use against its limit
    budget = page.locator("#session-budget")
    assert f"${int(spent) / 100:.2f} of $0.10" in budget.inner_text()
    assert budget.locator("meter").get_attribute("max") == "10"
    # And the outcome with its result and each iteration's verdict and explanation
    outcomes = page.locator("#session-outcomes")
    outcomes.locator("li.outcome-iteration").nth(1).wait_for()
    text = outcomes.inner_text()
    assert "A titled poem" in text and "satisfied" in text and "after 2 iterations" in text
    iterations = outcomes.locator("li.outcome-iteration").all_inner_texts()
    assert iterations == ["Iteration 1: needs_revision No title.", "Iteration 2: satisfied Titled."]
    # And the trace names the spans with their verdicts
    ends = page.locator('li.ev[data-type="span.outcome_evaluation_end"]')
    assert ends.count() == 2
    assert "needs_revision" in ends.nth(0).inner_text() and "No title." in ends.nth(0).inner_text()
    assert page.locator('li.ev[data-type="user.define_outcome"]').inner_text().count("A titled poem") == 1
    usage = page.locator('li.ev[data-type="session.usage"]').last.inner_text()
    assert "budget" in usage and "of $0.10" in usage
    console.screenshot("outcome-and-budget")
