"""Cloud environments: the platform provisions one official worker per session (embedded: a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest

from managed_agents.adapters.local.subprocess_sandbox import bubblewrap_path
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, embedded_only, wait_idle, wait_until
from tests.e2e.sandbox_support import (
    CLOUD_RESULT,
    TOOLSET,
    check_file_workflow,
    push_file_workflow,
    result_texts,
    sandbox_results,
    tool_step,
)

CANARIES = {
    "ANTHROPIC_API_KEY": "sk-ant-canary-4f1d9c",
    "AWS_SECRET_ACCESS_KEY": "aws-canary-77b2e0",
    "MANAGED_AGENTS_CANARY": "server-canary-0a9f3e",
}
pytestmark = embedded_only(
    "the local subprocess/bubblewrap provisioner (pids, isolation, workdirs); the Fargate stand-in's built-in tool run"
    " is tests/aws/test_state_machine_with_real_handlers.py"
)
needs_bwrap = pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap (bwrap) is not installed here")


def _cloud_session(client: anthropic.Anthropic, config: dict[str, Any] | None = None) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config=config or {"type": "cloud"})  # type: ignore[arg-type]
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _workdir(server: Server, sid: str) -> Path:
    assert server.rt.provisioner is not None
    return server.rt.provisioner.workdir(sid)


def test_cloud_session_gets_a_sandbox_that_runs_every_builtin_tool(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a cloud session and a model that uses every file tool
    sid = _cloud_session(client)
    push_file_workflow(model_server)
    # When the user asks
    _say(client, sid, "edit the notes")
    events = wait_idle(client, sid, timeout=60)
    # Then the provisioned worker ran each call and the model saw each result
    check_file_workflow(events, CLOUD_RESULT)
    assert events[-1].stop_reason.type == "end_turn"
    assert (_workdir(server, sid) / "notes.txt").read_text() == "alpha\ngamma\n"
    # And the session's work item is the platform's (never offered to pollers) and alive until idle timeout
    work = server.rt.resources.find("work", "session_id", [sid])
    assert len(work) == 1 and work[0].doc["_platform"] and work[0].doc["state"] == "active"
    # When the session is deleted, its sandbox stops and its files go
    client.beta.sessions.delete(sid)
    assert server.rt.provisioner is not None
    wait_until(lambda: server.rt.provisioner is not None and server.rt.provisioner.pid(sid) is None, timeout=10)
    assert not _workdir(server, sid).exists()


def test_two_sessions_never_see_each_others_files(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given session A whose sandbox wrote a file
    a = _cloud_session(client)
    model_server.push(tool_step("toolu_a", "write", {"file_path": "a.txt", "content": "only-for-a"}), "written")
    _say(client, a, "write")
    wait_idle(client, a, timeout=60)
    secret_path = _workdir(server, a) / "a.txt"
    assert secret_path.read_text() == "only-for-a"
    # When session B, while A's sandbox is still up, tries to read it with the file tools and with bash
    b = _cloud_session(client)
    model_server.push(
        tool_step("toolu_r", "read", {"file_path": str(secret_path)}),
        tool_step(
            "toolu_s",
            "bash",
            {"command": f"cat {secret_path}; echo listing:; ls {secret_path.parent.parent}; echo :listed"},
        ),
        "looked",
    )
    _say(client, b, "peek")
    events = wait_idle(client, b, timeout=60)
    results = result_texts(events, CLOUD_RESULT)
    # Then the read tool refuses a path outside B's sandbox
    assert "only-for-a" not in results["read"][0]
    assert results["read"][1] is True
    # And, isolated by bubblewrap, bash does not even see the other sandbox
    assert server.rt.provisioner is not None
    if server.rt.provisioner.bwrap is not None:
        assert "only-for-a" not in results["bash"][0]
        listing = results["bash"][0].split("listing:")[1].split(":listed")[0].split()
        assert listing == [b]


@needs_bwrap
def test_canaries_of_the_server_environment_never_reach_the_sandbox_or_the_log(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given secrets in the server's environment
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    sid = _cloud_session(client)
    data_dir = Path(server.rt.settings.data_dir).resolve()
    model_server.push(
        tool_step(
            "toolu_env",
            "bash",
            {
                "command": "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
                f"ls -a {data_dir} {data_dir}/sandboxes; cat {data_dir}/admin.key; echo end-of-probe"
            },
        ),
        "checked",
    )
    # When the model runs `env` (and more) through the bash tool
    _say(client, sid, "show env")
    events = wait_idle(client, sid, timeout=60)
    output = result_texts(events, CLOUD_RESULT)["bash"][0]
    assert "end-of-probe" in output and "PATH=" in output
    # Then no canary is in the bash output, and neither are the admin key nor the work secret
    for value in CANARIES.values():
        assert value not in output
    assert server.admin_key not in output
    assert "ANTHROPIC_WORK_SECRET" not in output and "wt-ma-" not in output
    assert "managed_agents.db" not in output
    # Nor in the worker process's own environment
    assert server.rt.provisioner is not None
    pid = server.rt.provisioner.pid(sid)
    assert pid is not None
    worker_env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    for value in CANARIES.values():
        assert value not in worker_env
    assert "AWS_" not in worker_env and "ANTHROPIC_API_KEY" not in worker_env
    # Nor in any event
    dumped = json.dumps([e.model_dump(mode="json") for e in all_events(client, sid)])
    for value in CANARIES.values():
        assert value not in dumped


def test_worker_killed_mid_tool_yields_an_error_result_and_the_next_call_gets_a_fresh_sandbox(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a cloud session whose sandbox is running a long bash call
    sid = _cloud_session(client)
    model_server.push(
        tool_step("toolu_slow", "bash", {"command": "echo started > started.txt; sleep 300"}),
        {"match": "abandoned", **tool_step("toolu_again", "bash", {"command": "echo fresh-$((20+22))"})},
        "recovered",
    )
    _say(client, sid, "go")
    workdir = _workdir(server, sid)
    wait_until(lambda: (workdir / "started.txt").exists(), timeout=60)
    assert server.rt.provisioner is not None
    first_pid = server.rt.provisioner.pid(sid)
    assert first_pid is not None
    # When the sandbox is killed with SIGKILL
    os.killpg(first_pid, signal.SIGKILL)
    # (two sandboxes start in this test: under CI's load, with the compat run niced beside the main run, a fresh
    # worker's start alone has taken tens of seconds; a call wrongly re-run would still hang past this bound)
    events = wait_idle(client, sid, timeout=150)
    # Then the pending call got an error result, the session a readable error, and the model saw it
    results = sandbox_results(events, CLOUD_RESULT)
    assert results[0].is_error and "stopped unexpectedly" in results[0].content[0].text
    assert "signal 9" in results[0].content[0].text
    errors = [e for e in events if e.type == "session.error"]
    assert errors and errors[0].error.retry_status.type == "retrying"
    # And the next call ran in a fresh sandbox
    assert not results[1].is_error and "fresh-42" in results[1].content[0].text
    assert events[-1].stop_reason.type == "end_turn"
    model_server.assert_complete()
    assert len(server.rt.resources.find("work", "session_id", [sid])) == 2


def test_a_replacement_sandbox_runs_only_new_calls_never_the_answered_ones_again(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a cloud session whose sandbox ran one call, then stopped between turns (as an idle sandbox does)
    sid = _cloud_session(client)
    model_server.push(tool_step("toolu_one", "bash", {"command": "echo one >> calls.txt"}), "done once")
    _say(client, sid, "first")
    wait_idle(client, sid)
    assert server.rt.provisioner is not None
    first_pid = server.rt.provisioner.pid(sid)
    assert first_pid is not None
    server.rt.provisioner.stop(sid, None)
    wait_until(lambda: server.rt.provisioner is not None and server.rt.provisioner.pid(sid) is None, timeout=30)
    # When the next turn's call starts a fresh sandbox on the same workdir
    model_server.push(tool_step("toolu_two", "bash", {"command": "cat calls.txt; echo two >> calls.txt"}), "done")
    _say(client, sid, "second")
    events = wait_idle(client, sid, timeout=60, count=2)
    # Then the fresh worker ran the new call only: the first call, answered in the log by an `agent.tool_result`,
    # was not run again (SDK workers before 2.16 counted only `user.tool_result` as an answer and re-ran it)
    results = sandbox_results(events, CLOUD_RESULT)
    assert [r.is_error for r in results] == [False, False]
    assert results[1].content[0].text.strip() == "one"
    assert (_workdir(server, sid) / "calls.txt").read_text().split() == ["one", "two"]
    assert server.rt.provisioner.pid(sid) not in (None, first_pid)


def test_a_call_made_right_after_a_sandbox_stopped_gets_fresh_hands_even_when_the_exit_is_reported_late(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a cloud session whose sandbox ran one call, and a provisioner slow to report a sandbox's exit (its stop
    # hooks take a while, as they do under CI load: the exit used to be reported after `stop` had returned)
    assert server.rt.provisioner is not None
    server.rt.provisioner.stopped_hooks.insert(0, lambda _sid: time.sleep(2))
    sid = _cloud_session(client)
    model_server.push(tool_step("toolu_one", "bash", {"command": "echo one >> calls.txt"}), "done once")
    _say(client, sid, "first")
    wait_idle(client, sid)
    # When the sandbox is stopped between turns and the next turn makes a call at once
    server.rt.provisioner.stop(sid, None)
    model_server.push(tool_step("toolu_two", "bash", {"command": "cat calls.txt; echo two >> calls.txt"}), "done")
    _say(client, sid, "second")
    events = wait_idle(client, sid, timeout=60, count=2)
    # Then the call ran once, in a fresh sandbox: it was not charged to the stopped one (and abandoned with an error)
    results = sandbox_results(events, CLOUD_RESULT)
    assert [r.is_error for r in results] == [False, False], [r.content[0].text for r in results]
    assert results[1].content[0].text.strip() == "one"
    assert (_workdir(server, sid) / "calls.txt").read_text().split() == ["one", "two"]


def test_sandbox_that_never_starts_becomes_a_readable_session_error(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a provisioner whose worker cannot start
    assert server.rt.provisioner is not None
    server.rt.provisioner.python = "/nonexistent/python3"
    sid = _cloud_session(client)
    model_server.push(
        tool_step("toolu_x", "bash", {"command": "true"}),
        {"match": "abandoned", "content": [{"type": "text", "text": "no sandbox today"}]},
    )
    # When a tool call needs it
    _say(client, sid, "go")
    events = wait_idle(client, sid, timeout=30)
    # Then the call gets an error result naming the failure, and a session.error says so too
    (result,) = sandbox_results(events, CLOUD_RESULT)
    assert result.is_error and "/nonexistent/python3" in result.content[0].text
    errors = [e for e in events if e.type == "session.error"]
    assert errors and all("/nonexistent/python3" in e.error.message for e in errors)
    assert events[-1].stop_reason.type == "end_turn"


def test_package_install_failure_is_a_clear_session_error(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    sid = _cloud_session(client, {"type": "cloud", "packages": {"pip": ["no such package ==="]}})
    model_server.push(
        tool_step("toolu_p", "bash", {"command": "true"}),
        {"match": "abandoned", "content": [{"type": "text", "text": "cannot install"}]},
    )
    _say(client, sid, "go")
    events = wait_idle(client, sid, timeout=60)
    errors = [e for e in events if e.type == "session.error"]
    assert errors and "installing the environment's packages failed" in errors[0].error.message
    assert "pip" in errors[0].error.message
    (result,) = sandbox_results(events, CLOUD_RESULT)
    assert result.is_error and "packages failed" in result.content[0].text
