"""The sessions list: what each row shows, the filters, search by id and paging."""

from __future__ import annotations

from typing import Any

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.browser.conftest import Console
from tests.e2e.conftest import wait_idle


def _msg(text: str) -> list[dict[str, Any]]:
    return [{"type": "user.message", "content": [{"type": "text", "text": text}]}]


def _rows(console: Console) -> list[str]:
    # the list rendered for the current fragment, not the previous view's table
    console.page.wait_for_function("() => document.getElementById('main').dataset.rendered === location.hash")
    console.page.locator("table.sessions").wait_for()
    return list(console.page.locator("table.sessions tbody tr").evaluate_all("rs => rs.map(r => r.dataset.session)"))


def test_list_shows_status_agent_usage_cost_and_errors(
    console: Console, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a finished session, a failed one and an untouched one, of two agents
    alpha = client.beta.agents.create(name="alpha", model="claude-sonnet-4-6")
    beta = client.beta.agents.create(name="beta", model="claude-haiku-4-5")
    env = client.beta.environments.create(name="prod-env")
    ok = client.beta.sessions.create(agent=alpha.id, environment_id=env.id, title="happy path", metadata={"team": "a"})
    bad = client.beta.sessions.create(agent=beta.id, environment_id=env.id, title="broken", metadata={"team": "b"})
    idle = client.beta.sessions.create(agent=beta.id, environment_id=env.id, title="untouched")
    model_server.push(
        {"content": [{"type": "text", "text": "done"}], "usage": {"input_tokens": 1200, "output_tokens": 300}},
        {"error": {"status": 400, "type": "invalid_request_error", "message": "prompt is too long"}},
    )
    client.beta.sessions.events.send(ok.id, events=_msg("work"))
    wait_idle(client, ok.id)
    client.beta.sessions.events.send(bad.id, events=_msg("fail"))
    wait_idle(client, bad.id)
    # When the list is opened
    console.sign_in()
    rows = _rows(console)
    # Then every session is listed, newest first
    assert rows == [idle.id, bad.id, ok.id]
    page = console.page
    ok_row = page.locator(f'tr[data-session="{ok.id}"]')
    text = ok_row.inner_text()
    assert "happy path" in text and "idle" in text and "alpha v1" in text and "prod-env" in text
    assert "1,200 / 300" in text
    # And the cost is estimated from the price table (Sonnet 4.6: $3 in, $15 out per MTok)
    assert "$0.0081" in text
    # And the failed session carries an error badge naming the error and its retry status
    bad_row = page.locator(f'tr[data-session="{bad.id}"]')
    badge = bad_row.locator("td.errors a.badge-error")
    badge.wait_for()
    assert "model_request_failed_error" in badge.inner_text() and "exhausted" in badge.inner_text()
    page.locator(f'tr[data-session="{ok.id}"] td.errors').get_by_text("none").wait_for()
    console.screenshot("sessions-list")


def test_filters_search_and_paging(console: Console, client: anthropic.Anthropic, server: Any) -> None:
    alpha = client.beta.agents.create(name="alpha", model="claude-sonnet-4-6")
    beta = client.beta.agents.create(name="beta", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e")
    a_ids = [
        client.beta.sessions.create(agent=alpha.id, environment_id=env.id, metadata={"team": f"t{i % 2}"}).id
        for i in range(23)
    ]
    b_id = client.beta.sessions.create(agent=beta.id, environment_id=env.id, title="the beta one").id
    console.sign_in()
    page = console.page
    # Paging: 20 per page, the next page holds the rest
    assert len(_rows(console)) == 20
    page.get_by_role("link", name="Next page").click()
    page.get_by_role("button", name="Previous page").wait_for()
    assert set(_rows(console)) == set(a_ids[:4])
    # Filter by agent
    console.go("#/sessions")
    page.get_by_label("Agent").select_option(beta.id)
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_function("() => location.hash.includes('agent=')")
    assert _rows(console) == [b_id]
    # Filter by status: nothing is running
    console.go("#/sessions")
    page.get_by_label("running").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_function("() => location.hash.includes('status=running')")
    assert _rows(console) == []
    # Filter by metadata
    console.go("#/sessions")
    page.get_by_label("Metadata").fill("team=t1")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_function("() => location.hash.includes('meta=')")
    assert set(_rows(console)) == {sid for i, sid in enumerate(a_ids) if i % 2 == 1}
    # Filter by time range: created after every session -> none
    console.go("#/sessions")
    page.get_by_label("Created from").fill("2999-01-01T00:00")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_function("() => location.hash.includes('from=')")
    assert _rows(console) == []
    console.screenshot("filtered-empty")
    # Search by id opens the session
    console.go("#/sessions")
    page.get_by_label("Session id").fill(b_id)
    page.get_by_role("button", name="Open").click()
    console.wait_trace()
    assert "the beta one" in page.locator("main").inner_text()
