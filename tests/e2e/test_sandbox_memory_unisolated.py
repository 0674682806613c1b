"""An embedded server whose cloud sandboxes run unisolated (`--sandbox-isolation none`) cannot mount memory stores
(the worker mounts them at /mnt/memory/<slug>, which such a sandbox does not have): the model's prompt says the
stores are attached but not available as files, instead of sending it to look for them."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, embedded_only, wait_idle
from tests.e2e.sandbox_support import TOOLSET

pytestmark = embedded_only("the sandbox isolation is an embedded server's setting")


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=str(tmp_path / "data"), retry_base_seconds=0.01, sandbox_isolation="none")


def test_an_unisolated_sandbox_is_not_said_to_mount_memory(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a session of a cloud environment with a memory store
    store = client.beta.memory_stores.create(name="Team Notes", description="what we learned")
    agent = client.beta.agents.create(name="a", model="m", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    sid = client.beta.sessions.create(
        agent=agent.id, environment_id=env.id, resources=[{"type": "memory_store", "memory_store_id": store.id}]
    ).id
    # When the model is called
    model_server.push("done")
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
    )
    wait_idle(client, sid, timeout=60)
    # Then its prompt names the store as attached, not as a folder it could read
    (request,) = [r for r in model_server.requests if r["body"].get("messages")]
    text = "".join(b["text"] for b in request["body"]["system"])
    assert "cannot mount them" in text and "Team Notes" in text and "/mnt/memory/" not in text
