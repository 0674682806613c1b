"""A server restart ends its cloud sandboxes (bubblewrap's --die-with-parent; unisolated ones, their supervisor's
parent-death signal): the restarted server replaces them at once instead of waiting out their lease, and no process
a sandbox started survives it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from managed_agents.adapters.local.subprocess_sandbox import bubblewrap_path
from managed_agents.testing.loopback import free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import wait_idle, wait_until
from tests.e2e.sandbox_support import CLOUD_RESULT, TOOLSET, result_texts, tool_step
from tests.e2e.serve_process import ServeProcess

# Embedded only: restarts the `managed-agents serve` process, whose sandboxes are its subprocesses.
LEASE_SECONDS = "6"  # short, so that on a server that waits out the dead sandbox's lease the test fails quickly
needs_bwrap = pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap (bwrap) is not installed here")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def daemons() -> Iterator[list[int]]:
    """Pids of processes a sandbox detached; whatever the test leaves alive is killed afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _restart_and_use_the_sandbox_again(
    tmp_path: Path,
    model: ScriptedModelServer,
    how: str,
    isolation: str,
    first_command: str,
    when_ended: Callable[[Path], None] = lambda workdir: None,
) -> list[Any]:
    """Serve, run `first_command` in a cloud sandbox, end the server (`how`), call `when_ended` with the session's
    sandbox directory, restart the server, run a second command; the events from the second message on."""
    data_dir, port = tmp_path / "data", free_port()
    env = {"MANAGED_AGENTS_WORK_LEASE_TTL_SECONDS": LEASE_SECONDS, "MANAGED_AGENTS_SANDBOX_ISOLATION": isolation}
    procs = [ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log", env=env)]
    try:
        client = anthropic.Anthropic(
            base_url=procs[0].url, api_key=(data_dir / "admin.key").read_text().strip(), max_retries=0
        )
        agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
        environment = client.beta.environments.create(name="c", config={"type": "cloud"})
        sid = client.beta.sessions.create(agent=agent.id, environment_id=environment.id).id
        model.push(tool_step("toolu_1", "bash", {"command": first_command}), "first done")
        _say(client, sid, "first")
        first = wait_idle(client, sid, timeout=60)
        assert result_texts(first, CLOUD_RESULT)["bash"][1] is False, result_texts(first, CLOUD_RESULT)
        # When the server ends with its sandbox alive, and starts again on the same data dir
        if how == "kill9":
            procs[0].kill9()
        else:
            procs[0].stop()
        when_ended(data_dir / "sandboxes" / sid)
        procs.append(ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log", env=env))
        # And the model uses the sandbox again
        model.push(tool_step("toolu_2", "bash", {"command": "echo second-$((40+2))"}), "second done")
        _say(client, sid, "second")
        events = wait_idle(client, sid, timeout=60, count=2)
    finally:
        for p in procs:
            p.stop()
    return events[len(first) :]


@needs_bwrap
@pytest.mark.parametrize("how", ["kill9", "stop"])
def test_the_first_tool_call_after_a_restart_gets_a_fresh_sandbox_at_once(
    tmp_path: Path, model_server: ScriptedModelServer, how: str
) -> None:
    after = _restart_and_use_the_sandbox_again(tmp_path, model_server, how, "bubblewrap", "echo first")
    # Then the call ran in a fresh sandbox: no waiting out the dead one's lease, no error, no session.error
    results = [e for e in after if e.type == CLOUD_RESULT]
    assert len(results) == 1 and not results[0].is_error, [r.content for r in results]
    assert "second-42" in results[0].content[0].text
    assert not [e for e in after if e.type == "session.error"], [e.error.message for e in after]
    assert after[-1].type == "session.status_idle" and after[-1].stop_reason.type == "end_turn"


def test_an_unisolated_sandbox_takes_its_detached_processes_with_it_when_the_server_dies(
    tmp_path: Path, model_server: ScriptedModelServer, daemons: list[int]
) -> None:
    # Given an operator who opted in to unisolated sandboxes, and a sandbox that detached a daemon (its own session)
    daemon = "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > daemon.pid"

    def daemon_died(workdir: Path) -> None:
        daemons.append(int((workdir / "daemon.pid").read_text()))
        # Then the daemon dies with the server that started its sandbox
        wait_until(lambda: not _alive(daemons[0]), timeout=15)

    after = _restart_and_use_the_sandbox_again(tmp_path, model_server, "kill9", "none", daemon, daemon_died)
    # And the restarted server gave the next call fresh hands at once
    results = [e for e in after if e.type == CLOUD_RESULT]
    assert len(results) == 1 and not results[0].is_error and "second-42" in results[0].content[0].text
    assert not [e for e in after if e.type == "session.error"], [e.error.message for e in after]
