"""Self-hosted environments: the user runs the official EnvironmentWorker with an environment key."""

from __future__ import annotations

import logging
from pathlib import Path

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, create_environment_key, wait_idle, wait_until
from tests.e2e.sandbox_support import (
    SELF_HOSTED_RESULT,
    TOOLSET,
    WorkerThread,
    check_file_workflow,
    push_file_workflow,
    result_texts,
    tool_step,
)


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
    check_file_workflow(events, SELF_HOSTED_RESULT)
    assert events[-1].stop_reason.type == "end_turn"
    assert len(model_server.requests) == 6
    tool_results = [
        b for r in model_server.requests[1:] for b in r["body"]["messages"][-1]["content"] if b["type"] == "tool_result"
    ]
    assert [b["tool_use_id"] for b in tool_results] == ["toolu_w", "toolu_e", "toolu_g", "toolu_b", "toolu_r"]
    # And the file is on the worker's machine
    assert (tmp_path / "worker" / "notes.txt").read_text() == "alpha\ngamma\n"
    model_server.assert_complete()


ASK_TOOLSET = {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}


def test_confirmation_gates_the_official_worker(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    # Given an always_ask agent in a self-hosted environment served by the official worker
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[ASK_TOOLSET])
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    key = create_environment_key(client, env.id)
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model_server.push(
        tool_step("toolu_1", "bash", {"command": "echo ran > denied.txt"}),
        tool_step("toolu_2", "bash", {"command": "echo ran > allowed.txt; echo allowed-ok"}),
        "finished",
    )
    workdir = tmp_path / "worker"
    with WorkerThread(server.url, env.id, key, workdir) as worker:
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
        )
        # When the first call is denied
        events = wait_idle(client, sid, timeout=30)
        first = next(e for e in events if e.type == "agent.tool_use")
        assert first.evaluated_permission == "ask" and events[-1].stop_reason.type == "requires_action"
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.tool_confirmation", "tool_use_id": first.id, "result": "deny"}]
        )
        # And the second is allowed
        events = wait_idle(client, sid, timeout=30, count=2)
        second = [e for e in events if e.type == "agent.tool_use"][1]
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.tool_confirmation", "tool_use_id": second.id, "result": "allow"}]
        )
        events = wait_idle(client, sid, timeout=30, count=3)
        assert worker.error is None
    # Then the worker never ran the denied call and ran the allowed one
    assert not (workdir / "denied.txt").exists()
    assert (workdir / "allowed.txt").read_text() == "ran\n"
    results = result_texts(events, SELF_HOSTED_RESULT)
    assert "allowed-ok" in results["bash"][0]
    assert events[-1].stop_reason.type == "end_turn"


def test_a_stolen_lease_makes_the_first_worker_let_go(
    server: Server,
    client: anthropic.Anthropic,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the official worker holding the lease of a session's work item
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    key = create_environment_key(client, env.id)
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model_server.push("hello")
    caplog.set_level(logging.INFO, logger="anthropic.lib.environments")
    with WorkerThread(server.url, env.id, key, tmp_path / "worker") as worker:
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]
        )
        item = wait_until(lambda: next(iter(server.rt.resources.find("work", "session_id", [sid])), None), timeout=10)
        held = wait_until(
            lambda: client.beta.environments.work.retrieve(item.id, environment_id=env.id).latest_heartbeat_at,
            timeout=15,
        )
        # When a second holder takes the lease over by echoing the current heartbeat
        thief = server.client(key).beta.environments.work
        taken = thief.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat=held, desired_ttl_seconds=60)
        assert taken.lease_extended
        # Then the first worker's next heartbeat meets 412 and it lets the item go without stopping it
        wait_until(lambda: "lease lost" in caplog.text, timeout=20)
        assert worker.error is None
        got = client.beta.environments.work.retrieve(item.id, environment_id=env.id)
        assert got.state == "active" and got.latest_heartbeat_at == taken.last_heartbeat
        # And the new holder keeps the lease
        again = thief.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat=taken.last_heartbeat)
        assert again.lease_extended


def test_a_child_threads_bash_call_runs_in_the_sessions_sandbox_through_the_official_worker(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    # Given a coordinator whose subagent uses bash, in a self-hosted environment served by the official worker
    ops = client.beta.agents.create(name="ops", model="claude-sonnet-4-6", tools=[TOOLSET])
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [ops.id]}
    )
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    key = create_environment_key(client, env.id)
    sid = client.beta.sessions.create(agent=lead.id, environment_id=env.id).id
    delegate = {"type": "tool_use", "name": "delegate_to_ops", "input": {"message": "count the files"}}
    model_server.push(
        {"match": "tidy up", "content": [delegate]},
        {"match": "count the files", **tool_step("toolu_c", "bash", {"command": "echo from-child > c.txt; echo c-ok"})},
        {"match": "c-ok", "content": [{"type": "text", "text": "wrote c.txt"}]},
        {"match": "wrote c.txt", "content": [{"type": "text", "text": "Tidied."}]},
    )
    with WorkerThread(server.url, env.id, key, tmp_path / "worker") as worker:
        # When the user asks and the coordinator delegates
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "tidy up"}]}]
        )
        events = wait_idle(client, sid, timeout=60)
        assert worker.error is None
    # Then the child's bash call ran in the session's sandbox (the one worker) and its result reached the child
    assert (tmp_path / "worker" / "c.txt").read_text() == "from-child\n"
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Tidied."]
    (child,) = [t for t in client.beta.sessions.threads.list(sid) if t.parent_thread_id]
    use = next(e for e in events if e.type == "agent.tool_use")
    assert use.session_thread_id == child.id and use.name == "bash"
    routed = [e for e in events if e.type == SELF_HOSTED_RESULT]
    assert len(routed) == 1 and routed[0].tool_use_id == use.id and routed[0].session_thread_id == child.id
    own = list(client.beta.sessions.threads.events.list(child.id, session_id=sid))
    results = [e for e in own if e.type == SELF_HOSTED_RESULT]
    assert [e.id for e in results] == [routed[0].id] and "c-ok" in results[0].content[0].text
    child_request = next(r for r in model_server.requests if "wrote" not in str(r) and "c-ok" in str(r))
    assert child_request["body"]["messages"][-1]["content"][0]["type"] == "tool_result"
    model_server.assert_complete()
