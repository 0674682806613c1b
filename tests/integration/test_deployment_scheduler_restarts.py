"""The embedded deployment scheduler across restarts (services/deployments.py, "Embedded missed-tick policy").

Given a deployment on a 5-minute schedule in a data directory, a runtime that stops and a new one that opens the
same directory: ticks already fired are never fired again, ticks missed while down fire once each (within the
catch-up window), older ones are skipped, and a fire cut off between its claim and its outcome is finished once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.ports import ListQuery
from managed_agents.services.common import page_query
from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.deployments import DeploymentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.webhooks import WebhookEndpointCreateParams
from managed_agents.wiring import Runtime, build_local_runtime

T0 = datetime(2027, 3, 1, 12, 0, 30, tzinfo=UTC)
WS = "wrkspc_test"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "data"), deployment_max_jitter_seconds=0, deployment_catch_up_seconds=3600
    )


def open_runtime(settings: ServerSettings, clock: Clock) -> Runtime:
    return build_local_runtime(settings, clock=clock, start_orchestrator=False)


@pytest.fixture
def deployment_id(settings: ServerSettings, clock: Clock) -> Iterator[str]:
    rt = open_runtime(settings, clock)
    agent = rt.agents.create(WS, AgentCreateParams(name="a", model="claude-sonnet-4-6"))
    env = rt.environments.create(WS, EnvironmentCreateParams(name="e"))
    dep = rt.deployments.create(
        WS,
        DeploymentCreateParams.model_validate(
            {
                "agent": agent["id"],
                "environment_id": env["id"],
                "name": "every five minutes",
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}],
                "schedule": {"type": "cron", "expression": "*/5 * * * *", "timezone": "UTC"},
            }
        ),
    )
    rt.close()
    yield str(dep["id"])


def scheduled_ats(rt: Runtime, deployment_id: str) -> list[str]:
    runs, _ = rt.deployments.list_runs(WS, page_query(None, 1000, max_limit=1000), deployment_id=deployment_id)
    return sorted(str(r["trigger_context"]["scheduled_at"]) for r in runs)  # type: ignore[index]


def ticks(*minutes: int) -> list[str]:
    return [rfc3339(datetime(2027, 3, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=m)) for m in minutes]


def test_fired_ticks_are_not_fired_again_after_a_restart(
    settings: ServerSettings, clock: Clock, deployment_id: str
) -> None:
    # Given the scheduler fired the ticks up to 12:10
    rt = open_runtime(settings, clock)
    clock.at = T0 + timedelta(minutes=10)
    assert rt.deployments.run_due() == 2
    assert scheduled_ats(rt, deployment_id) == ticks(5, 10)
    rt.close()
    # When the server restarts and the scheduler looks again at the same time
    rt = open_runtime(settings, clock)
    # Then nothing fires twice
    assert rt.deployments.run_due() == 0
    assert scheduled_ats(rt, deployment_id) == ticks(5, 10)
    # And a later tick fires once
    clock.at = T0 + timedelta(minutes=15)
    assert rt.deployments.run_due() == 1
    assert scheduled_ats(rt, deployment_id) == ticks(5, 10, 15)
    rt.close()


def test_ticks_missed_while_down_fire_once_each_within_the_catch_up_window(
    settings: ServerSettings, clock: Clock, deployment_id: str
) -> None:
    # Given the server was down from 12:00 to 12:20
    clock.at = T0 + timedelta(minutes=20)
    rt = open_runtime(settings, clock)
    # When it comes back, the missed ticks fire, oldest first, one run each
    assert rt.deployments.run_due() == 4
    assert scheduled_ats(rt, deployment_id) == ticks(5, 10, 15, 20)
    rt.close()


def test_ticks_older_than_the_catch_up_window_are_skipped(
    settings: ServerSettings, clock: Clock, deployment_id: str
) -> None:
    # Given the server was down for three hours (the window is one hour)
    clock.at = T0 + timedelta(hours=3)
    rt = open_runtime(settings, clock)
    # Then only the last hour's ticks fire
    assert rt.deployments.run_due() == 12
    fired = scheduled_ats(rt, deployment_id)
    assert fired[0] == ticks(125)[0] and fired[-1] == ticks(180)[0]
    rt.close()


def test_a_fire_cut_off_after_its_claim_is_finished_once(
    settings: ServerSettings, clock: Clock, deployment_id: str
) -> None:
    rt = open_runtime(settings, clock)
    # Given a fire of the 12:05 tick claimed its run and then the process died (no session, no outcome)
    real_start = rt.deployments._start_session
    rt.deployments._start_session = lambda *a: (_ for _ in ()).throw(SystemExit("killed"))  # type: ignore[method-assign]
    clock.at = T0 + timedelta(minutes=5)
    with pytest.raises(SystemExit):
        rt.deployments.run_due()
    rt.deployments._start_session = real_start  # type: ignore[method-assign]
    rt.close()
    # When the server restarts and the scheduler runs
    rt = open_runtime(settings, clock)
    rt.deployments.run_due()
    # Then the tick has one run, with its session
    runs, _ = rt.deployments.list_runs(WS, ListQuery(limit=100), deployment_id=deployment_id)
    assert len(runs) == 1 and runs[0]["session_id"] and runs[0]["error"] is None
    assert "_pending" not in runs[0]
    sessions = rt.resources.find("session", "deployment_id", [deployment_id])
    assert [s.id for s in sessions] == [runs[0]["session_id"]]
    rt.close()


def test_finishing_a_cut_off_fire_offers_no_second_started_webhook(
    settings: ServerSettings, clock: Clock, deployment_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_runtime(settings, clock)
    rt.webhooks.create(
        WS, WebhookEndpointCreateParams(url="http://127.0.0.1:9/hooks", enabled_events=["deployment_run.started"])
    )
    # Given a fire of the 12:05 tick that claimed its run (deployment_run.started) and was cut off
    real_start = rt.deployments._start_session
    rt.deployments._start_session = lambda *a: (_ for _ in ()).throw(SystemExit("killed"))  # type: ignore[method-assign]
    clock.at = T0 + timedelta(minutes=5)
    with pytest.raises(SystemExit):
        rt.deployments.run_due()
    rt.deployments._start_session = real_start  # type: ignore[method-assign]
    store = rt.deployments.svc.resources
    offered: list[str] = []
    write_all = store.write_all

    def spy(**kwargs: Any) -> None:
        offered.extend(e.type for e in kwargs.get("outbox", ()))
        write_all(**kwargs)

    monkeypatch.setattr(store, "write_all", spy)
    # When the finisher (the embedded recovery, the reaper on AWS) finishes it, and a late delivery of the tick comes
    assert rt.deployments.finish_pending_runs(grace_seconds=0) == 1
    rt.deployments.fire_scheduled(deployment_id, T0 + timedelta(minutes=4, seconds=30))
    # Then no write carries a second deployment_run.started (an insert of the claim again could only conflict; its
    # transaction's webhook item was kept out by the store's rollback alone), and the outcome's is written once
    assert offered.count("deployment_run.started") == 0
    assert offered.count("deployment_run.succeeded") == 1
    rt.close()


class CutOff(BaseException):
    """The process stopping where it stands (no `except Exception` sees it)."""


def _cut_between_session_insert_and_initial_events(rt: Runtime, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    def append(*a: Any, **k: Any) -> Any:
        raise CutOff

    with monkeypatch.context() as m:
        m.setattr(rt.events, "append", append)
        clock.at = T0 + timedelta(minutes=5)
        with pytest.raises(CutOff):
            rt.deployments.run_due()


def _user_texts(rt: Runtime, sid: str) -> list[tuple[str, str]]:
    return [(e.id, e.payload["content"][0]["text"]) for e in rt.events.read(sid) if e.type == "user.message"]


def test_a_fire_cut_off_before_its_sessions_initial_events_is_finished_with_them_once(
    settings: ServerSettings, clock: Clock, deployment_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_runtime(settings, clock)
    # Given a fire of the 12:05 tick that inserted its session and died before the session's initial events
    _cut_between_session_insert_and_initial_events(rt, clock, monkeypatch)
    (sid,) = [s.id for s in rt.resources.find("session", "deployment_id", [deployment_id])]
    assert rt.events.last_seq(sid) == 0
    rt.close()
    # When the restarted server finishes the run (its recovery), and again (the scheduler's next passes)
    rt = open_runtime(settings, clock)
    assert rt.deployments.finish_pending_runs(grace_seconds=0) == 1
    rt.deployments.finish_pending_runs(grace_seconds=0)
    rt.deployments.run_due()
    rt.deployments.fire_scheduled(deployment_id, T0 + timedelta(minutes=4, seconds=30))  # a late second tick
    # Then the run succeeded with that session, which has its initial message, once, and is marked running
    runs, _ = rt.deployments.list_runs(WS, ListQuery(limit=100), deployment_id=deployment_id)
    assert [(r["session_id"], r["error"]) for r in runs] == [(sid, None)]
    (logged,) = _user_texts(rt, sid)
    assert logged[1] == "go"
    assert rt.sessions.get(WS, sid)["status"] == "running"
    # And a completion that raced it (it looked before the events were logged, and appends second) logs nothing twice
    params = rt.deployments.session_params(rt.resources.get_by_id("deployment", deployment_id).doc)  # type: ignore[union-attr]
    with monkeypatch.context() as m:
        m.setattr(rt.events, "get", lambda *a: None)
        m.setattr(rt.events, "last_seq", lambda *a: 0)
        assert rt.sessions.complete_create(WS, params, sid)["id"] == sid
    assert _user_texts(rt, sid) == [logged]
    rt.close()


def test_a_fire_cut_off_before_its_sessions_initial_events_fails_readably_if_the_session_got_other_events(
    settings: ServerSettings, clock: Clock, deployment_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_runtime(settings, clock)
    # Given a fire whose session was inserted without its initial events, and a client that sent the session an event
    _cut_between_session_insert_and_initial_events(rt, clock, monkeypatch)
    (sid,) = [s.id for s in rt.resources.find("session", "deployment_id", [deployment_id])]
    rt.events.append(sid, [NewEvent(new_id("event"), "user.message", {"content": [{"type": "text", "text": "hi"}]})])
    # When the run is finished
    assert rt.deployments.finish_pending_runs(grace_seconds=0) == 1
    # Then it is recorded failed, saying why, and the initial events are not logged after the client's
    runs, _ = rt.deployments.list_runs(WS, ListQuery(limit=100), deployment_id=deployment_id)
    assert [r["session_id"] for r in runs] == [None]
    error = runs[0]["error"]
    assert error["type"] == "unknown_error"  # type: ignore[index]
    assert "without its initial events" in error["message"]  # type: ignore[index]
    assert [t for _, t in _user_texts(rt, sid)] == ["hi"]
    rt.close()
