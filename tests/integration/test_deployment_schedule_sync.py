"""Deployment schedules converge on the store (services/deployments.py, "Schedule sync"): a write whose schedule sync
fails is kept, marked, and synced by the next reconcile; a sync that succeeds leaves nothing marked.

The external schedules (AWS: EventBridge Scheduler) are a fake of the `DeploymentSchedules` port that fails on demand;
tests/aws/test_iam_enforced_scenarios.py ("deployment") runs the same with the Scheduler adapter and the reaper.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from managed_agents.services.deployments import DEPLOYMENT, SYNC_ATTR, SYNC_PENDING
from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.deployments import DeploymentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wiring import Runtime, build_local_runtime

WS = "wrkspc_sync"
HELLO = [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
NIGHTLY = {"type": "cron", "expression": "0 6 * * *", "timezone": "UTC"}


class FlakySchedules:
    """The external schedules: deployment id -> (schedule, enabled); `failures` puts fail before one succeeds."""

    def __init__(self) -> None:
        self.schedules: dict[str, tuple[Any, bool]] = {}
        self.failures = 0

    def put(self, deployment_id: str, schedule: Any, enabled: bool) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Scheduler unavailable")
        if schedule is None:
            self.schedules.pop(deployment_id, None)
        else:
            self.schedules[deployment_id] = (schedule["expression"], enabled)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Runtime, FlakySchedules]]:
    rt = build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)
    fake = FlakySchedules()
    rt.deployments.schedules = fake
    yield rt, fake
    rt.close()


def _marked(rt: Runtime) -> list[str]:
    return [r.id for r in rt.resources.find(DEPLOYMENT.name, SYNC_ATTR, [SYNC_PENDING])]


def _deployment(rt: Runtime) -> str:
    agent = rt.agents.create(WS, AgentCreateParams(name="a", model="claude-sonnet-4-6"))
    env = rt.environments.create(WS, EnvironmentCreateParams(name="e"))
    params = {"agent": agent["id"], "environment_id": env["id"], "name": "n", "initial_events": HELLO}
    return str(rt.deployments.create(WS, DeploymentCreateParams.model_validate({**params, "schedule": NIGHTLY}))["id"])


def test_a_sync_that_succeeds_leaves_nothing_to_reconcile(runtime: tuple[Runtime, FlakySchedules]) -> None:
    rt, fake = runtime
    dep = _deployment(rt)
    assert fake.schedules == {dep: ("0 6 * * *", True)}
    assert _marked(rt) == [] and rt.deployments.reconcile_schedules() == 0


def test_a_failed_sync_between_the_write_and_the_schedule_converges_at_the_next_reconcile(
    runtime: tuple[Runtime, FlakySchedules],
) -> None:
    rt, fake = runtime
    # Given a create whose schedule sync fails after the store write
    fake.failures = 1
    dep = _deployment(rt)
    # Then the deployment is stored (the create answered) and marked, and no schedule exists yet
    assert rt.deployments.get(WS, dep)["schedule"]["expression"] == "0 6 * * *"
    assert fake.schedules == {} and _marked(rt) == [dep]
    # When the reconciler runs while Scheduler still fails, then again once it is back
    fake.failures = 1
    assert rt.deployments.reconcile_schedules() == 0 and _marked(rt) == [dep]
    assert rt.deployments.reconcile_schedules() == 1
    # Then the schedule follows the store and nothing is left marked
    assert fake.schedules == {dep: ("0 6 * * *", True)} and _marked(rt) == []
    # And a pause whose sync fails is caught up with the same way (the schedule disabled)
    fake.failures = 1
    assert rt.deployments.pause(WS, dep)["status"] == "paused"
    assert fake.schedules[dep] == ("0 6 * * *", True) and _marked(rt) == [dep]
    rt.deployments.reconcile_schedules()
    assert fake.schedules[dep] == ("0 6 * * *", False) and _marked(rt) == []
    # And an archive too (the schedule deleted)
    fake.failures = 1
    rt.deployments.archive(WS, dep)
    assert dep in fake.schedules
    rt.deployments.reconcile_schedules()
    assert fake.schedules == {} and _marked(rt) == []


def test_a_write_made_after_a_failed_sync_is_the_one_the_schedule_follows(
    runtime: tuple[Runtime, FlakySchedules],
) -> None:
    rt, fake = runtime
    # Given a pause whose sync failed, then an unpause whose sync failed too
    dep = _deployment(rt)
    fake.failures = 2
    rt.deployments.pause(WS, dep)
    rt.deployments.unpause(WS, dep)
    # When the reconciler runs
    rt.deployments.reconcile_schedules()
    # Then the schedule is the last write's: enabled
    assert fake.schedules == {dep: ("0 6 * * *", True)} and _marked(rt) == []
