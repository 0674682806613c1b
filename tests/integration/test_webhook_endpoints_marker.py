"""Whether some webhook endpoint is enabled is read from a marker file while none ever was (services/webhooks.py
`any_enabled`), not from the store at every status event a harness logs inside its write transaction: each enabling
marks the file first, in whatever process, so another process's appends see the endpoint at once; a database made
before the marker (an endpoint enabled, no file) is found by the one read of the store each process makes first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from managed_agents.domain.events import NewEvent
from managed_agents.settings import ServerSettings
from managed_agents.wire.webhooks import WebhookEndpointCreateParams, WebhookEndpointUpdateParams
from managed_agents.wiring import DB_FILE, WEBHOOKS_MARKER_FILE, Runtime, build_local_runtime
from tests.integration.test_webhook_outbox import WS, idle, new_session

URL = "http://127.0.0.1:9/in"  # (loopback: the embedded defaults allow it, and it resolves offline)


def _runtime(tmp_path: Path) -> Runtime:
    return build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)


def _endpoint_reads(rt: Runtime, sid: str, events: list[NewEvent]) -> int:
    """The store reads for webhook endpoints that appending these events made (the writer's connection traced)."""
    reads: list[str] = []
    db = rt.events.inner.db  # type: ignore[attr-defined]
    assert db._writer is not None
    db._writer.conn.set_trace_callback(reads.append)
    try:
        rt.events.append(sid, events)
    finally:
        db._writer.conn.set_trace_callback(None)
    return sum("webhook_endpoint" in s for s in reads)


def test_without_endpoints_a_status_event_reads_no_endpoints(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    try:
        sid = new_session(rt)
        # (the first ask reads the store once: a database from before the marker)
        rt.events.append(sid, [idle("sevt_0")])
        # When more status events are logged with no endpoint ever enabled
        reads = _endpoint_reads(rt, sid, [idle("sevt_1")]) + _endpoint_reads(rt, sid, [idle("sevt_2")])
        # Then none read the store for endpoints, and none wrote an outbox row
        assert reads == 0
        assert rt.deliverer is not None and rt.deliverer.outbox.pending() == []
        assert not (tmp_path / "data" / WEBHOOKS_MARKER_FILE).exists()
    finally:
        rt.close()


def test_an_endpoint_enabled_by_another_process_is_seen_at_the_next_event(tmp_path: Path) -> None:
    # Given two runtimes on one data dir (two processes of `serve --workers 2`), the first having asked already
    a, b = _runtime(tmp_path), _runtime(tmp_path)
    try:
        sid = new_session(a)
        a.events.append(sid, [idle("sevt_0")])
        assert not a.webhooks.any_enabled()
        # When the second creates an endpoint
        b.webhooks.create(WS, WebhookEndpointCreateParams(url=URL, enabled_events=["session.status_idled"]))
        # Then the first's next status event writes its outbox row
        a.events.append(sid, [idle("sevt_1")])
        assert a.deliverer is not None
        assert [e.type for e in a.deliverer.outbox.pending()] == ["session.status_idled"]
    finally:
        a.close()
        b.close()


def test_an_endpoint_enabled_again_by_an_update_marks_too(tmp_path: Path) -> None:
    a = _runtime(tmp_path)
    try:
        endpoint = a.webhooks.create(WS, WebhookEndpointCreateParams(url=URL, enabled_events=["session.status_idled"]))
        a.webhooks.update(WS, endpoint["id"], WebhookEndpointUpdateParams(state="disabled"))
        (tmp_path / "data" / WEBHOOKS_MARKER_FILE).unlink()  # (as if the create had come before the marker)
    finally:
        a.close()
    b = _runtime(tmp_path)
    try:
        sid = new_session(b)
        b.events.append(sid, [idle("sevt_0")])
        assert not b.webhooks.any_enabled()
        # When the endpoint is enabled again
        b.webhooks.update(WS, endpoint["id"], WebhookEndpointUpdateParams(state="enabled"))
        # Then the marker says so for every process
        assert (tmp_path / "data" / WEBHOOKS_MARKER_FILE).stat().st_size > 0
    finally:
        b.close()


def test_a_database_from_before_the_marker_is_read_once(tmp_path: Path) -> None:
    # Given an enabled endpoint and no marker file (a database made by an earlier build)
    a = _runtime(tmp_path)
    a.webhooks.create(WS, WebhookEndpointCreateParams(url=URL, enabled_events=["session.status_idled"]))
    a.close()
    (tmp_path / "data" / WEBHOOKS_MARKER_FILE).unlink()
    with sqlite3.connect(tmp_path / "data" / DB_FILE) as conn:
        assert conn.execute("SELECT count(*) FROM resources WHERE kind = 'webhook_endpoint'").fetchone()[0] == 1
    # When a new process logs a status event
    b = _runtime(tmp_path)
    try:
        sid = new_session(b)
        b.events.append(sid, [idle("sevt_0")])
        # Then it found the endpoint in the store and wrote the outbox row
        assert b.deliverer is not None
        assert [e.type for e in b.deliverer.outbox.pending() if e.type.startswith("session.status")] == [
            "session.status_idled"
        ]
    finally:
        b.close()
