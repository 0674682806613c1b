"""Self-hosted environments: the user runs the official EnvironmentWorker with an environment key."""

from __future__ import annotations

from pathlib import Path

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, create_environment_key, wait_idle
from tests.e2e.sandbox_support import TOOLSET, WorkerThread, check_file_workflow, push_file_workflow


def test_official_worker_runs_every_builtin_tool_and_the_session_finishes(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    # Given a self-hosted environment served by the official worker, and a model that uses every file tool
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    key = create_environment_key(client, env.id)
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    push_file_workflow(model_server)
    with WorkerThread(server.url, env.id, key, tmp_path / "worker") as worker:
        # When the user asks
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "edit the notes"}]}]
        )
        events = wait_idle(client, sid, timeout=60)
        assert worker.error is None
    # Then every call was run by the worker and its result reached the model
    check_file_workflow(events)
    assert events[-1].stop_reason.type == "end_turn"
    assert len(model_server.requests) == 6
    tool_results = [
        b for r in model_server.requests[1:] for b in r["body"]["messages"][-1]["content"] if b["type"] == "tool_result"
    ]
    assert [b["tool_use_id"] for b in tool_results] == ["toolu_w", "toolu_e", "toolu_g", "toolu_b", "toolu_r"]
    # And the file is on the worker's machine
    assert (tmp_path / "worker" / "notes.txt").read_text() == "alpha\ngamma\n"
    model_server.assert_complete()
