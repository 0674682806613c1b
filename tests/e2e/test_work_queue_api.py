"""The work queue through the official SDK's own `beta.environments.work` resource: what the worker speaks."""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import httpx2
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, create_environment_key, wait_idle, wait_until

TOOLSET = {"type": "agent_toolset_20260401"}
ASK_TOOLSET = {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}


def _setup(client: anthropic.Anthropic, tools: list[Any] | None = None) -> tuple[str, str]:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=tools or [TOOLSET])
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    return env.id, sid


def _say(client: anthropic.Anthropic, sid: str, text: str = "hi") -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _token(secret: str | None) -> str:
    assert secret
    payload = json.loads(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4)))
    token: str = payload["sessions_token"]
    return token


def _claim(server: Server, env_id: str) -> tuple[Any, anthropic.Anthropic, anthropic.Anthropic]:
    """Poll and ack like the SDK poller; returns the item, an env-key client and a work-token client."""
    worker = server.client(create_environment_key(server.client(), env_id))
    item = wait_until(lambda: worker.beta.environments.work.poll(env_id, block_ms=500))
    worker.beta.environments.work.ack(item.id, environment_id=env_id)
    return item, worker, server.client(_token(item.secret))


def test_user_message_queues_work_that_poll_hands_out_once_with_a_session_token(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a self-hosted session whose agent has the sandbox toolset
    env_id, sid = _setup(client)
    model_server.push("hello")
    worker = server.client(create_environment_key(client, env_id))
    # When nothing has happened yet, an empty poll returns None (HTTP 200 null)
    assert worker.beta.environments.work.poll(env_id) is None
    # When the user writes
    _say(client, sid)
    # Then one work item for the session is handed out, with a secret carrying a session-scoped token
    item = worker.beta.environments.work.poll(env_id, block_ms=999, anthropic_worker_id="rack-1")
    assert item is not None and item.type == "work" and item.id.startswith("work_")
    assert item.environment_id == env_id and item.state == "queued"
    assert item.data.type == "session" and item.data.id == sid
    assert _token(item.secret).startswith("wt-ma-")
    # And nobody else gets it while it is being acknowledged
    assert worker.beta.environments.work.poll(env_id, block_ms=50) is None
    stats = client.beta.environments.work.stats(env_id)
    assert (stats.type, stats.depth, stats.pending) == ("work_queue_stats", 0, 1)
    assert stats.workers_polling == 1 and stats.oldest_queued_at == item.created_at
    # When it is acknowledged
    acked = worker.beta.environments.work.ack(item.id, environment_id=env_id)
    assert acked.state == "starting" and acked.acknowledged_at is not None and acked.secret is None
    # Then retrieve (API key) shows it without the secret, and a second message queues nothing new
    got = client.beta.environments.work.retrieve(item.id, environment_id=env_id)
    assert got.state == "starting" and got.secret is None
    _say(client, sid, "again")
    assert worker.beta.environments.work.poll(env_id, block_ms=100) is None
    listed = list(worker.beta.environments.work.list(env_id))
    assert [w.id for w in listed] == [item.id]


def test_empty_poll_is_http_200_with_json_null(server: Server, client: anthropic.Anthropic) -> None:
    env_id, _ = _setup(client)
    key = create_environment_key(client, env_id)
    resp = httpx2.get(
        f"{server.url}/v1/environments/{env_id}/work/poll",
        params={"block_ms": 10},
        headers={"Authorization": f"Bearer {key}", "anthropic-beta": "managed-agents-2026-04-01"},
        timeout=30,
    )
    assert resp.status_code == 200 and resp.text == "null"
    bad = httpx2.get(
        f"{server.url}/v1/environments/{env_id}/work/poll",
        params={"block_ms": 0},
        headers={"Authorization": f"Bearer {key}", "anthropic-beta": "managed-agents-2026-04-01"},
        timeout=30,
    )
    assert bad.status_code == 400 and "block_ms" in bad.json()["error"]["message"]


def test_heartbeat_lease_precondition_and_stop(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    env_id, sid = _setup(client)
    model_server.push("hello")
    _say(client, sid)
    item, _, token_client = _claim(server, env_id)
    work = token_client.beta.environments.work
    # The first heartbeat claims the lease with NO_HEARTBEAT and makes the item active
    beat = work.heartbeat(
        item.id, environment_id=env_id, expected_last_heartbeat="NO_HEARTBEAT", desired_ttl_seconds=30
    )
    assert beat.type == "work_heartbeat" and beat.lease_extended and beat.state == "active"
    assert beat.ttl_seconds == 30 and beat.last_heartbeat
    # A heartbeat that does not echo the server's last value is refused: 412 heartbeat_precondition_failed
    with pytest.raises(anthropic.PreconditionFailedError) as info:
        work.heartbeat(item.id, environment_id=env_id, expected_last_heartbeat="NO_HEARTBEAT")
    assert info.value.status_code == 412
    body: Any = info.value.body
    details = body["error"]["details"]
    assert details["error_code"] == "heartbeat_precondition_failed"
    assert details["current_state"] == {
        "last_heartbeat": beat.last_heartbeat,
        "lease_extended": False,
        "state": "active",
        "ttl_seconds": 30,
    }
    # Echoing it extends the lease
    again = work.heartbeat(item.id, environment_id=env_id, expected_last_heartbeat=beat.last_heartbeat)
    assert again.lease_extended and again.last_heartbeat != beat.last_heartbeat
    got = client.beta.environments.work.retrieve(item.id, environment_id=env_id)
    assert got.state == "active" and got.started_at and got.latest_heartbeat_at == again.last_heartbeat
    # A graceful stop by the user (API key) asks the worker to stop: the next heartbeat says so
    stopping = client.beta.environments.work.stop(item.id, environment_id=env_id)
    assert stopping.state == "stopping" and stopping.stop_requested_at
    told = work.heartbeat(item.id, environment_id=env_id, expected_last_heartbeat="anything")
    assert (told.state, told.lease_extended) == ("stopping", False)
    # The worker's own stop ends it; stopping again is a 409
    stopped = work.stop(item.id, environment_id=env_id, force=True)
    assert stopped.state == "stopped" and stopped.stopped_at
    with pytest.raises(anthropic.ConflictError):
        work.stop(item.id, environment_id=env_id)
    # And the token died with the item: it can no longer read the session
    with pytest.raises(anthropic.AuthenticationError):
        token_client.beta.sessions.retrieve(sid)


def test_credentials_are_scoped(server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    env_id, sid = _setup(client)
    other_env, other_sid = _setup(client)
    model_server.push("hello")
    _say(client, sid)
    item, worker, token_client = _claim(server, env_id)
    # An environment key is for its work queue and its environment's sessions, nothing else
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        list(worker.beta.agents.list())
    assert "environment key" in str(denied.value)
    assert worker.beta.sessions.retrieve(sid).id == sid
    with pytest.raises(anthropic.NotFoundError):
        worker.beta.sessions.retrieve(other_sid)
    with pytest.raises(anthropic.NotFoundError):
        worker.beta.environments.work.poll(other_env)
    with pytest.raises(anthropic.PermissionDeniedError):
        worker.beta.environments.work.retrieve(item.id, environment_id=env_id)
    # The work queue list takes an environment key only (reference), not an API key
    with pytest.raises(anthropic.PermissionDeniedError):
        list(client.beta.environments.work.list(env_id))
    # A work token reaches only its own session, and may only post tool results there
    assert token_client.beta.sessions.retrieve(sid).id == sid
    with pytest.raises(anthropic.NotFoundError):
        token_client.beta.sessions.retrieve(other_sid)
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        _say(token_client, sid)
    assert "user.tool_result" in str(info.value)
    # user.tool_result is the worker's: an API key cannot post one
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.tool_result", "tool_use_id": "sevt_x", "content": []}]
        )
    assert "work token" in str(info.value)


def test_environment_keys_are_listed_hashed_and_revocable(server: Server, client: anthropic.Anthropic) -> None:
    env_id, _ = _setup(client)
    key = create_environment_key(client, env_id, name="rack-1")
    listed: Any = client.get(f"/v1/environments/{env_id}/keys", cast_to=object)
    assert [(k["name"], k["type"], k["revoked_at"]) for k in listed["data"]] == [("rack-1", "environment_key", None)]
    assert key not in json.dumps(listed)  # only a hint is ever shown again
    worker = server.client(key)
    assert worker.beta.environments.work.poll(env_id) is None
    revoked: Any = client.post(f"/v1/environments/{env_id}/keys/{listed['data'][0]['id']}/revoke", cast_to=object)
    assert revoked["revoked_at"] is not None
    with pytest.raises(anthropic.AuthenticationError):
        worker.beta.environments.work.poll(env_id)
    # Cloud environments get no keys: the platform runs their sandboxes
    cloud = client.beta.environments.create(name="c", config={"type": "cloud"})
    with pytest.raises(anthropic.BadRequestError) as info:
        create_environment_key(client, cloud.id)
    assert "self_hosted" in str(info.value)


def test_confirmed_call_is_answered_by_the_work_token(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given an ask-gated bash call that the user allows
    env_id, sid = _setup(client, [ASK_TOOLSET])
    model_server.push(
        {"content": [{"type": "tool_use", "id": "toolu_b1", "name": "bash", "input": {"command": "ls"}}]},
        "There is one file.",
    )
    _say(client, sid, "list files")
    events = wait_idle(client, sid)
    use = next(e for e in events if e.type == "agent.tool_use")
    assert use.evaluated_permission == "ask" and events[-1].stop_reason.type == "requires_action"
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "allow"}]
    )
    assert len(model_server.requests) == 1  # nothing runs until the result arrives
    # When the worker that claimed the session's work posts the result with its token
    _, _, token_client = _claim(server, env_id)
    token_client.beta.sessions.events.send(
        sid,
        events=[{"type": "user.tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "a.txt"}]}],
    )
    # Then the model gets it and the session finishes
    events = wait_idle(client, sid, count=2)
    last = model_server.requests[1]["body"]["messages"][-1]["content"]
    assert last[0]["tool_use_id"] == "toolu_b1" and last[0]["content"][0]["text"] == "a.txt"
    assert events[-1].stop_reason.type == "end_turn"


def test_a_worker_that_stops_heartbeating_loses_the_call_within_the_lease(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a worker that claimed the session's work, took the lease and then went silent
    env_id, sid = _setup(client)
    model_server.push(
        {"content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "sleep 100"}}]},
        {"match": "abandoned", "content": [{"type": "text", "text": "The sandbox died; retrying later."}]},
    )
    _say(client, sid, "run it")
    item, _, token_client = _claim(server, env_id)
    token_client.beta.environments.work.heartbeat(
        item.id, environment_id=env_id, expected_last_heartbeat="NO_HEARTBEAT", desired_ttl_seconds=3
    )
    # When its lease runs out with the bash call unanswered
    events = wait_idle(client, sid, timeout=20)
    # Then the call got an error user.tool_result, the session an error, and the model saw both
    result = next(e for e in events if e.type == "user.tool_result")
    use = next(e for e in events if e.type == "agent.tool_use")
    assert result.tool_use_id == use.id and result.is_error
    assert "lease expired" in result.content[0].text
    error = next(e for e in events if e.type == "session.error")
    assert error.error.retry_status.type == "retrying" and "heartbeat" in error.error.message
    assert events[-1].stop_reason.type == "end_turn"
    assert client.beta.environments.work.retrieve(item.id, environment_id=env_id).state == "stopped"
    model_server.assert_complete()
