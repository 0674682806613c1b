"""Skills and memory stores in a cloud session's sandbox: the official worker downloads the agent's skills into
`skills/<name>/` and mounts the session's memory stores, through the API, with its work token."""

from __future__ import annotations

from typing import Any

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, embedded_only, wait_idle
from tests.e2e.sandbox_support import CLOUD_RESULT, TOOLSET, result_texts, tool_step

pytestmark = embedded_only(
    "the embedded subprocess/bubblewrap sandbox runs the official worker; the Fargate stand-in's tool run is"
    " tests/aws/test_state_machine_with_real_handlers.py"
)
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
