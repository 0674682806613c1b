"""Deployments and deployment runs through the official SDK (api-reference §2.8), on both legs.

A cron tick is delivered the way each runtime delivers it: embedded, the in-process scheduler's `run_due` at a time
after the tick (the test clock: the loop thread itself only ever reaches ticks in real time); AWS, the Scheduler
schedule's input to the trigger function, as EventBridge Scheduler sends it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle

TICK = datetime(2027, 1, 1, tzinfo=UTC)  # `0 0 1 1 *` in UTC: far from any tick the real-time loop reaches
YEARLY = {"type": "cron", "expression": "0 0 1 1 *", "timezone": "UTC"}
HELLO = [{"type": "user.message", "content": [{"type": "text", "text": "nightly report"}]}]


def fire_tick(server: Server, deployment_id: str, tick: datetime = TICK) -> None:
    """The scheduler fires the tick: embedded, the scheduler loop's step at a later time; AWS, the schedule's
    delivery to the trigger function."""
    if server.platform is not None:
        server.platform.trigger(
            {
                "schedule_arn": f"arn:aws:scheduler:us-east-1:123456789012:schedule/deployments/{deployment_id}",
                "scheduled_time": tick.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "detail": {"type": "run_deployment", "deployment_id": deployment_id},
            }
        )
    else:
        server.rt.deployments.run_due(now=tick + timedelta(minutes=1))


def fire_tick_again(server: Server, deployment_id: str, tick: datetime = TICK) -> None:
    """A second delivery of the same tick (Scheduler and Lambda deliver at least once; a restarted embedded server
    re-fires the tick it had not marked done)."""
    if server.platform is not None:
        fire_tick(server, deployment_id, tick)
    else:
        server.rt.deployments.fire_scheduled(deployment_id, tick)


def _setup(client: anthropic.Anthropic) -> tuple[Any, Any]:
    agent = client.beta.agents.create(name="nightly", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return agent, env


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    err = body["error"]
    assert isinstance(err, dict)
    return err


def test_create_pins_the_agent_and_lists_upcoming_runs(client: anthropic.Anthropic) -> None:
    agent, env = _setup(client)
    # When a deployment is created with the agent's id and a cron schedule in a timezone
    dep = client.beta.deployments.create(
        agent=agent.id,
        environment_id=env.id,
        name="nightly",
        initial_events=HELLO,
        schedule={"type": "cron", "expression": "30 9 * * 1-5", "timezone": "America/New_York"},
        metadata={"team": "ops"},
    )
    # Then the agent is pinned to its latest version, and the schedule shows the next 5 runs, weekdays 09:30 New York
    assert dep.type == "deployment" and dep.id.startswith("depl_")
    assert (dep.agent.id, dep.agent.version) == (agent.id, agent.version)
    assert dep.status == "active" and dep.paused_reason is None and dep.archived_at is None
    assert dep.schedule is not None and dep.schedule.last_run_at is None
    upcoming = dep.schedule.upcoming_runs_at or []
    assert len(upcoming) == 5 and upcoming == sorted(upcoming)
    for at in upcoming:
        ny = at.astimezone(ZoneInfo("America/New_York"))
        assert ny.weekday() < 5 and (ny.hour, ny.minute) == (9, 30) and ny.second <= 10  # jitter: seconds late
    assert [e.type for e in dep.initial_events] == ["user.message"]
    # And retrieve and list agree
    assert client.beta.deployments.retrieve(dep.id).name == "nightly"
    assert dep.id in [d.id for d in client.beta.deployments.list(agent_id=agent.id)]
    assert dep.id not in [d.id for d in client.beta.deployments.list(status="paused")]


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ({"type": "cron", "expression": "0 0 L * *", "timezone": "UTC"}, "day-of-month"),
        ({"type": "cron", "expression": "0 0 * * 5#3", "timezone": "UTC"}, "day-of-week"),
        ({"type": "cron", "expression": "@daily", "timezone": "UTC"}, "5-field"),
        ({"type": "cron", "expression": "0 0 0 1 * *", "timezone": "UTC"}, "5-field"),
        ({"type": "cron", "expression": "0 25 * * *", "timezone": "UTC"}, "out of range"),
        ({"type": "cron", "expression": "0 9 * * *", "timezone": "Mars/Olympus"}, "IANA"),
    ],
)
def test_schedules_outside_posix_cron_or_iana_are_refused(
    client: anthropic.Anthropic, schedule: dict[str, str], says: str
) -> None:
    agent, env = _setup(client)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.deployments.create(
            agent=agent.id, environment_id=env.id, name="x", initial_events=HELLO, schedule=schedule
        )
    assert says in _error(info.value)["message"]


def test_the_session_template_is_validated_like_a_session(client: anthropic.Anthropic) -> None:
    agent, env = _setup(client)
    # no initial events
    with pytest.raises(anthropic.BadRequestError):
        client.beta.deployments.create(agent=agent.id, environment_id=env.id, name="x", initial_events=[])
    # an unknown environment: the session create's own error
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.deployments.create(agent=agent.id, environment_id="env_missing", name="x", initial_events=HELLO)
    assert _error(info.value)["details"]["error_code"] == "environment_not_found"
    # an unknown vault
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.deployments.create(
            agent=agent.id, environment_id=env.id, name="x", initial_events=HELLO, vault_ids=["vlt_missing"]
        )
    assert _error(info.value)["details"]["error_code"] == "vault_not_found"
    # an archived agent
    client.beta.agents.archive(agent.id)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.deployments.create(agent=agent.id, environment_id=env.id, name="x", initial_events=HELLO)


def test_a_cron_tick_runs_once_and_its_session_carries_the_deployment(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    agent, env = _setup(client)
    dep = client.beta.deployments.create(
        agent=agent.id, environment_id=env.id, name="n", initial_events=HELLO, schedule=YEARLY
    )
    model_server.push("report written")
    # When the scheduler fires the tick
    fire_tick(server, dep.id)
    # Then one run records the session it started, triggered by the schedule at the cron instant
    runs = list(client.beta.deployment_runs.list(deployment_id=dep.id))
    assert len(runs) == 1
    run = runs[0]
    assert run.type == "deployment_run" and run.id.startswith("drun_")
    assert run.error is None and run.session_id is not None
    assert run.trigger_context.type == "schedule" and run.trigger_context.scheduled_at == TICK
    assert (run.agent.id, run.agent.version) == (agent.id, agent.version)
    assert client.beta.deployment_runs.retrieve(run.id).session_id == run.session_id
    # And the session is the deployment's, started with its initial events, and runs to idle
    session = client.beta.sessions.retrieve(run.session_id)
    assert session.deployment_id == dep.id
    assert [s.id for s in client.beta.sessions.list(deployment_id=dep.id)] == [run.session_id]
    events = wait_idle(client, run.session_id, timeout=60)
    assert any(e.type == "agent.message" for e in events)
    # And the schedule shows its last run
    schedule = client.beta.deployments.retrieve(dep.id).schedule
    assert schedule is not None and schedule.last_run_at is not None
    # When the scheduler delivers the same tick again
    fire_tick_again(server, dep.id)
    # Then there is still one run and one session
    assert [r.id for r in client.beta.deployment_runs.list(deployment_id=dep.id)] == [run.id]
    assert [s.id for s in client.beta.sessions.list(deployment_id=dep.id)] == [run.session_id]


def test_run_now_is_a_manual_run(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    agent, env = _setup(client)
    dep = client.beta.deployments.create(agent=agent.id, environment_id=env.id, name="n", initial_events=HELLO)
    assert dep.schedule is None
    model_server.push("ok")
    run = client.beta.deployments.run(dep.id)
    assert run.trigger_context.type == "manual" and run.error is None and run.session_id
    assert client.beta.sessions.retrieve(run.session_id).deployment_id == dep.id
    wait_idle(client, run.session_id, timeout=60)
    assert [r.id for r in client.beta.deployment_runs.list(deployment_id=dep.id, trigger_type="manual")] == [run.id]
    assert list(client.beta.deployment_runs.list(deployment_id=dep.id, trigger_type="schedule")) == []
    assert list(client.beta.deployment_runs.list(deployment_id=dep.id, has_error=True)) == []


def test_pause_stops_the_schedule_and_unpause_resumes_it(server: Server, client: anthropic.Anthropic) -> None:
    agent, env = _setup(client)
    dep = client.beta.deployments.create(
        agent=agent.id, environment_id=env.id, name="n", initial_events=HELLO, schedule=YEARLY
    )
    # When it is paused
    paused = client.beta.deployments.pause(dep.id)
    assert paused.status == "paused" and paused.paused_reason is not None
    assert paused.paused_reason.type == "manual"
    assert paused.schedule is not None and len(paused.schedule.upcoming_runs_at or []) == 5
    assert dep.id in [d.id for d in client.beta.deployments.list(status="paused")]
    # Then its tick does not run
    fire_tick(server, dep.id)
    assert list(client.beta.deployment_runs.list(deployment_id=dep.id)) == []
    # When it is unpaused, it is active again with no reason
    active = client.beta.deployments.unpause(dep.id)
    assert active.status == "active" and active.paused_reason is None
    # And an update replaces the schedule with manual-only (schedule: null)
    manual = client.beta.deployments.update(dep.id, schedule=None, name="renamed")
    assert manual.schedule is None and manual.name == "renamed"


def test_a_tick_whose_agent_was_archived_fails_and_pauses_the_deployment(
    server: Server, client: anthropic.Anthropic
) -> None:
    agent, env = _setup(client)
    dep = client.beta.deployments.create(
        agent=agent.id, environment_id=env.id, name="n", initial_events=HELLO, schedule=YEARLY
    )
    client.beta.agents.archive(agent.id)
    # When the tick fires
    fire_tick(server, dep.id)
    # Then the run records the error, with no session
    (run,) = list(client.beta.deployment_runs.list(deployment_id=dep.id))
    assert run.session_id is None and run.error is not None and run.error.type == "agent_archived_error"
    assert [r.id for r in client.beta.deployment_runs.list(deployment_id=dep.id, has_error=True)] == [run.id]
    # And the deployment paused itself, saying why
    got = client.beta.deployments.retrieve(dep.id)
    assert got.status == "paused" and got.paused_reason is not None and got.paused_reason.type == "error"
    assert got.paused_reason.error.type == "agent_archived_error"  # type: ignore[union-attr]


def test_archive_ends_the_schedule(client: anthropic.Anthropic) -> None:
    agent, env = _setup(client)
    dep = client.beta.deployments.create(
        agent=agent.id, environment_id=env.id, name="n", initial_events=HELLO, schedule=YEARLY
    )
    archived = client.beta.deployments.archive(dep.id)
    assert archived.archived_at is not None and archived.status == "active"
    assert archived.schedule is not None and archived.schedule.upcoming_runs_at == []
    assert dep.id not in [d.id for d in client.beta.deployments.list()]
    assert dep.id in [d.id for d in client.beta.deployments.list(include_archived=True)]
    with pytest.raises(anthropic.BadRequestError):
        client.beta.deployments.run(dep.id)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.deployments.list(include_archived=True, status="active")


def test_resources_are_checked_like_a_sessions_and_stamped_on_each_run(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    agent, env = _setup(client)
    # An unknown file is refused the way a session create refuses it
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.deployments.create(
            agent=agent.id,
            environment_id=env.id,
            name="x",
            initial_events=HELLO,
            resources=[{"type": "file", "file_id": "file_missing"}],
        )
    assert _error(info.value)["details"]["error_code"] == "file_not_found"
    # A real file and a repository: the token is write-only
    uploaded = client.beta.files.upload(file=("notes.txt", b"read me\n", "text/plain"))
    dep = client.beta.deployments.create(
        agent=agent.id,
        environment_id=env.id,
        name="x",
        initial_events=HELLO,
        resources=[
            {"type": "file", "file_id": uploaded.id},
            {
                "type": "github_repository",
                "url": "http://127.0.0.1:9/octo/repo.git",
                "authorization_token": "ghp_secret",
            },
        ],
    )
    assert "ghp_secret" not in dep.model_dump_json()
    assert [r.type for r in dep.resources] == ["file", "github_repository"]
    # When it runs, its session has the resources
    model_server.push("ok")
    run = client.beta.deployments.run(dep.id)
    assert run.session_id is not None, run.error
    session = client.beta.sessions.retrieve(run.session_id)
    assert [r.type for r in session.resources] == ["file", "github_repository"]


def test_each_scheduled_deployment_has_a_scheduler_schedule_that_follows_it(
    server: Server, client: anthropic.Anthropic
) -> None:
    if server.platform is None:
        pytest.skip("embedded: the in-process scheduler reads the store; no external schedules")
    import boto3

    from managed_agents.settings import DEPLOYMENT_SCHEDULE_GROUP_ENV

    scheduler = boto3.client("scheduler", region_name="us-east-1")
    group = os.environ[DEPLOYMENT_SCHEDULE_GROUP_ENV]
    agent, env = _setup(client)
    # When a deployment with a weekday schedule in a timezone is created
    dep = client.beta.deployments.create(
        agent=agent.id,
        environment_id=env.id,
        name="n",
        initial_events=HELLO,
        schedule={"type": "cron", "expression": "30 9 * * 1-5", "timezone": "Europe/Paris"},
    )
    # Then its schedule invokes the trigger function with the deployment, in Scheduler's cron form
    got = scheduler.get_schedule(Name=dep.id, GroupName=group)
    assert got["ScheduleExpression"] == "cron(30 9 ? * MON,TUE,WED,THU,FRI *)"
    assert got["ScheduleExpressionTimezone"] == "Europe/Paris" and got["State"] == "ENABLED"
    target_input = json.loads(got["Target"]["Input"])
    assert target_input["detail"] == {"type": "run_deployment", "deployment_id": dep.id}
    assert target_input["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    # And pausing disables it, unpausing enables it, a new schedule replaces it
    client.beta.deployments.pause(dep.id)
    assert scheduler.get_schedule(Name=dep.id, GroupName=group)["State"] == "DISABLED"
    client.beta.deployments.unpause(dep.id)
    client.beta.deployments.update(dep.id, schedule={"type": "cron", "expression": "0 6 1 * *", "timezone": "UTC"})
    got = scheduler.get_schedule(Name=dep.id, GroupName=group)
    assert (got["State"], got["ScheduleExpression"]) == ("ENABLED", "cron(0 6 1 * ? *)")
    # And archiving deletes it
    client.beta.deployments.archive(dep.id)
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=dep.id, GroupName=group)
