"""The session scenarios with IAM enforced on the synthesized policies, and every granted action shown to be needed.

One platform (tests/aws/platform.py, IAM enforced as everywhere: tests/aws/iam.py) runs the scenarios of issue 12
and what else exercises a granted action: a plain turn, payloads over the item limit (spilled to S3), tools (a
custom tool the client answers, bash in the sandbox task), an interrupt, a lost sandbox the reaper stops while a tool
call waits on it, an archive and a delete (both stop the sandbox first), a vault credential used by an MCP tool
(written, read, updated and deleted through the MCP proxy), the admin key bootstrap, a session started by the
documented trigger event, a turn that crashes (ReportFailure), and a deployment run cut off after its claim (the
reaper finishes it). The stack is the variant that continues as a new execution after every turn that runs again, and
tool waits go to the ToolWait task, so every Lambda and the state machine's own role act.

Every IAM check moto made is recorded. Then, for each principal and each action its synthesized role is granted
(less what only AWS itself calls with it: iam.NOT_OUR_CALLS), the role's policy with that one action taken away is
evaluated by moto's own policy engine against the recorded calls: at least one of them must be denied. A denied call
fails the scenario that made it (the platform fails any block in which a call was denied), so removing any one
granted action makes a scenario fail. Two of those removals are also run for real, end to end.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import boto3
import pytest

import managed_agents.adapters.aws.session_run as session_run
from managed_agents.adapters.aws.tool_wait import TOKEN_FIELD
from managed_agents.services.deployments import DeploymentService
from managed_agents.settings import ADMIN_KEY_SECRET_ARN_ENV, DEPLOYMENT_SCHEDULE_GROUP_ENV
from managed_agents.testing.mcp_servers import McpTestServer
from tests.aws.iam import Check, IamEnforcement, acting_as, permits, role_policies
from tests.aws.platform import REGION, Platform, aws_platform
from tests.aws.test_triggers_handler import delivered_event, documented_json
from tests.e2e.conftest import wait_until
from tests.infra.conftest import Synth

# The module fixture runs every scenario (~3 min alone) inside the first test's timeout; on a loaded machine that
# took over the suite's 300 s, so the block failed in whichever scenario it was running. Each test here gets 20 min.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

VARIANT = {"maxTurnsPerExecution": 1}
ENV = {
    "MANAGED_AGENTS_STEPS_PER_MODEL_TURN": "1",  # every step that runs again crosses the turn limit
    "MANAGED_AGENTS_TOOL_WAIT_INLINE_SECONDS": "0",  # every tool wait goes to the ToolWait task
    "MANAGED_AGENTS_WORK_LEASE_TTL_SECONDS": "4",  # a lost sandbox is reapable within seconds
    "MANAGED_AGENTS_RETRY_BASE_SECONDS": "1",
    "MANAGED_AGENTS_WEBHOOK_ALLOW_LOOPBACK": "true",  # the webhook receiver is on loopback
    "MANAGED_AGENTS_WEBHOOK_RETRY_BASE_SECONDS": "1",
    "MANAGED_AGENTS_DEPLOYMENT_RUN_GRACE_SECONDS": "0",  # the reaper finishes a cut-off run at its next run
}
# Granted and needed, on paths these scenarios do not take: each says which path, and where it is tested.
NOT_EXERCISED: dict[tuple[str, str], str] = {
    ("ToolWait", "dynamodb:BatchGetItem"): "resources read includes a find through a lookup index; ToolWait's calls "
    "read the session by id only",
    ("McpProxy", "dynamodb:UpdateItem"): "an mcp_oauth refresh records the token's new expiry on the credential "
    "(tests/aws/test_mcp_proxy_lambda_on_moto.py refreshes one)",
    ("ReportFailure", "dynamodb:BatchGetItem"): "an append that conflicts with a concurrent one reads which of its "
    "ids were written (DynamoDbEventStore._existing_ids; tests/contract)",
    ("ReportFailure", "states:DescribeExecution"): "its wake for a message that came during the failed run finds the "
    "run claimed by another wake meanwhile (tests/aws/test_session_run_handlers.py)",
    ("Reaper", "states:DescribeExecution"): "a reap whose session's run is gone (its execution stopped or failed "
    "without releasing the tool wait) wakes a new one; moto keeps a stopped execution's task token valid, so the "
    "platform cannot reach this branch (tests/aws/test_reaper_handler.py does, without IAM)",
    ("Api", "iam:PassRole"): "creating a deployment schedule passes the schedule role to Scheduler; moto's Scheduler "
    "checks no PassRole (tests/infra/test_deployment_schedules_wiring.py pins the statement)",
    ("Reaper", "iam:PassRole"): "a reconcile creates or updates a deployment schedule, passing the schedule role; "
    "moto's Scheduler checks no PassRole",
    ("Triggers", "iam:PassRole"): "an auto-pause updates the deployment's schedule, passing its role again; moto's "
    "Scheduler checks no PassRole",
    ("McpProxy", "dynamodb:PutItem"): "a failed mcp_oauth refresh puts its vault_credential.refresh_failed webhook "
    "item in the events table (tests/aws/test_webhook_delivery_on_moto.py fails one, IAM enforced)",
    ("ModelTurn", "states:SendTaskSuccess"): "a child thread that finishes while its session waits in ToolWait for a "
    "sandbox tool result called in the same turn as the delegation releases that wait; the fan-out scenario "
    "delegates only",
}
CUSTOM_TOOL = {
    "type": "custom",
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
SANDBOX_TOOLS = {"type": "agent_toolset_20260401"}
MCP_TOKEN = "iam-scenario-mcp-token-5c1d"


@dataclass
class Runs:
    """What the scenarios did: each one's error (None: it passed) and every IAM check made meanwhile."""

    errors: dict[str, BaseException | None] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    policies: dict[str, Any] = field(default_factory=dict)


