"""The system prompt's session part: skills and memory stores, after the agent's own prompt, in the cached prefix."""

from __future__ import annotations

from typing import Any

from managed_agents.harness.context import build_request, session_context
from managed_agents.harness.tools import Toolbox

AGENT: dict[str, Any] = {"model": {"id": "m"}, "system": "You are terse.", "tools": [], "mcp_servers": []}
SESSION: dict[str, Any] = {
    "_skills": [{"name": "csv-tools", "description": "Summarise CSV files."}],
    "resources": [
        {"type": "file", "id": "sesrsc_1", "file_id": "file_1", "mount_path": "/mnt/session/uploads/file_1"},
        {
            "type": "memory_store",
            "memory_store_id": "memstore_1",
            "name": "Team Notes",
            "description": "What the team learned.",
            "instructions": "Append, never rewrite.",
            "access": "read_only",
            "mount_path": "/mnt/memory/team-notes",
        },
    ],
}


def test_skills_and_memory_stores_follow_the_agents_prompt_in_one_cached_prefix() -> None:
    context = session_context(SESSION)
    assert context is not None
    req = build_request(AGENT, Toolbox(AGENT), [], max_tokens=10, context=context)
    system = req["system"]
    assert [b["text"] for b in system] == ["You are terse.", context]
    assert "cache_control" not in system[0] and system[1]["cache_control"] == {"type": "ephemeral"}
    assert "- csv-tools: Summarise CSV files. (instructions: skills/csv-tools/SKILL.md)" in context
    assert "- /mnt/memory/team-notes (Team Notes, read-only): What the team learned." in context
    assert "Instructions: Append, never rewrite." in context
    assert "file_1" not in context


def test_a_session_without_skills_or_stores_adds_nothing() -> None:
    assert session_context({"resources": []}) is None
    req = build_request(AGENT, Toolbox(AGENT), [], max_tokens=10, context=session_context({}))
    assert req["system"] == [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    bare = build_request({**AGENT, "system": None}, Toolbox(AGENT), [], max_tokens=10, context="ctx")
    assert bare["system"] == [{"type": "text", "text": "ctx", "cache_control": {"type": "ephemeral"}}]


def test_stores_a_sandbox_cannot_mount_are_named_but_not_as_folders() -> None:
    context = session_context(SESSION, memory_mounted=False)
    assert context is not None
    assert "csv-tools" in context and "Team Notes" in context and "cannot mount them" in context
    assert "/mnt/memory" not in context and "Instructions:" not in context
