"""Signing in: a good key sees its workspace; a wrong, revoked or foreign key sees nothing it should not."""

from __future__ import annotations

import anthropic

from tests.browser.conftest import Console
from tests.e2e.conftest import Server


def _session(client: anthropic.Anthropic, title: str) -> str:
    agent = client.beta.agents.create(name="signin-agent", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="signin-env")
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, title=title).id


def test_wrong_key_sees_the_401_message_and_nothing_else(console: Console, client: anthropic.Anthropic) -> None:
    # Given a workspace with a session
    _session(client, "secret work")
    # When someone signs in with a wrong key
    console.open()
    page = console.page
    page.get_by_label("API key").fill("sk-ma-not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    # Then the API's 401 message is shown and nothing of the workspace
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "invalid API key" in alert.inner_text()
    assert page.get_by_role("navigation", name="Main").is_hidden()
    assert "secret work" not in page.content()
    assert page.evaluate("Object.keys(sessionStorage).length") == 0
    console.screenshot("wrong-key")


def test_sign_in_keeps_the_key_in_session_storage_never_in_the_url(console: Console, server: Server) -> None:
    # When the admin signs in
    console.sign_in()
    page = console.page
    page.get_by_role("heading", name="Sessions").wait_for()
    # Then the key is in sessionStorage, sent as a header, and in no URL
    stored = page.evaluate("Object.values(sessionStorage)")
    assert stored == [server.admin_key]
    assert server.admin_key not in page.url
    assert all(server.admin_key not in u for u in console.requests)
    # And signing out forgets it
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("Object.keys(sessionStorage).length") == 0


def test_revoked_key_is_signed_out_with_the_401_message(
    console: Console, server: Server, client: anthropic.Anthropic
) -> None:
    # Given a second key of the same workspace, signed in
    ws = server.rt.keys.workspaces()[0]["id"]
    doc, secret = server.rt.keys.create_key(str(ws), name="temp")
    _session(client, "still here")
    console.sign_in(secret)
    console.page.get_by_role("link", name="still here").or_(console.page.get_by_text("still here")).first.wait_for()
    # When the key is revoked and the user navigates
    server.rt.keys.revoke(str(doc["id"]))
    console.go("#/agents")
    # Then the console drops the key and shows the API's message on the sign-in form
    alert = console.page.get_by_role("alert")
    alert.wait_for()
    assert "invalid API key" in alert.inner_text()
    assert console.page.get_by_label("API key").is_visible()
    assert console.page.evaluate("Object.keys(sessionStorage).length") == 0
    # And a fresh sign-in with the revoked key is refused too
    console.page.get_by_label("API key").fill(secret)
    console.page.get_by_role("button", name="Sign in").click()
    console.page.get_by_role("alert").wait_for()
    assert console.page.get_by_role("navigation", name="Main").is_hidden()


def test_another_workspace_sees_not_found(console: Console, server: Server, client: anthropic.Anthropic) -> None:
    # Given a session in the admin's workspace and a key of another workspace
    sid = _session(client, "workspace A only")
    other_ws = server.rt.keys.create_workspace("other")
    _, other_key = server.rt.keys.create_key(other_ws, name="other")
    # When the other workspace opens the session by id
    console.sign_in(other_key, fragment=f"#/sessions/{sid}")
    page = console.page
    # Then it is not found, with the API's message, and nothing of the session shows
    page.get_by_role("heading", name="Session not found").wait_for()
    assert sid in page.get_by_role("alert").inner_text()
    assert "workspace A only" not in page.content()
    console.screenshot("cross-workspace-not-found")
    # And its sessions list does not show it either
    console.go("#/sessions")
    page.get_by_role("table").wait_for()
    assert sid not in page.content()
    assert "0 sessions on this page" in page.locator("caption").inner_text()
