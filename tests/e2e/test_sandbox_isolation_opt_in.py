"""Unisolated cloud sandboxes only on the operator's explicit opt-in; when opted in, a sandbox's whole process tree
ends with it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, embedded_only, wait_idle, wait_until
from tests.e2e.sandbox_support import CLOUD_RESULT, TOOLSET, result_texts, tool_step

pytestmark = embedded_only("the embedded provisioner's isolation modes and its subprocesses")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _cloud_session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def test_without_bubblewrap_and_without_opt_in_cloud_sandboxes_are_refused_with_how_to_fix_it(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a server on a machine without bubblewrap whose operator did not opt in to unisolated sandboxes
    provisioner = server.rt.provisioner
    assert provisioner is not None
    provisioner.mode, provisioner.bwrap = "auto", None
    sid = _cloud_session(client)
    model_server.push(
        tool_step("toolu_env", "bash", {"command": f"cat {Path(server.rt.settings.data_dir).resolve()}/admin.key"}),
        {"match": "abandoned", "content": [{"type": "text", "text": "no sandbox"}]},
    )
    # When the model uses a tool
    _say(client, sid, "read the key")
    events = wait_idle(client, sid, timeout=60)
    # Then no sandbox ran: the call got an error result, and the session an error that says how to fix it
    text, is_error = result_texts(events, CLOUD_RESULT)["bash"]
    assert is_error and server.admin_key not in text
    errors = [e.error.message for e in events if e.type == "session.error"]
    assert errors, [e.type for e in events]
    for message in errors:
        assert "apt-get install bubblewrap" in message and "--sandbox-isolation none" in message
    assert provisioner.pid(sid) is None
    assert not any(provisioner.workdir(sid).glob("*"))


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "data"), sse_ping_seconds=0.5, work_lease_ttl_seconds=6, sandbox_isolation="none"
    )


@pytest.fixture
def daemons() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("end", ["session deleted", "worker killed"])
def test_an_opted_in_unisolated_sandbox_ends_with_every_process_it_started(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, daemons: list[int], end: str
) -> None:
    # Given an operator who opted in, and a sandbox whose bash started a background job and a detached daemon
    provisioner = server.rt.provisioner
    assert provisioner is not None and provisioner.bwrap is None and provisioner.refusal is None
    sid = _cloud_session(client)
    command = (
        "sleep 600 </dev/null >/dev/null 2>&1 & echo $! > job.pid; "
        "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > daemon.pid; echo started"
    )
    model_server.push(tool_step("toolu_bg", "bash", {"command": command}), "started them")
    _say(client, sid, "start")
    events = wait_idle(client, sid, timeout=60)
    assert result_texts(events, CLOUD_RESULT)["bash"] == ("started", False)
    workdir = provisioner.workdir(sid)
    daemons.extend(int((workdir / name).read_text()) for name in ("job.pid", "daemon.pid"))
    assert all(_alive(pid) for pid in daemons)
    supervisor = provisioner.pid(sid)
    assert supervisor is not None
    # When the sandbox ends: its session is deleted, or its worker process (the supervisor's child) crashes
    if end == "session deleted":
        client.beta.sessions.delete(sid)
    else:
        worker = int(Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()[0])
        os.kill(worker, signal.SIGKILL)
    # Then every process it started is gone, the detached daemon too
    wait_until(lambda: not any(_alive(pid) for pid in daemons), timeout=15)