class _ErrorLog(logging.Handler):
    """The errors the platform logged (an API's 500 logs its traceback, which the client never sees): a failed
    scenario shows those logged while it ran, since a module fixture's captured log reaches no test's report."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("platform log: %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record)[-4000:])


def _types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def fan_out(platform: Platform) -> None:
    """A coordinator delegates to two subagents at once: each child thread runs in an execution of its own, started
    by the coordinator's ModelTurn; each child's last ModelTurn wakes the session's run with its answer. North
    answers well before south: the session's step after north's answer, still waiting on south, wakes south while
    south's model request runs (its execution is RUNNING, not parked in ToolWait), which is the ModelTurn's
    DescribeExecution (with equal delays the two answers raced, and that call was made in some runs only)."""
    client = platform.client
    helpers = [client.beta.agents.create(name=n, model="claude-sonnet-4-6") for n in ("north", "south")]
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [h.id for h in helpers]}
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=lead.id, environment_id=env.id).id
    calls = [
        {"type": "tool_use", "name": f"delegate_to_{n}", "input": {"message": f"survey the {n}"}}
        for n in ("north", "south")
    ]
    platform.model.push(
        {"match": "survey both", "content": calls},
        {"match": "survey the north", "content": [{"type": "text", "text": "north: calm"}], "delay_ms": 300},
        {"match": "survey the south", "content": [{"type": "text", "text": "south: windy"}], "delay_ms": 4000},
        {"match": "north: calm", "content": [{"type": "text", "text": "calm north, windy south"}]},
    )
    platform.say(sid, "survey both")
    events = platform.wait_idle(sid)
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["calm north, windy south"]
    assert sum(e.type == "agent.thread_message_received" for e in events) == 2
    # one execution per thread: each child's run is named after it
    names = [d["name"] for d in platform.executions()]
    threads = [t.id for t in client.beta.sessions.threads.list(sid) if t.parent_thread_id]
    assert len(threads) == 2
    assert all(any(n.startswith(f"{tid}-") for n in names) for tid in threads)


def plain_turn(platform: Platform) -> str:
    platform.model.push("Hello")
    sid = platform.session([])
    platform.say(sid, "hi")
    events = platform.wait_idle(sid)
    assert events[-1].stop_reason.type == "end_turn" and "agent.message" in _types(events)
    return sid


BIG = 360_000  # characters: over the event store's 350 KB spill threshold


def large_payloads(platform: Platform) -> str:
    """A user message and an answer too large for a DynamoDB item: both spill to S3 and are read back."""
    platform.model.push("A" * BIG)
    sid = platform.session([])
    platform.say(sid, "B" * BIG)
    events = platform.wait_idle(sid)
    answer = next(e for e in events if e.type == "agent.message")
    assert len(answer.content[0].text) == BIG
    assert len(platform.model.requests[-1]["body"]["messages"][0]["content"][0]["text"]) == BIG
    message = next(e for e in events if e.type == "user.message")
    # (an event stream resumed before the answer replays it from S3)
    with platform.client.beta.sessions.events.stream(sid, extra_headers={"Last-Event-ID": message.id}) as stream:
        for event in stream:
            if event.type == "agent.message":
                assert len(event.content[0].text) == BIG
                break
    return sid


def tools(platform: Platform) -> str:
    platform.model.push(
        {"content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}]},
        {"content": [{"type": "tool_use", "name": "bash", "input": {"command": "echo in-the-sandbox"}}]},
        "Sunny, and the sandbox answered.",
    )
    sid = platform.session([CUSTOM_TOOL, SANDBOX_TOOLS])
    platform.say(sid, "weather, then bash")
    events = platform.wait_idle(sid)
    use = next(e for e in events if e.type == "agent.custom_tool_use")
    platform.client.beta.sessions.events.send(
        sid,
        events=[
            {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": use.id,
                "content": [{"type": "text", "text": "21C"}],
            }
        ],
    )
    events = platform.wait_idle(sid, count=2, timeout=90)
    result = next(e for e in events if e.type == "agent.tool_result")
    assert not result.is_error and "in-the-sandbox" in "".join(getattr(c, "text", "") for c in result.content)
    assert events[-1].stop_reason.type == "end_turn"
    return sid


def interrupt(platform: Platform) -> None:
    platform.model.push({"hang_ms": 20_000, "content": [{"type": "text", "text": "too late"}]})
    sid = platform.session([])
    before = len(platform.model.requests)  # (the earlier scenarios' requests)
    platform.say(sid, "think hard")
    wait_until(lambda: len(platform.model.requests) > before, 30, interval=0.05)  # the hanging request is made
    platform.client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
    events = platform.wait_idle(sid, timeout=30)
    assert "user.interrupt" in _types(events)


def lost_sandbox(platform: Platform, sid: str) -> None:
    """A bash call waits in the ToolWait task when its sandbox dies; the reaper's next run stops the work and the
    task, answers the call with an error and releases the wait; the model's next bash call gets a fresh sandbox."""
    rt = platform.runtime
    assert rt is not None
    platform.model.push(
        {"content": [{"type": "tool_use", "name": "bash", "input": {"command": "sleep 60"}}]},
        {"content": [{"type": "tool_use", "name": "bash", "input": {"command": "echo fresh-sandbox"}}]},
        "Recovered.",
    )
    platform.say(sid, "sleep " + "C" * BIG)  # (spilled: the reaper and ToolWait read it back from S3)

    def parked() -> bool:
        rec = rt.resources.get_by_id("session", sid)
        return rec is not None and bool(rec.doc.get(TOKEN_FIELD))

    wait_until(parked, 30, interval=0.05)
    (work,) = [w for w in rt.resources.find("work", "session_id", [sid]) if w.doc["state"] != "stopped"]
    (task_arn,) = [arn for arn, proc in platform.sandboxes.procs.items() if proc.poll() is None]
    platform.sandboxes.procs[task_arn].send_signal(signal.SIGKILL)
    time.sleep(5)  # the 4 s lease runs out without heartbeats (the reaper compares times: no polling can help)

    def reaped() -> bool:
        platform.reap()
        stopped = rt.resources.get_by_id("work", work.id)
        return stopped is not None and stopped.doc["state"] == "stopped"

    # (a heartbeat the worker sent just before the kill can be handled later on a loaded machine and move the lease's
    # end past this first run: the reaper's next runs stop the work then, as its schedule would)
    wait_until(reaped, 30, interval=1)
    (task,) = platform.ecs().describe_tasks(cluster=platform.cluster, tasks=[task_arn])["tasks"]
    assert task["desiredStatus"] == "STOPPED"
    wait_until(lambda: "Recovered." in str(platform.events(sid)[-3:]), 90, interval=0.2)
    results = [e for e in platform.events(sid) if e.type == "agent.tool_result"]
    assert results[-2].is_error and not results[-1].is_error


