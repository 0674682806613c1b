"""Where the sandbox does not mount session resources yet (AWS: the Fargate init step is not built), a session with
file or repository resources is told so by a readable session.error when its sandbox starts, and still runs."""

from __future__ import annotations

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle
from tests.e2e.sandbox_support import TOOLSET, tool_step

pytestmark = pytest.mark.parametrize("backend", [pytest.param("aws", marks=pytest.mark.slow)])


def test_a_session_with_resources_is_told_they_are_not_mounted(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    f = client.beta.files.upload(file=("a.txt", b"a", "text/plain"))
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    sid = client.beta.sessions.create(
        agent=agent.id, environment_id=env.id, resources=[{"type": "file", "file_id": f.id}]
    ).id
    model_server.push(tool_step("toolu_1", "bash", {"command": "echo ran"}), "done")
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
    )
    events = wait_idle(client, sid, timeout=120)
    (error,) = [e.error for e in events if e.type == "session.error"]
    assert error.type == "unknown_error" and "do not mount session resources yet (file)" in error.message
    assert any(e.type == "agent.tool_result" for e in events)
