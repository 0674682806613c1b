"""A deployment run cut off after its claim is finished on AWS by the reaper function's periodic run, once, with its
session and its outcome webhook (the embedded server finishes it when it starts again: tests/e2e/
test_fault_kill9_webhooks.py).

The cut-off is the API function's run stopping inside `DeploymentService._fire` (a Lambda timeout or a crash: no
`except` runs), at the three points the embedded fault test kills the server: after the claim (deployment_run.started
recorded, no session yet), after the session's insert (its initial events not logged: the finish logs them, once) and
after the session (the run's outcome not recorded). IAM is enforced on every role.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore
from managed_agents.services.deployments import DeploymentService
from tests.aws.iam import acting_as
from tests.aws.platform import Platform, aws_platform
from tests.e2e.conftest import wait_until
from tests.e2e.loopback_http import serve
from tests.e2e.test_webhooks_delivery import Receiver
from tests.infra.conftest import Synth

pytestmark = pytest.mark.slow

GRACE_SECONDS = 5.0  # the first reap below normally runs well within it (a loaded machine may not: see there)
ENV = {
    "MANAGED_AGENTS_WEBHOOK_ALLOW_LOOPBACK": "true",
    "MANAGED_AGENTS_DEPLOYMENT_RUN_GRACE_SECONDS": str(GRACE_SECONDS),
}
WANTED = ["deployment_run.started", "deployment_run.succeeded", "deployment_run.failed", "session.created"]


class CutOff(BaseException):
    """The function's process stopping where it stands (no `except Exception` sees it)."""


@pytest.fixture(scope="module")
def platform(default_synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with aws_platform(default_synth, tmp_path_factory.mktemp("deployment-runs"), env=ENV) as p:
        yield p


def _pumped_until(platform: Platform, done: Any, timeout: float = 60) -> Any:
    def step() -> Any:
        platform.pump_webhooks()
        return done()

    return wait_until(step, timeout, interval=0.2)


@pytest.mark.parametrize("cut_at", ["claimed", "session_inserted", "session_created"])
def test_a_manual_run_cut_off_after_its_claim_is_finished_once_by_the_reaper(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, cut_at: str
) -> None:
    client, rt = platform.client, platform.runtime
    assert rt is not None
    r = Receiver()
    with serve(r.handler()) as base:
        endpoint = client.beta.organization.webhooks.create(url=base + "/hooks", enabled_events=WANTED)  # type: ignore[arg-type]
        agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
        env_id = client.beta.environments.create(name="e", config={"type": "cloud"}).id
        dep = client.beta.deployments.create(
            agent=agent.id,
            environment_id=env_id,
            name="d",
            initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "nightly"}]}],
        )
        record = rt.resources.get_by_id("deployment", dep.id)
        assert record is not None
        # Given a manual run that the API function started and that stopped at `cut_at`
        real_start = DeploymentService._start_session

        def start_session(self: DeploymentService, ws: str, doc: Any, session_id: str) -> str:
            if cut_at == "claimed":
                raise CutOff  # the run is claimed (deployment_run.started), no session yet
            real_start(self, ws, doc, session_id)
            raise CutOff  # the session is created, the run's outcome not recorded

        def append(self: DynamoDbEventStore, session_id: str, events: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is threading.main_thread():  # (the fire's, not a running session's)
                raise CutOff  # the session is inserted (and marked running), its initial events not logged
            return real_append(self, session_id, events, **kwargs)

        real_append = DynamoDbEventStore.append
        if cut_at == "session_inserted":
            monkeypatch.setattr(DynamoDbEventStore, "append", append)
        else:
            monkeypatch.setattr(DeploymentService, "_start_session", start_session)
        with pytest.raises(CutOff), acting_as("Api"):
            rt.deployments.run_now(record.workspace_id, dep.id)
        monkeypatch.undo()
        (claimed,) = client.beta.deployment_runs.list(deployment_id=dep.id)
        assert claimed.session_id is None and claimed.error is None
        # When the reaper runs before the grace is over (the fire may still be finishing in its own function)
        platform.reap()
        reaped_within = (datetime.now(UTC) - claimed.created_at).total_seconds()  # (at most: measured after it ran)
        # Then the run is left alone (a loaded machine can take longer than the grace to get here, at load 8 it did:
        # the reaper then rightly finishes it, and what follows checks that it does so once)
        (still,) = client.beta.deployment_runs.list(deployment_id=dep.id)
        if reaped_within < GRACE_SECONDS:
            assert still.session_id is None and still.error is None
        # When it runs after the grace, and again (overlapping schedules, the next minute)
        platform.model.push("done")

        def finished() -> Any:
            platform.reap()
            return [x for x in client.beta.deployment_runs.list(deployment_id=dep.id) if x.session_id]

        (run,) = wait_until(finished, timeout=GRACE_SECONDS + 30, interval=0.5)
        platform.reap()
        # Then the run is finished once, with one session (of the deployment), which runs its initial message
        assert run.id == claimed.id and run.error is None
        assert len(list(client.beta.deployment_runs.list(deployment_id=dep.id))) == 1
        assert run.session_id is not None
        platform.wait_idle(run.session_id)
        session = client.beta.sessions.retrieve(run.session_id)
        assert session.deployment_id == dep.id
        sent = [e for e in client.beta.sessions.events.list(run.session_id) if e.type == "user.message"]
        assert [[b.text for b in e.content] for e in sent] == [["nightly"]]  # type: ignore[union-attr]

        # And its webhooks arrive through the stream and the queue: started, the session's created, succeeded
        # (the endpoint may also get the module's earlier runs' events, relayed after it was made: not counted)
        def mine_delivered() -> list[tuple[dict[str, str], str]]:
            ours = (run.id, run.session_id)
            return [(h, b) for h, b in r.delivered() if json.loads(b)["data"]["id"] in ours]

        got = _pumped_until(platform, lambda: len({json.loads(b)["id"] for _, b in mine_delivered()}) >= 3)
        platform.reap()
        platform.pump_webhooks()
        got = mine_delivered()
    # (at least once: a delivery may be made twice; receivers deduplicate on the payload id, the same at each attempt)
    events = [client.beta.webhooks.unwrap(body, headers=h, key=endpoint.signing_secret) for h, body in got]
    mine = list({e.id: e for e in events}.values())
    assert sorted((e.data.type, e.data.id) for e in mine) == sorted(
        [
            ("deployment_run.started", run.id),
            ("deployment_run.succeeded", run.id),
            ("session.created", run.session_id),
        ]
    )
