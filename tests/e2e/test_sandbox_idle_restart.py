"""A cloud sandbox stops after its idle timeout and a later tool call restarts it, with the session's files."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, embedded_only, sandbox_isolation, wait_idle, wait_until
from tests.e2e.sandbox_support import CLOUD_RESULT, TOOLSET, result_texts, tool_step

pytestmark = embedded_only("the local provisioner's idle stop and restart of a sandbox subprocess (pid, workdir)")


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "data"),
        sse_ping_seconds=0.5,
        work_lease_ttl_seconds=6,
        sandbox_idle_seconds=1,
        sandbox_isolation=sandbox_isolation(),
    )


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def test_idle_sandbox_stops_and_the_next_call_restarts_it_with_the_session_files(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model_server.push(tool_step("toolu_1", "write", {"file_path": "keep.txt", "content": "kept"}), "written")
    _say(client, sid, "write")
    wait_idle(client, sid, timeout=60)
    assert server.rt.provisioner is not None
    provisioner = server.rt.provisioner
    # When the session stays idle longer than the sandbox idle timeout
    wait_until(lambda: provisioner.pid(sid) is None, timeout=30)
    # Then the worker stopped its work item itself (a clean stop, no error for the session)
    items = server.rt.resources.find("work", "session_id", [sid])
    assert [w.doc["state"] for w in items] == ["stopped"]
    # When the user comes back and the model uses a tool again
    model_server.push(tool_step("toolu_2", "read", {"file_path": "keep.txt"}), "read it")
    _say(client, sid, "read")
    events = wait_idle(client, sid, timeout=60, count=2)
    # Then a fresh sandbox served it, and the session's files were still there
    assert "kept" in result_texts(events, CLOUD_RESULT)["read"][0]
    assert not any(e.type == "session.error" for e in events)
    assert len(server.rt.resources.find("work", "session_id", [sid])) == 2