def vault_and_mcp(platform: Platform) -> None:
    """A vault credential written, used by an MCP tool, updated and deleted: all through the MCP proxy but delete."""
    client = platform.client
    with McpTestServer(bearer_token=MCP_TOKEN) as srv:
        vault = client.beta.vaults.create(display_name="v")
        credential = client.beta.vaults.credentials.create(
            vault.id, auth={"type": "static_bearer", "token": MCP_TOKEN, "mcp_server_url": srv.url}
        )
        agent = client.beta.agents.create(
            name="m",
            model="claude-sonnet-4-6",
            mcp_servers=[{"type": "url", "name": "tools", "url": srv.url}],
            tools=[
                {
                    "type": "mcp_toolset",
                    "mcp_server_name": "tools",
                    "default_config": {"permission_policy": {"type": "always_allow"}},
                }
            ],
        )
        env = client.beta.environments.create(name="m", config={"type": "cloud"})
        sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id]).id
        platform.model.push({"content": [{"type": "tool_use", "name": "add", "input": {"a": 2, "b": 40}}]}, "42.")
        platform.say(sid, "add")
        events = platform.wait_idle(sid)
        result = next(e for e in events if e.type == "agent.mcp_tool_result")
        assert not result.is_error and result.content[0].text == "42"
    update: Any = {"type": "static_bearer", "token": "t2"}
    client.beta.vaults.credentials.update(credential.id, vault_id=vault.id, auth=update)
    client.beta.vaults.credentials.delete(credential.id, vault_id=vault.id)


