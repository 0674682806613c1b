"""Skills and memory stores in a cloud session's sandbox: the official worker downloads the agent's skills into
`skills/<name>/` and mounts the session's memory stores, through the API, with its work token."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from managed_agents.adapters.local.subprocess_sandbox import bubblewrap_path
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle
from tests.e2e.sandbox_support import CLOUD_RESULT, TOOLSET, result_texts, tool_step

# Both legs: the embedded sandbox (bubblewrap) and the Fargate stand-in (moto's RunTask runs the official worker in a
# mount namespace whose /mnt/memory is the task's own, as the image gives the real task one:
# tests/infra/test_sandbox_image.py) mount memory stores at /mnt/memory/<slug>.


def needs_memory_mounts(server: Server) -> None:
    """Skip, saying why, where this machine gives the leg's sandbox no /mnt/memory of its own."""
    if server.platform is not None:
        if not server.platform.sandboxes.memory:
            pytest.skip("the Fargate stand-in needs a mount namespace (unshare) for its own /mnt/memory")
    elif bubblewrap_path() is None:
        pytest.skip("memory mounts need a sandbox with /mnt/memory of its own (bubblewrap)")


SKILL_MD = "---\nname: csv-tools\ndescription: Summarise CSV files.\n---\nRun scripts/count.sh on the file.\n"


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _run(client: anthropic.Anthropic, model: ScriptedModelServer, sid: str, *steps: Any) -> dict[str, tuple[str, bool]]:
    model.push(*steps, "done")
    _say(client, sid, "go")
    return result_texts(wait_idle(client, sid, timeout=90), CLOUD_RESULT)


def test_a_session_whose_agent_has_a_skill_reads_it_with_bash(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a skill with a script, and a cloud session whose agent has it
    skill = client.beta.skills.create(
        files=[("csv-tools/SKILL.md", SKILL_MD.encode()), ("csv-tools/scripts/count.sh", b'wc -l "$1"\n')]
    )
    agent = client.beta.agents.create(
        name="a", model="m", tools=[TOOLSET], skills=[{"type": "custom", "skill_id": skill.id}]
    )
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    # When the model lists and reads the skill's folder with bash
    results = _run(
        client,
        model_server,
        sid,
        tool_step("toolu_ls", "bash", {"command": "ls -R skills && cat skills/csv-tools/SKILL.md"}),
    )
    # Then the worker had downloaded exactly the uploaded files under skills/<name>/
    text, is_error = results["bash"]
    assert not is_error, text
    assert "count.sh" in text and "Run scripts/count.sh on the file." in text
    # And the model was told about the skill in the system prompt's cached prefix, the same on every request
    systems = [r["body"]["system"] for r in model_server.requests if r["body"].get("messages")]
    assert len(systems) == 2 and systems[0] == systems[1]
    text = "".join(b["text"] for b in systems[0])
    assert "csv-tools: Summarise CSV files. (instructions: skills/csv-tools/SKILL.md)" in text
    assert systems[0][-1]["cache_control"] == {"type": "ephemeral"}


def _memory_session(client: anthropic.Anthropic, resources: list[Any]) -> str:
    agent = client.beta.agents.create(name="a", model="m", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=resources).id


def test_sessions_read_and_write_memory_through_their_mounts_and_the_next_one_sees_it(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    needs_memory_mounts(server)
    # Given a store with one memory, attached read_write, and a read_only one
    notes = client.beta.memory_stores.create(name="Team Notes", description="what we learned")
    client.beta.memory_stores.memories.create(notes.id, path="/todo.md", content="ship the release\n")
    rules = client.beta.memory_stores.create(name="Rules")
    client.beta.memory_stores.memories.create(rules.id, path="/rules.md", content="be kind\n")
    resources = [
        {"type": "memory_store", "memory_store_id": notes.id},
        {"type": "memory_store", "memory_store_id": rules.id, "access": "read_only"},
    ]
    sid = _memory_session(client, resources)
    # When the model reads the memory with bash, writes a new file under the mount and tries the read-only store
    results = _run(
        client,
        model_server,
        sid,
        tool_step("toolu_cat", "bash", {"command": "cat /mnt/memory/team-notes/todo.md /mnt/memory/rules/rules.md"}),
        tool_step("toolu_w", "write", {"file_path": "/mnt/memory/team-notes/learned.md", "content": "tests pass\n"}),
        tool_step(
            "toolu_ro", "edit", {"file_path": "/mnt/memory/rules/rules.md", "old_string": "kind", "new_string": "x"}
        ),
    )
    # Then bash read both stores, the write reached the store as the session's, and the read-only edit was refused
    assert "ship the release" in results["bash"][0] and "be kind" in results["bash"][0], results
    assert not results["write"][1], results
    assert results["edit"][1], results
    learned = [m for m in client.beta.memory_stores.memories.list(notes.id, view="full") if m.path == "/learned.md"]
    assert len(learned) == 1 and learned[0].content == "tests pass\n"
    version = client.beta.memory_stores.memory_versions.list(notes.id, memory_id=learned[0].id).data[0]
    assert version.created_by is not None and version.created_by.type == "session_actor"
    assert version.created_by.session_id == sid  # type: ignore[union-attr]
    assert [m.content for m in client.beta.memory_stores.memories.list(rules.id, view="full")] == ["be kind\n"]
    # And a second session reads what the first one wrote
    second = _memory_session(client, resources[:1])
    later = _run(
        client, model_server, second, tool_step("toolu_2", "bash", {"command": "cat /mnt/memory/team-notes/learned.md"})
    )
    assert "tests pass" in later["bash"][0], later
    # And the model was told where the stores are mounted
    system = "".join(b["text"] for b in model_server.requests[-1]["body"]["system"])
    assert "/mnt/memory/team-notes (Team Notes, read-write): what we learned" in system
