"""Webhook endpoints and an endpoint's delivery log: each delivery's event, state and attempts."""

from __future__ import annotations

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.browser.conftest import Console
from tests.e2e.conftest import wait_idle, wait_until
from tests.e2e.loopback_http import serve
from tests.e2e.test_webhooks_delivery import Receiver

BETA = {"anthropic-beta": "webhooks-2026-10-07"}


def test_the_delivery_log_of_an_endpoint(
    console: Console, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    receiver = Receiver(fail_first=1)
    with serve(receiver.handler()) as base:
        # Given an endpoint whose receiver failed once, then took the event (two attempts in its log)
        endpoint = client.beta.organization.webhooks.create(
            url=base + "/hooks",
            enabled_events=["session.status_idled"],  # type: ignore[list-item]
            name="ops hooks",
        )
        agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
        env = client.beta.environments.create(name="e", config={"type": "cloud"})
        session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
        model_server.push("Hello")
        client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]
        )
        wait_idle(client, session.id)
        wait_until(lambda: receiver.delivered(), timeout=30)

        def logged() -> bool:
            page = client.get(
                f"/v1/organizations/webhooks/{endpoint.id}/deliveries", cast_to=object, options={"headers": BETA}
            )
            return isinstance(page, dict) and any(d["state"] == "delivered" for d in page["data"])

        wait_until(logged, timeout=30)
    # When the webhooks page is opened, the endpoint is listed, enabled
    console.sign_in(fragment="#/webhooks")
    page = console.page
    row = page.get_by_role("row").filter(has_text="ops hooks")
    row.wait_for()
    assert "enabled" in row.inner_text() and "session.status_idled" in row.inner_text()
    assert "null" not in page.locator("main").inner_text()
    # Then its page shows the delivery log: the event, delivered after two attempts (500, then 200)
    row.get_by_role("link", name="ops hooks").click()
    page.get_by_role("heading", name="Delivery log", exact=True).wait_for()
    rows = page.locator("table tbody tr")
    assert rows.count() == 1
    text = rows.nth(0).inner_text()
    assert "session.status_idled" in text and "delivered" in text
    assert "500" in text and "200" in text and "HTTP 500" not in text  # (the last attempt had no error)
    assert "null" not in page.locator("main").inner_text()
    console.screenshot("webhook-deliveries")