def admin_key(platform: Platform, key: str) -> None:
    """The deployment's admin key (a secret the API registers on its first request) works."""
    client = anthropic.Anthropic(base_url=platform.url, api_key=key, max_retries=0)
    wait_until(lambda: _works(client), 30, interval=0.2)


def _works(client: anthropic.Anthropic) -> bool:
    try:
        client.beta.agents.list()
    except anthropic.AuthenticationError:
        return False
    return True


def archive(platform: Platform, sid: str) -> None:
    archived = platform.client.beta.sessions.archive(sid)
    assert archived.archived_at is not None


def delete(platform: Platform, sid: str) -> None:
    platform.client.beta.sessions.delete(sid)
    with pytest.raises(anthropic.NotFoundError):
        platform.client.beta.sessions.retrieve(sid)
    rt = platform.runtime
    assert rt is not None and rt.events.last_seq(sid) == 0


def trigger(platform: Platform) -> str:
    platform.model.push("Triggered and answered")
    agent = platform.client.beta.agents.create(name="t", model="claude-sonnet-4-6")
    env = platform.client.beta.environments.create(name="t", config={"type": "cloud"})
    (entry,) = documented_json("start-session.json", {"AGENT_ID": agent.id, "ENVIRONMENT_ID": env.id})
    out = platform.trigger(delivered_event(entry))
    events = platform.wait_idle(out["session_id"])
    assert "agent.message" in _types(events)
    # (a first message of 100,000 four-byte characters is over the item limit: the trigger spills it)
    platform.model.push("Read it all")
    entry["Detail"] = json.dumps({**json.loads(entry["Detail"]), "message": "\U0001f600" * 100_000})
    big = platform.trigger(delivered_event(entry))
    platform.wait_idle(big["session_id"])
    return str(out["session_id"])


