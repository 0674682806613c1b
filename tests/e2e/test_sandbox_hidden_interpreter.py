"""A server run from a venv (and a checkout) under the home or under /tmp, where most people clone: bubblewrap hides
both, so the sandbox must mount back, read-only, what the worker runs from and still hide the rest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from managed_agents.adapters.local.subprocess_sandbox import ENTRYPOINT, bubblewrap_path
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, embedded_only, wait_idle
from tests.e2e.sandbox_support import CLOUD_RESULT, TOOLSET, result_texts, tool_step

REPO = Path(__file__).resolve().parents[2]
UV = os.environ.get("UV") or shutil.which("uv")
pytestmark = [
    embedded_only("bubblewrap's mounts of the embedded provisioner"),
    pytest.mark.skipif(bubblewrap_path() is None, reason="bubblewrap (bwrap) is not installed here"),
    pytest.mark.skipif(UV is None, reason="uv (which installs this project) is not on PATH"),
]


@pytest.fixture(params=["home", "tmp"])
def hidden_checkout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A checkout with its own venv (the official SDK installed in it), in a home-like directory or under /tmp."""
    if request.param == "home":  # a home outside /tmp, so only its being the home hides it
        root = Path(tempfile.mkdtemp(prefix=".test-home-", dir=REPO))
        checkout = root / "src" / "proj"
    else:
        root = Path(tempfile.mkdtemp(prefix="test-checkout-", dir="/tmp"))
        checkout = root
    venv = checkout / ".venv"
    assert UV is not None
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            f"anthropic=={anthropic.__version__}",
        ],
        check=True,
    )
    entrypoint = checkout / "managed_agents" / "sandbox" / "entrypoint.py"
    entrypoint.parent.mkdir(parents=True)
    shutil.copy(ENTRYPOINT, entrypoint)
    (checkout / "private.txt").write_text("not-for-the-sandbox")
    if request.param == "home":
        monkeypatch.setenv("HOME", str(root))  # after uv ran: it keeps its cache under the real home
    yield checkout
    shutil.rmtree(root, ignore_errors=True)


def test_a_worker_run_from_a_hidden_venv_serves_tools_and_the_rest_stays_hidden(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, hidden_checkout: Path
) -> None:
    # Given a provisioner that runs the worker with the checkout's venv and entrypoint, both under a hidden directory
    provisioner = server.rt.provisioner
    assert provisioner is not None and provisioner.bwrap is not None
    venv_python = hidden_checkout / ".venv" / "bin" / "python"
    provisioner.python = str(venv_python)
    provisioner.entrypoint = hidden_checkout / "managed_agents" / "sandbox" / "entrypoint.py"
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    private = hidden_checkout / "private.txt"
    probe = (
        f"echo hidden-$((40+2)); cat {private} 2>/dev/null || echo no-private; echo listing:; ls -A {hidden_checkout}"
    )
    model_server.push(tool_step("toolu_b", "bash", {"command": probe + "; echo :listed"}), "ran")
    # When the model runs a command
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
    )
    events = wait_idle(client, sid, timeout=60)
    # Then the sandbox started from that venv and ran it
    assert not [e for e in events if e.type == "session.error"], [
        e.error.message for e in events if e.type == "session.error"
    ]
    text, is_error = result_texts(events, CLOUD_RESULT)["bash"]
    assert not is_error and "hidden-42" in text
    pid = provisioner.pid(sid)
    assert pid is not None
    assert str(venv_python) in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    # And only what the worker runs from came back: the checkout's other files stay hidden
    assert "not-for-the-sandbox" not in text and "no-private" in text
    assert text.split("listing:")[1].split(":listed")[0].split() == [".venv", "managed_agents"]
