"""The webhook outbox is written with the event (one SQLite transaction) and survives a restart.

Given an endpoint and a session in a data directory: appending a status event writes its outbox row with it (and a
failed append writes none); a runtime that stops before fanning it out leaves the row, and the next runtime on the
same directory delivers it, once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from managed_agents.domain.errors import DuplicateEvent
from managed_agents.domain.events import NewEvent
from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from managed_agents.wire.webhooks import WebhookEndpointCreateParams
from managed_agents.wiring import Runtime, build_local_runtime
from tests.e2e.loopback_http import serve
from tests.e2e.test_webhooks_delivery import Receiver

WS = "wrkspc_test"


def open_runtime(tmp_path: Path) -> Runtime:
    return build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)


def new_session(rt: Runtime) -> str:
    agent = rt.agents.create(WS, AgentCreateParams(name="a", model="claude-sonnet-4-6"))
    env = rt.environments.create(WS, EnvironmentCreateParams(name="e"))
    return str(rt.sessions.create(WS, SessionCreateParams(agent=agent["id"], environment_id=env["id"]))["id"])


def idle(event_id: str) -> NewEvent:
    return NewEvent(event_id, "session.status_idle", {"stop_reason": {"type": "end_turn"}})


def test_the_outbox_row_is_written_with_the_event_and_delivered_after_a_restart(tmp_path: Path) -> None:
    r = Receiver()
    with serve(r.handler()) as url:
        rt = open_runtime(tmp_path)
        sid = new_session(rt)
        assert rt.deliverer is not None
        outbox = rt.deliverer.outbox
        # While no endpoint exists, events write no outbox rows (a server without webhooks does no webhook work)
        rt.events.append(sid, [idle("sevt_idle0")])
        assert outbox.pending() == []
        rt.webhooks.create(WS, WebhookEndpointCreateParams(url=url, enabled_events=["session.status_idled"]))
        # When a status event is appended, its outbox row is there with it
        rt.events.append(sid, [idle("sevt_idle1")])
        assert [e.type for e in outbox.pending()] == ["session.status_idled"]
        # And an append that fails writes no row
        with pytest.raises(DuplicateEvent):
            rt.events.append(sid, [NewEvent("sevt_idle1", "session.status_idle", {})])
        assert len(outbox.pending()) == 1
        # When the runtime stops before delivering (no deliverer ran) and a new one opens the same data
        rt.close()
        rt = open_runtime(tmp_path)
        assert rt.deliverer is not None
        rt.deliverer.run_once(wait=True)
        # Then the event is delivered once, and the outbox is empty
        assert len(r.delivered()) == 1
        assert rt.deliverer.outbox.pending() == []
        rt.deliverer.run_once(wait=True)
        assert len(r.delivered()) == 1
        rt.close()


def test_the_deliverer_is_woken_by_appends_only_when_some_endpoint_is_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a runtime with a session and no webhook endpoint, its deliverer's wakes counted
    rt = open_runtime(tmp_path)
    try:
        sid = new_session(rt)
        assert rt.deliverer is not None
        wakes: list[None] = []
        monkeypatch.setattr(rt.deliverer, "wake", lambda: wakes.append(None))
        # When a status event a webhook could subscribe to is appended
        rt.events.append(sid, [idle("sevt_idle0")])
        # Then the deliverer is not woken (no outbox row was written: a turn costs it no pass, two queries each)
        assert wakes == []
        # And once an endpoint is enabled, the same kind of append wakes it
        rt.webhooks.create(
            WS, WebhookEndpointCreateParams(url="http://127.0.0.1:9/hook", enabled_events=["session.status_idled"])
        )
        rt.events.append(sid, [idle("sevt_idle1")])
        assert len(wakes) == 1
    finally:
        rt.close()


def test_an_endpoint_created_by_another_process_is_seen_by_the_next_event(tmp_path: Path) -> None:
    # Given two runtimes on one data directory (two `serve --workers` processes) and no endpoint yet
    first, second = open_runtime(tmp_path), open_runtime(tmp_path)
    sid = new_session(first)
    assert second.deliverer is not None
    outbox = second.deliverer.outbox
    second.events.append(sid, [idle("sevt_idle0")])
    assert outbox.pending() == []
    # When the first creates an endpoint, and the second appends a status event
    first.webhooks.create(
        WS, WebhookEndpointCreateParams(url="http://127.0.0.1:9/hooks", enabled_events=["session.status_idled"])
    )
    second.events.append(sid, [idle("sevt_idle1")])
    # Then the second's event has its outbox row (it did not keep "no endpoint" from before)
    assert [e.type for e in outbox.pending()] == ["session.status_idled"]
    first.close()
    second.close()


def test_a_pass_holding_a_delivery_read_before_its_attempt_ended_does_not_post_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = Receiver()
    with serve(r.handler()) as url:
        rt = open_runtime(tmp_path)
        try:
            sid = new_session(rt)
            deliverer = rt.deliverer
            assert deliverer is not None
            rt.webhooks.create(WS, WebhookEndpointCreateParams(url=url, enabled_events=["session.status_idled"]))
            rt.events.append(sid, [idle("sevt_idle1")])
            deliverer.fan_out()
            # Given a copy of the pending delivery read before its attempt (by another pass) ended and left flight
            (stale,) = rt.resources.find("webhook_delivery", "state", ["pending"])
            deliverer.run_once(wait=True)
            assert len(r.delivered()) == 1
            # When the next pass finds that stale copy among the pending deliveries (beside a new event's)
            rt.events.append(sid, [idle("sevt_idle2")])
            find = rt.resources.find
            monkeypatch.setattr(rt.resources, "find", lambda *a, **kw: [stale, *find(*a, **kw)])
            deliverer.run_once(wait=True)
            # Then only the new event is posted: the first is not posted again, its delivery keeps its one attempt
            ids = [h["webhook-id"] for h, _, _ in r.received]
            assert len(ids) == 2 and len(set(ids)) == 2, ids
            monkeypatch.undo()
            assert [len(d.doc["attempts"]) for d in rt.resources.find("webhook_delivery", "state", ["delivered"])] == [
                1,
                1,
            ]
        finally:
            rt.close()
