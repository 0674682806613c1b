"""Agents with their versions and a diff between two versions; environments with their configuration."""

from __future__ import annotations

import anthropic

from tests.browser.conftest import Console


def test_agent_versions_and_diff(console: Console, client: anthropic.Anthropic) -> None:
    # Given an agent updated twice
    agent = client.beta.agents.create(name="writer", model="claude-sonnet-4-6", system="Be brief.")
    client.beta.agents.update(agent.id, version=1, system="Be thorough.")
    client.beta.agents.update(agent.id, version=2, description="writes reports", metadata={"team": "docs"})
    # When its page is opened
    console.sign_in(fragment=f"#/agents/{agent.id}")
    page = console.page
    page.get_by_role("heading", name="Versions", exact=True).wait_for()
    # Then every version is listed
    assert page.locator("table tbody tr").count() == 3
    # And the default diff compares the last two versions
    summary = page.locator("#diff-summary")
    summary.wait_for()
    assert "Version 2 → 3" in summary.inner_text()
    assert "description" in summary.inner_text() and "metadata" in summary.inner_text()
    assert "system" not in summary.inner_text().split("Changed fields:")[1]
    # When versions 1 and 2 are compared
    page.get_by_label("From version").select_option("1")
    page.get_by_label("To version").select_option("2")
    page.get_by_role("button", name="Show diff").click()
    page.wait_for_function("() => document.querySelector('#diff-summary')?.textContent.includes('1 → 2')")
    # Then the system prompt change is shown line by line
    assert "system" in page.locator("#diff-summary").inner_text()
    assert any('"system": "Be brief."' in t for t in page.locator("pre.diff del").all_inner_texts())
    assert any('"system": "Be thorough."' in t for t in page.locator("pre.diff ins").all_inner_texts())
    assert "a=1&b=2" in page.url
    console.screenshot("agent-diff")
    # And the agents list links to it with its latest version
    console.go("#/agents")
    row = page.get_by_role("row").filter(has_text="writer")
    row.wait_for()
    assert "3" in row.inner_text()


def test_environments_page(console: Console, client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(
        name="locked-down",
        config={
            "type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": ["api.github.com"], "allow_package_managers": True},
            "packages": {"pip": ["pandas==2.2.0"]},
        },
    )
    client.beta.environments.create(name="worker-side", config={"type": "self_hosted"})
    console.sign_in(fragment="#/environments")
    page = console.page
    row = page.get_by_role("row").filter(has_text="locked-down")
    row.wait_for()
    text = row.inner_text()
    assert "cloud" in text and "limited: api.github.com" in text and "pip: pandas==2.2.0" in text
    assert "self_hosted" in page.get_by_role("row").filter(has_text="worker-side").inner_text()
    console.screenshot("environments")
    row.get_by_role("link", name="locked-down").click()
    page.get_by_role("heading", name=f"Environment locked-down {env.id}").wait_for()
    assert "api.github.com" in page.locator("pre.content").inner_text()
