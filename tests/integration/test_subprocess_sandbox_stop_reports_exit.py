"""`SubprocessSandboxProvisioner.stop` returns only once the sandbox's exit is reported (its work item stopped).

Before, `stop` returned as soon as the process was gone while its watcher thread reported the exit later (after
the stop hooks, which collect outputs): in that window the item still looked live, so a tool call logged then was
charged to the dead sandbox and abandoned with an error result instead of getting fresh hands (seen under CI load
in tests/e2e/test_sandbox_cloud.py). The worker here is a stand-in process; the real one is covered end to end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from managed_agents.adapters.local.subprocess_sandbox import SubprocessSandboxProvisioner
from managed_agents.ports import SandboxLaunch

SLOW_HOOK_SECONDS = 1.0


@pytest.fixture
def provisioner(tmp_path: Path) -> SubprocessSandboxProvisioner:
    # A stand-in worker: reads its configuration like the entrypoint does, then waits to be stopped
    entrypoint = tmp_path / "worker.py"
    entrypoint.write_text("import sys, time\nsys.stdin.read()\ntime.sleep(120)\n")
    prov = SubprocessSandboxProvisioner(tmp_path / "sandboxes", isolation="none", python=sys.executable)
    prov.entrypoint = entrypoint
    yield prov
    prov.close()


def _spec(session_id: str, work_id: str) -> SandboxLaunch:
    return SandboxLaunch(
        work_id=work_id,
        environment_id="env_1",
        session_id=session_id,
        secret="s",
        api_url="http://127.0.0.1:9",
        packages={},
        networking={},
    )


def test_stop_returns_after_the_exit_is_reported_even_when_the_watcher_is_late(
    provisioner: SubprocessSandboxProvisioner,
) -> None:
    # Given a running sandbox whose watcher is slow to report its exit (a stop hook that takes a while, as under load)
    reported: list[str] = []
    provisioner.stopped_hooks.append(lambda _sid: time.sleep(SLOW_HOOK_SECONDS))
    provisioner.launch(_spec("sesn_a", "work_a"), lambda work_id, _code, _detail: reported.append(work_id))
    assert provisioner.pid("sesn_a") is not None
    # When it is stopped
    provisioner.stop("sesn_a", None)
    # Then the exit was reported (the work item stopped) before stop returned, exactly once
    assert reported == ["work_a"]
    assert provisioner.pid("sesn_a") is None
