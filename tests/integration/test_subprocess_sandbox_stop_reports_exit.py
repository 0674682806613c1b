"""`SubprocessSandboxProvisioner.stop` returns only once the sandbox's exit is reported (its work item stopped).

Before, `stop` returned as soon as the process was gone while its watcher thread reported the exit later (after
the stop hooks, which collect outputs): in that window the item still looked live, so a tool call logged then was
charged to the dead sandbox and abandoned with an error result instead of getting fresh hands (seen under CI load
in tests/e2e/test_sandbox_cloud.py). The worker here is a stand-in process; the real one is covered end to end.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from managed_agents.adapters.local.subprocess_sandbox import SubprocessSandboxProvisioner
from managed_agents.ports import Mount, SandboxLaunch

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


def test_two_launches_at_once_for_one_session_leave_one_sandbox_running(
    provisioner: SubprocessSandboxProvisioner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given stand-in workers that record their pids, and two launches for one session that meet after stopping the
    # previous sandbox (a barrier in the step before the start: each waits up to 2 s for the other)
    pids = tmp_path / "pids"
    provisioner.entrypoint.write_text(
        "import os, sys, time\nsys.stdin.read()\n"
        f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n')\ntime.sleep(120)\n"
    )
    meet = threading.Barrier(2)
    real_mounts = provisioner._mounts

    def mounts(spec: SandboxLaunch, workdir: Path) -> list[Mount]:
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait(timeout=2)
        return real_mounts(spec, workdir)

    monkeypatch.setattr(provisioner, "_mounts", mounts)
    exits: list[str] = []
    launches = [
        threading.Thread(target=provisioner.launch, args=(_spec("sesn_c", w), lambda w, _c, _d: exits.append(w)))
        for w in ("work_1", "work_2")
    ]
    # When both run
    for t in launches:
        t.start()
    for t in launches:
        t.join(30)
    # Then only the second launch's worker runs: the first one's was stopped (and its exit reported) by the second
    _poll(pids.exists)  # (a stand-in writes its pid once it has read its configuration)
    with contextlib.suppress(AssertionError):  # both, if both run (a stopped first one may never write it)
        _poll(lambda: len(pids.read_text().split()) == 2, timeout=1.5)
    started = [int(line) for line in pids.read_text().split()]
    alive = [pid for pid in started if _alive(pid)]
    assert alive == [provisioner.pid("sesn_c")], (started, alive)
    assert exits == ["work_1"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _poll(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