def crashed_turn(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ModelTurn that crashes while a second message arrives: ReportFailure logs session.error, releases the run
    and starts the next one for the message that came meanwhile."""
    sid = platform.session([])
    rt = platform.runtime
    assert rt is not None
    advance = session_run.advance
    crashed = threading.Event()

    def crash(session_id: str, *args: Any, **kwargs: Any) -> Any:
        if session_id == sid and not crashed.is_set():
            crashed.set()
            # (the crash waits for the second message, so that it wakes the run while it fails)
            wait_until(lambda: rt.events.last_seq(sid) >= 3, 30, interval=0.05)
            raise RuntimeError("the harness crashed")
        return advance(session_id, *args, **kwargs)

    monkeypatch.setattr(session_run, "advance", crash)
    platform.model.push("After the crash")
    platform.say(sid, "crash")
    wait_until(crashed.is_set, 30, interval=0.05)
    platform.say(sid, "meanwhile")
    wait_until(lambda: "agent.message" in _types(platform.events(sid)), 60, interval=0.1)
    assert "session.error" in _types(platform.events(sid))


def late_token(platform: Platform, sid: str) -> None:
    """A ToolWait task that parks its token after the results were logged releases it at once (here the token is
    one Step Functions no longer knows, as when the task timed out meanwhile: released quietly)."""
    rt = platform.runtime
    assert rt is not None
    platform.invoke("ToolWait", {"session_id": sid, "task_token": "a-token-that-timed-out"})
    rec = rt.resources.get_by_id("session", sid)
    assert rec is not None and TOKEN_FIELD not in rec.doc


@pytest.fixture(scope="module")
def runs(synth_variant: Callable[[dict[str, Any]], Synth], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    out = Runs()
    synth = synth_variant(VARIANT)
    out.policies = role_policies(synth.template)

    logged = _ErrorLog()
    logging.getLogger().addHandler(logged)

    def scenario(name: str, fn: Callable[[], Any]) -> Any:
        start = len(logged.lines)
        try:
            result = fn()
        except BaseException as exc:  # recorded for the scenario's own test, with what the platform logged meanwhile
            for line in logged.lines[start:][-5:]:
                exc.add_note(line)
            out.errors[name] = exc
            return None
        out.errors[name] = None
        return result

    admin = "a" * 40  # the deployment-generated admin key (the stack: a Secrets Manager random string)
    env = {**ENV, ADMIN_KEY_SECRET_ARN_ENV: "admin-key"}
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        aws_platform(synth, tmp_path_factory.mktemp("iam"), env=env) as platform,
    ):
        assert platform.iam is not None
        iam: IamEnforcement = platform.iam
        boto3.client("secretsmanager", region_name=REGION).create_secret(Name="admin-key", SecretString=admin)
        scenario("plain turn", lambda: plain_turn(platform))
        scenario("fan out", lambda: fan_out(platform))
        large = scenario("large payloads", lambda: large_payloads(platform))
        tooled = scenario("tools", lambda: tools(platform))
        scenario("interrupt", lambda: interrupt(platform))
        if tooled is not None:
            scenario("reaper", lambda: lost_sandbox(platform, tooled))
            scenario("late token", lambda: late_token(platform, tooled))
            scenario("archive", lambda: archive(platform, tooled))
        if large is not None:
            scenario("delete", lambda: delete(platform, large))
        scenario("vault and MCP", lambda: vault_and_mcp(platform))
        scenario("admin key", lambda: admin_key(platform, admin))
        scenario("trigger", lambda: trigger(platform))
        scenario("crashed turn", lambda: crashed_turn(platform, monkeypatch))
        scenario("deployment", lambda: deployment(platform))
        scenario("cut-off run", lambda: cut_off_run(platform, monkeypatch))
        scenario("webhooks", lambda: webhooks(platform))
        platform.settled(1)
        out.checks = list(iam.checks)
    logging.getLogger().removeHandler(logged)
    yield out  # (the platform is gone: what the tests below look at is recorded)


def deployment(platform: Platform) -> None:
    """A scheduled deployment: its Scheduler schedule created, paused, resumed; a tick after its agent was archived
    auto-pauses it (the trigger function disables the schedule); a session title changed (session.updated on the
    bus); archived (the schedule deleted)."""
    client = platform.client
    agent = client.beta.agents.create(name="d", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="d", config={"type": "cloud"})
    hello = [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
    schedule = {"type": "cron", "expression": "0 0 1 1 *", "timezone": "UTC"}
    rt = platform.runtime
    assert rt is not None and rt.deployments.schedules is not None
    schedules = rt.deployments.schedules
    put = schedules.put
    failing = [0]

    def flaky_put(*args: Any, **kwargs: Any) -> None:  # Scheduler failing between the store write and its sync
        if failing[0]:
            failing[0] -= 1
            raise ConnectionError("Scheduler unavailable")
        put(*args, **kwargs)

    def create() -> Any:
        return client.beta.deployments.create(
            agent=agent.id,
            environment_id=env.id,
            name="d",
            initial_events=hello,
            schedule=schedule,  # type: ignore[arg-type]
        )

    schedules.put = flaky_put  # type: ignore[method-assign]
    try:
        dep = create()
        failing[0] = 1
        unsynced = create()
        platform.reap()  # the reaper syncs what failed: `unsynced`'s schedule created
        failing[0] = 1
        client.beta.deployments.pause(dep.id)
        platform.reap()  # `dep`'s schedule disabled
        failing[0] = 1
        client.beta.deployments.archive(unsynced.id)
        platform.reap()  # `unsynced`'s schedule deleted
    finally:
        schedules.put = put  # type: ignore[method-assign]
    group = os.environ[DEPLOYMENT_SCHEDULE_GROUP_ENV]
    scheduler = boto3.client("scheduler", region_name=REGION)
    assert scheduler.get_schedule(Name=dep.id, GroupName=group)["State"] == "DISABLED"
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=unsynced.id, GroupName=group)
    client.beta.deployments.unpause(dep.id)
    client.beta.agents.archive(agent.id)
    platform.trigger(
        {
            "schedule_arn": f"arn:aws:scheduler:{REGION}:123456789012:schedule/g/{dep.id}",
            "scheduled_time": "2027-01-01T00:00:00Z",
            "detail": {"type": "run_deployment", "deployment_id": dep.id},
        }
    )
    assert client.beta.deployments.retrieve(dep.id).status == "paused"
    sid = platform.session([])
    client.beta.sessions.update(sid, title="renamed")
    client.beta.deployments.archive(dep.id)


class _CutOff(BaseException):
    """A function's process stopping where it stands (no `except Exception` sees it)."""


def cut_off_run(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manual deployment run whose API call stopped after its claim is finished by the reaper: the session with its
    initial message, over the item limit (the reaper spills it), and the run's outcome."""
    client, rt = platform.client, platform.runtime
    assert rt is not None
    agent = client.beta.agents.create(name="c", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    big = [{"type": "user.message", "content": [{"type": "text", "text": "D" * BIG}]}]
    dep = client.beta.deployments.create(agent=agent.id, environment_id=env.id, name="c", initial_events=big)  # type: ignore[arg-type]
    record = rt.resources.get_by_id("deployment", dep.id)
    assert record is not None

    def cut_off(*args: Any, **kwargs: Any) -> str:
        raise _CutOff

    with monkeypatch.context() as patched, acting_as("Api"):
        patched.setattr(DeploymentService, "_start_session", cut_off)
        with pytest.raises(_CutOff):
            rt.deployments.run_now(record.workspace_id, dep.id)
    platform.model.push("done")
    platform.reap()  # (MANAGED_AGENTS_DEPLOYMENT_RUN_GRACE_SECONDS is 0 here)
    (run,) = client.beta.deployment_runs.list(deployment_id=dep.id)
    assert run.session_id is not None and run.error is None
    platform.wait_idle(run.session_id)


def webhooks(platform: Platform) -> None:
    """A webhook delivered through the stream, the relay, the queue and the deliverer; its first attempt fails, so
    the deliverer queues a retry."""
    from tests.e2e.loopback_http import serve
    from tests.e2e.test_webhooks_delivery import Receiver

    receiver = Receiver(fail_first=1)
    with serve(receiver.handler()) as base:
        endpoint = platform.client.beta.organization.webhooks.create(
            url=base + "/hooks",
            enabled_events=["session.status_idled"],  # type: ignore[list-item]
        )
        plain_turn(platform)

        def delivered() -> bool:
            platform.pump_webhooks()
            return bool(receiver.delivered())

        wait_until(delivered, 60, interval=0.2)
        platform.client.beta.organization.webhooks.delete(endpoint.id)
    (headers, body) = receiver.delivered()[0]
    assert platform.client.beta.webhooks.unwrap(body, headers=headers, key=endpoint.signing_secret).data.id


SCENARIOS = [
    "plain turn",
    "fan out",
    "large payloads",
    "tools",
    "interrupt",
    "reaper",
    "archive",
    "delete",
    "vault and MCP",
    "admin key",
    "trigger",
    "crashed turn",
    "late token",
    "deployment",
    "cut-off run",
    "webhooks",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_scenario_passes_with_iam_enforced(runs: Runs, name: str) -> None:
    assert name in runs.errors, f"{name} did not run (a scenario it depends on failed)"
    error = runs.errors[name]
    if error is not None:
        raise error


def test_no_call_was_denied(runs: Runs) -> None:
    denied = sorted({(c.principal, c.action) for c in runs.checks if not c.allowed and c.principal != "admin"})
    assert denied == []


def _unneeded(runs: Runs) -> set[tuple[str, str]]:
    """(principal, action) pairs whose removal from the role denies none of the calls the scenarios made."""
    out = set()
    for principal, policy in sorted(runs.policies.items()):
        made = [c for c in runs.checks if c.principal == principal]
        for action in sorted(policy.exercisable()):
            # the role's policy with that one action taken away, evaluated by moto's own policy engine
            mutated = policy.document(without=frozenset({action}))
            if all(permits(mutated, c.action) for c in made):
                out.add((principal, action))
    return out


def test_removing_any_granted_action_denies_a_call_a_scenario_made(runs: Runs) -> None:
    # Given each principal's synthesized role and the calls the scenarios made with it
    # When any one granted action is taken away (but those listed with the path that needs them)
    unneeded = _unneeded(runs) - NOT_EXERCISED.keys()
    # Then some call a scenario made is denied, which fails that scenario
    assert sorted(unneeded) == [], (
        f"granted, but no scenario needs them (remove the grant or add the scenario): {unneeded}"
    )


def test_each_action_listed_as_not_exercised_is_granted_and_still_not_exercised(runs: Runs) -> None:
    granted = {(p, a) for p, policy in runs.policies.items() for a in policy.exercisable()}
    assert NOT_EXERCISED.keys() <= granted, "listed but no longer granted: take it off NOT_EXERCISED"
    assert NOT_EXERCISED.keys() <= _unneeded(runs), "a scenario exercises it now: take it off NOT_EXERCISED"


@pytest.mark.parametrize(
    ("principal", "action", "scenario"),
    [
        ("Provisioner", "ecs:ListTasks", "archive"),  # issue 12 item 6: archive and delete answered 500
        ("Api", "states:StartExecution", "plain turn"),
    ],
)
def test_without_the_grant_the_scenario_fails_for_real(
    synth_variant: Callable[[dict[str, Any]], Synth], tmp_path: Path, principal: str, action: str, scenario: str
) -> None:
    # Given the platform with one action taken away from one role
    with aws_platform(
        synth_variant(VARIANT), tmp_path, env=ENV, iam_without={principal: frozenset({action})}
    ) as platform:
        # When the scenario runs
        if scenario == "archive":
            platform.model.push("Hello")
            sid = platform.session([SANDBOX_TOOLS])
            with pytest.raises(anthropic.APIStatusError) as failure:
                archive(platform, sid)
            # Then it fails with a retryable error that names the cause, and nothing changed
            assert failure.value.status_code == 503 and "ecs:ListTasks" in str(failure.value.body)
            assert platform.client.beta.sessions.retrieve(sid).archived_at is None
        else:
            with pytest.raises(anthropic.APIStatusError) as failure:
                plain_turn(platform)
            assert failure.value.status_code == 503
        # And the denial is what the record shows
        assert platform.iam is not None
        assert {(d.principal, d.action) for d in platform.iam.denials()} == {(principal, action)}
    body = failure.value.body
    assert isinstance(body, dict) and body["type"] == "error"  # (in the error envelope)
