"""Skills with their versions; memory stores with their memories and a memory's version history."""

from __future__ import annotations

import anthropic

from tests.browser.conftest import Console

SKILL_MD = b"---\nname: csv-tools\ndescription: Summarise CSV files.\n---\n"


def test_skills_list_and_versions(console: Console, client: anthropic.Anthropic) -> None:
    # Given a skill with two versions
    skill = client.beta.skills.create(files=[("csv-tools/SKILL.md", SKILL_MD)], display_name="CSV tools")
    v2 = client.beta.skills.versions.create(
        skill.id, files=[("csv-tools/SKILL.md", SKILL_MD.replace(b"Summarise", b"Chart"))]
    )
    # When the skills page is opened, the skill is listed with its latest version
    console.sign_in(fragment="#/skills")
    page = console.page
    row = page.get_by_role("row").filter(has_text="CSV tools")
    row.wait_for()
    assert v2.id in row.inner_text()
    # And its page lists both versions, newest first, with their descriptions
    row.get_by_role("link", name="CSV tools").click()
    page.get_by_role("heading", name="Versions", exact=True).wait_for()
    rows = page.locator("table tbody tr")
    assert rows.count() == 2
    assert "Chart CSV files." in rows.nth(0).inner_text() and "(latest)" in rows.nth(0).inner_text()
    assert "Summarise CSV files." in rows.nth(1).inner_text()
    console.screenshot("skill-versions")


def test_memory_stores_memories_and_version_history(console: Console, client: anthropic.Anthropic) -> None:
    # Given a store whose memory was written, changed, and an older version redacted
    store = client.beta.memory_stores.create(name="Team Notes", description="what we learned")
    mem = client.beta.memory_stores.memories.create(store.id, path="/notes/todo.md", content="first draft")
    client.beta.memory_stores.memories.update(mem.id, memory_store_id=store.id, content="second draft")
    client.beta.memory_stores.memories.update(mem.id, memory_store_id=store.id, content="final")
    oldest = list(client.beta.memory_stores.memory_versions.list(store.id, memory_id=mem.id))[-1]
    client.beta.memory_stores.memory_versions.redact(oldest.id, memory_store_id=store.id)
    # When the memory stores page is opened and the store followed
    console.sign_in(fragment="#/memory_stores")
    page = console.page
    row = page.get_by_role("row").filter(has_text="Team Notes")
    row.wait_for()
    assert "what we learned" in row.inner_text()
    row.get_by_role("link", name="Team Notes").click()
    page.get_by_role("heading", name="Memories", exact=True).wait_for()
    # Then its memories are listed by path; the memory's page shows its content and every version
    page.get_by_role("link", name="/notes/todo.md").click()
    page.get_by_role("heading", name="Version history", exact=True).wait_for()
    assert "final" in page.locator("pre.content").first.inner_text()
    rows = page.locator("table tbody tr")
    assert rows.count() == 3
    texts = [rows.nth(i).inner_text() for i in range(3)]
    assert "modified" in texts[0] and "final" in texts[0]
    assert "second draft" in texts[1]
    assert "created" in texts[2] and "redacted" in texts[2] and "first draft" not in texts[2]
    console.screenshot("memory-history")
