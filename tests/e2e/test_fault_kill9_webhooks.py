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
from tests.e2e.serve_process import ServeProcess
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
