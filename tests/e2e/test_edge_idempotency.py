"""Retried POSTs change nothing twice: `Idempotency-Key` replays, and the SDK's own retries are recognised.

The official SDK retries a POST whose response was lost (a dropped connection, a timeout) with the same body and
`x-stainless-retry-count: 1`, and sends no idempotency key. Here a transport forwards each request to the server
and then drops the first response on the floor, exactly what the SDK sees when a connection dies after the
server answered.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anthropic
import httpx2
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, wait_idle, wait_until

MA = "managed-agents-2026-04-01"


class DropFirstResponse(httpx2.BaseTransport):
    """Forwards every request; the first response to a POST on a path ending with `suffix` is lost."""

    def __init__(self, suffix: str) -> None:
        self.inner = httpx2.HTTPTransport()
        self.suffix = suffix
        self.dropped = 0
        self.retry_counts: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith(self.suffix):
            self.retry_counts.append(request.headers.get("x-stainless-retry-count", ""))
            if not self.dropped:
                self.dropped += 1
                response.read()
                response.close()
                raise httpx2.ReadTimeout("the response was lost", request=request)
        return response


def _flaky_client(server: Server, suffix: str) -> tuple[anthropic.Anthropic, DropFirstResponse]:
    transport = DropFirstResponse(suffix)
    client = anthropic.Anthropic(
        base_url=server.url,
        api_key=server.admin_key,
        max_retries=2,
        http_client=httpx2.Client(transport=transport, timeout=30),
    )
    return client, transport


def _agent_env(client: anthropic.Anthropic) -> tuple[str, str]:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return agent.id, env.id


def _msg(text: str) -> dict[str, Any]:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _user_messages(client: anthropic.Anthropic, sid: str) -> list[Any]:
    return [e for e in all_events(client, sid) if e.type == "user.message"]


def test_an_sdk_retry_of_a_send_whose_response_was_lost_logs_the_message_once(
    server: Server, client: anthropic.Anthropic
) -> None:
    # Given a session and a client whose first response to events.send is lost
    agent_id, env_id = _agent_env(client)
    sid = client.beta.sessions.create(agent=agent_id, environment_id=env_id).id
    flaky, transport = _flaky_client(server, "/events")
    # When the SDK sends a message (and retries it after the lost response)
    sent = flaky.beta.sessions.events.send(sid, events=[_msg("only once")])
    assert transport.retry_counts == ["0", "1"]
    # Then the log holds the message once, and the retry answered with the event that was logged
    wait_idle(client, sid)
    logged = _user_messages(client, sid)
    assert len(logged) == 1
    assert [e.id for e in sent.data] == [logged[0].id]


def test_an_sdk_retry_of_a_create_whose_response_was_lost_makes_one_session(
    server: Server, client: anthropic.Anthropic
) -> None:
    # Given a client whose first response to sessions.create is lost
    agent_id, env_id = _agent_env(client)
    flaky, transport = _flaky_client(server, "/v1/sessions")
    # When it creates a session (the SDK retries)
    session = flaky.beta.sessions.create(agent=agent_id, environment_id=env_id, title="once")
    assert transport.retry_counts == ["0", "1"]
    # Then exactly one session exists, the one the retry returned
    assert [s.id for s in client.beta.sessions.list()] == [session.id]


def test_two_identical_sends_that_are_not_retries_are_both_logged(client: anthropic.Anthropic) -> None:
    # Given a session
    agent_id, env_id = _agent_env(client)
    sid = client.beta.sessions.create(agent=agent_id, environment_id=env_id).id
    # When the user says the same thing twice, on purpose (first attempts both)
    client.beta.sessions.events.send(sid, events=[_msg("yes")])
    wait_idle(client, sid)
    client.beta.sessions.events.send(sid, events=[_msg("yes")])
    wait_idle(client, sid, count=2)
    # Then both are logged
    assert len(_user_messages(client, sid)) == 2


def test_an_idempotency_key_replays_the_first_response(client: anthropic.Anthropic) -> None:
    # Given a session
    agent_id, env_id = _agent_env(client)
    key = {"Idempotency-Key": f"send-{uuid.uuid4()}"}
    sid = client.beta.sessions.create(agent=agent_id, environment_id=env_id).id
    # When the same send is made twice with one key (long after: not an SDK retry)
    first = client.beta.sessions.events.send(sid, events=[_msg("hi")], extra_headers=key)
    wait_idle(client, sid)
    again = client.beta.sessions.events.send(sid, events=[_msg("hi")], extra_headers=key)
    # Then the second gets the first's response and nothing more is logged
    assert [e.id for e in again.data] == [e.id for e in first.data]
    assert len(_user_messages(client, sid)) == 1
    # And a create made twice with one key makes one session
    create_key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    s1 = client.beta.sessions.create(agent=agent_id, environment_id=env_id, extra_headers=create_key)
    s2 = client.beta.sessions.create(agent=agent_id, environment_id=env_id, extra_headers=create_key)
    assert s1.id == s2.id and s1.created_at == s2.created_at
    assert sorted(s.id for s in client.beta.sessions.list()) == sorted([sid, s1.id])


def test_a_key_reused_for_another_request_is_a_400(client: anthropic.Anthropic) -> None:
    # Given a key used for one agent
    key = {"Idempotency-Key": f"agent-{uuid.uuid4()}"}
    client.beta.agents.create(name="first", model="claude-sonnet-4-6", extra_headers=key)
    # When it is used for a different body, or another endpoint
    for call in (
        lambda: client.beta.agents.create(name="second", model="claude-sonnet-4-6", extra_headers=key),
        lambda: client.beta.environments.create(name="e", extra_headers=key),
    ):
        with pytest.raises(anthropic.BadRequestError) as info:
            call()
        # Then it is refused, saying why, and nothing was created
        assert "Idempotency-Key" in str(info.value) and "different request" in str(info.value)
    assert [a.name for a in client.beta.agents.list()] == ["first"]
    assert list(client.beta.environments.list()) == []


def test_keys_are_scoped_to_the_workspace(server: Server, client: anthropic.Anthropic) -> None:
    # Given a key used in one workspace
    key = {"Idempotency-Key": "shared-key"}
    mine = client.beta.agents.create(name="mine", model="claude-sonnet-4-6", extra_headers=key)
    other_ws = server.rt.keys.create_workspace("other")
    _, secret = server.rt.keys.create_key(other_ws)
    other = server.client(secret)
    # When another workspace uses the same key for its own request
    theirs = other.beta.agents.create(name="theirs", model="claude-sonnet-4-6", extra_headers=key)
    # Then each workspace got its own result
    assert theirs.id != mine.id and theirs.name == "theirs"


@pytest.mark.parametrize("value", ["", "x" * 256, "bad\tkey"])
def test_a_malformed_key_is_a_400(server: Server, value: str) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}", "anthropic-beta": MA, "Idempotency-Key": value}
    resp = httpx2.post(server.url + "/v1/agents", json={"name": "a", "model": "m"}, headers=headers, timeout=10)
    assert resp.status_code == 400 and "Idempotency-Key" in resp.json()["error"]["message"]


def test_an_sdk_retry_of_an_interrupt_whose_first_attempt_failed_after_its_append_stops_the_turn(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a model request that hangs, and an orchestrator whose first interrupt fails (after the interrupt was
    # logged: the first attempt answers 500)
    agent_id, env_id = _agent_env(client)
    sid = client.beta.sessions.create(agent=agent_id, environment_id=env_id).id
    model_server.push({"hang_ms": 20_000})
    client.beta.sessions.events.send(sid, events=[_msg("think")])
    wait_until(lambda: len(model_server.requests) == 1, timeout=30)
    orch = server.rt.sessions.svc.orchestrator  # (both runtimes': the embedded one, Step Functions on AWS)
    assert orch is not None
    interrupt = orch.interrupt
    failed: list[str] = []

    def fail_once(session_id: str) -> None:
        if not failed:
            failed.append(session_id)
            raise RuntimeError("the orchestrator failed after the append")
        interrupt(session_id)

    monkeypatch.setattr(orch, "interrupt", fail_once)
    retrying = anthropic.Anthropic(base_url=server.url, api_key=server.admin_key, max_retries=2)
    # When the SDK sends the interrupt (and retries the 500)
    started = time.monotonic()
    retrying.with_options(timeout=30).beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
    # Then the retry stopped the hanging turn: the session idles long before the hang would end, interrupted once
    events = wait_idle(client, sid, timeout=15)
    assert failed == [sid]
    assert time.monotonic() - started < 15
    assert [e.type for e in all_events(client, sid)].count("user.interrupt") == 1
    assert "agent.message" not in [e.type for e in events]
