"""Crash safety of webhooks: a `kill -9` of the server between a session event and its delivery loses nothing.

Embedded only (it kills `managed-agents serve`): the event's outbox row is written with the event, the delivery it
fans out into is a stored record, and the restarted server's deliverer picks it up.
"""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest

from managed_agents.testing.loopback import free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import wait_idle, wait_until
from tests.e2e.loopback_http import serve
from tests.e2e.serve_process import REPO, ServeProcess
from tests.e2e.test_webhooks_delivery import Receiver, _say, _session


@pytest.mark.slow
def test_kill9_between_the_event_and_its_delivery_loses_nothing(tmp_path: Path) -> None:
    r = Receiver(fail_first=10**6)  # down while the first server runs: the delivery stays pending
    env = {"MANAGED_AGENTS_WEBHOOK_RETRY_BASE_SECONDS": "0.5", "MANAGED_AGENTS_WEBHOOK_POLL_SECONDS": "0.05"}
    with ScriptedModelServer(["done"], fallback="error") as model, serve(r.handler()) as base:
        data_dir, port = tmp_path / "data", free_port()
        first = ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log", env=env)
        try:
            admin_key = (data_dir / "admin.key").read_text().strip()
            client = anthropic.Anthropic(base_url=first.url, api_key=admin_key, max_retries=0)
            client.beta.organization.webhooks.create(url=base + "/hooks", enabled_events=["session.status_idled"])  # type: ignore[list-item]
            sid = _session(client)
            _say(client, sid)
            wait_idle(client, sid, timeout=90)
            wait_until(lambda: r.received, timeout=60)  # the event was appended and attempted (and failed)
            # When the server is killed with SIGKILL and the receiver comes back
            first.kill9()
        finally:
            first.stop()
        r.fail_first = 0
        with r.lock:
            r.received.clear()
        second = ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log", env=env)
        try:
            # Then the restarted server delivers the event
            got = wait_until(lambda: r.delivered(), timeout=90)
            payload = json.loads(got[0][1])
            assert payload["data"] == {**payload["data"], "type": "session.status_idled", "id": sid}
        finally:
            second.stop()


ONE = ("--workers", "1")  # (with several, the supervisor outlives a killed worker: tests/e2e/test_fault_workers.py)
KILL_IN_RUN = """
import os, signal
from managed_agents.services import deployments, sessions

_start = deployments.DeploymentService._start_session
_append = sessions.SessionService._append_batch
_at = os.environ["TEST_KILL_IN_RUN"]


def _append_batch(self, *args, **kwargs):
    if _at == "session_inserted":
        os.kill(os.getpid(), signal.SIGKILL)  # the session is inserted, its initial events not logged
    return _append(self, *args, **kwargs)


def _start_session(self, ws, doc, session_id):
    if _at == "claimed":
        os.kill(os.getpid(), signal.SIGKILL)  # the run is claimed (deployment_run.started), no session yet
    created = _start(self, ws, doc, session_id)
    os.kill(os.getpid(), signal.SIGKILL)  # the session is created, the run's outcome not recorded
    return created


deployments.DeploymentService._start_session = _start_session
sessions.SessionService._append_batch = _append_batch
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["claimed", "session_inserted", "session_created"])
def test_kill9_during_a_manual_deployment_run_then_restart_finishes_it_once(tmp_path: Path, kill_at: str) -> None:
    r = Receiver()
    wanted = ["deployment_run.started", "deployment_run.succeeded", "deployment_run.failed", "session.created"]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_IN_RUN)
    env = {"MANAGED_AGENTS_WEBHOOK_POLL_SECONDS": "0.05"}
    killing = {**env, "PYTHONPATH": f"{hook}:{REPO}", "TEST_KILL_IN_RUN": kill_at}
    with ScriptedModelServer(fallback="echo") as model, serve(r.handler()) as base:
        data_dir, port = tmp_path / "data", free_port()
        # Given a server that dies (SIGKILL) inside a manual deployment run, at `kill_at`
        first = ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log", args=ONE, env=killing)
        try:
            admin_key = (data_dir / "admin.key").read_text().strip()
            client = anthropic.Anthropic(base_url=first.url, api_key=admin_key, max_retries=0)
            endpoint = client.beta.organization.webhooks.create(url=base + "/hooks", enabled_events=wanted)  # type: ignore[arg-type]
            agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
            env_id = client.beta.environments.create(name="e", config={"type": "cloud"}).id
            dep = client.beta.deployments.create(
                agent=agent.id,
                environment_id=env_id,
                name="d",
                initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "nightly"}]}],
            )
            with pytest.raises(anthropic.APIConnectionError):
                client.beta.deployments.run(dep.id)
            wait_until(lambda: first.proc.poll() is not None, timeout=30)
            assert first.proc.returncode == -9, "the server was not killed inside the run"
        finally:
            first.stop()
        # When the server is restarted on the same data dir
        second = ServeProcess(data_dir, port, model.base_url, tmp_path / "serve.log", args=ONE, env=env)
        try:
            # Then the run is finished: one run, with one session, which runs its initial message
            (run,) = wait_until(
                lambda: [x for x in client.beta.deployment_runs.list(deployment_id=dep.id) if x.session_id], 60
            )
            assert run.error is None and len(list(client.beta.deployment_runs.list(deployment_id=dep.id))) == 1
            wait_idle(client, run.session_id, timeout=60)
            assert [s.id for s in client.beta.sessions.list()] == [run.session_id]
            # (its initial events once, cut off before them or not)
            sent = [e for e in client.beta.sessions.events.list(run.session_id) if e.type == "user.message"]
            assert [[b.text for b in e.content] for e in sent] == [["nightly"]]  # type: ignore[union-attr]
            # And its webhooks arrive: started, the session's created, succeeded, each one event
            got = wait_until(lambda: len({json.loads(b)["id"] for _, b in r.delivered()}) >= 3 and r.delivered(), 60)
        finally:
            second.stop()
    # (at least once: a delivery the first server made and had not recorded is made again; receivers deduplicate on
    # the payload id, the same at every attempt)
    events = [client.beta.webhooks.unwrap(body, headers=h, key=endpoint.signing_secret) for h, body in got]
    distinct = {e.id: e for e in events}.values()
    assert sorted((e.data.type, e.data.id) for e in distinct) == sorted(
        [
            ("deployment_run.started", run.id),
            ("deployment_run.succeeded", run.id),
            ("session.created", run.session_id),
        ]
    )
