"""Sessions through the official SDK: pinning, listing, updating, archive, delete, auth and workspace isolation."""

from __future__ import annotations

import base64

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, wait_idle, wait_until


def _agent_env(client: anthropic.Anthropic) -> tuple[str, str]:
    agent = client.beta.agents.create(name="helper", model="claude-sonnet-4-6", system="v1")
    env = client.beta.environments.create(name="env", config={"type": "cloud"})
    return agent.id, env.id


def _say(client: anthropic.Anthropic, session_id: str, text: str) -> None:
    client.beta.sessions.events.send(
        session_id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def test_pinned_version_survives_agent_update(client: anthropic.Anthropic) -> None:
    # Given an agent that moved on to version 2
    agent_id, env_id = _agent_env(client)
    client.beta.agents.update(agent_id, system="v2")
    # When a session pins version 1
    session = client.beta.sessions.create(agent={"type": "agent", "id": agent_id, "version": 1}, environment_id=env_id)
    # Then the session snapshots version 1, while a string reference takes the latest
    assert session.agent.version == 1 and session.agent.system == "v1"
    latest = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    assert latest.agent.version == 2 and latest.agent.system == "v2"
    assert client.beta.sessions.retrieve(session.id).agent.version == 1


def test_list_filters_by_status_and_agent_and_orders(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given two agents with sessions, one of which is running a hanging model request
    agent_id, env_id = _agent_env(client)
    other = client.beta.agents.create(name="other", model="claude-sonnet-4-6")
    s1 = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    s2 = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    s3 = client.beta.sessions.create(agent=other.id, environment_id=env_id)
    model_server.push({"hang_ms": 3000})
    _say(client, s2.id, "hi")
    wait_until(lambda: client.beta.sessions.retrieve(s2.id).status == "running")
    # Then statuses filters
    idle = [s.id for s in client.beta.sessions.list(statuses=["idle"])]
    assert sorted(idle) == sorted([s1.id, s3.id])
    running = [s.id for s in client.beta.sessions.list(statuses=["running"])]
    assert running == [s2.id]
    # And agent_id filters
    assert sorted(s.id for s in client.beta.sessions.list(agent_id=agent_id)) == sorted([s1.id, s2.id])
    assert [s.id for s in client.beta.sessions.list(agent_id=other.id)] == [s3.id]
    # And order controls created_at ordering (desc by default)
    asc = [s.id for s in client.beta.sessions.list(order="asc")]
    desc = [s.id for s in client.beta.sessions.list(order="desc")]
    assert asc == [s1.id, s2.id, s3.id]
    assert desc == list(reversed(asc))
    assert [s.id for s in client.beta.sessions.list()] == desc
    # Cleanup: interrupt so the hang ends quickly
    client.beta.sessions.events.send(s2.id, events=[{"type": "user.interrupt"}])
    wait_idle(client, s2.id)


def test_update_title_and_metadata_logs_session_updated(client: anthropic.Anthropic) -> None:
    agent_id, env_id = _agent_env(client)
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id, title="old", metadata={"a": "1"})
    # When title and metadata are patched
    updated = client.beta.sessions.update(session.id, title="new", metadata={"a": None, "b": "2"})
    # Then the session reflects it
    assert updated.title == "new" and updated.metadata == {"b": "2"}
    got = client.beta.sessions.retrieve(session.id)
    assert got.title == "new" and got.metadata == {"b": "2"}
    # And a session.updated event with the changed fields is logged
    events = all_events(client, session.id)
    upd = [e for e in events if e.type == "session.updated"]
    assert len(upd) == 1
    assert upd[0].title == "new" and upd[0].metadata == {"b": "2"}


def test_archive_hides_session_and_refuses_events(client: anthropic.Anthropic) -> None:
    agent_id, env_id = _agent_env(client)
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    archived = client.beta.sessions.archive(session.id)
    assert archived.archived_at is not None
    assert session.id not in [s.id for s in client.beta.sessions.list()]
    assert session.id in [s.id for s in client.beta.sessions.list(include_archived=True)]
    with pytest.raises(anthropic.BadRequestError) as info:
        _say(client, session.id, "hi")
    assert "archived" in str(info.value)


def test_delete_idle_session_then_404(client: anthropic.Anthropic) -> None:
    agent_id, env_id = _agent_env(client)
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    deleted = client.beta.sessions.delete(session.id)
    assert deleted.id == session.id and deleted.type == "session_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.retrieve(session.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.events.list(session.id)


def test_delete_running_session_is_refused(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    # Given a session whose model request hangs
    agent_id, env_id = _agent_env(client)
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    model_server.push({"hang_ms": 3000})
    _say(client, session.id, "hi")
    wait_until(lambda: any(e.type == "span.model_request_start" for e in all_events(client, session.id)))
    # When deleting it
    with pytest.raises(anthropic.ConflictError) as info:
        client.beta.sessions.delete(session.id)
    # Then 409, not retried by the SDK, and the session is still there
    assert info.value.status_code == 409
    assert info.value.response.headers.get("x-should-retry") == "false"
    assert "interrupt" in str(info.value)
    # And after an interrupt it goes idle and can be deleted
    client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    wait_idle(client, session.id, timeout=30)
    assert client.beta.sessions.delete(session.id).type == "session_deleted"


def test_missing_or_wrong_key_is_401(server: Server) -> None:
    # Given no Authorization header at all (the SDK always sends one, so omit it per request)
    with pytest.raises(anthropic.AuthenticationError) as info:
        server.client().beta.sessions.list(extra_headers={"Authorization": anthropic.omit})
    assert info.value.status_code == 401
    assert "API key" in str(info.value)
    # Given a key the server never issued
    wrong = server.client("sk-ant-wrong-key")
    with pytest.raises(anthropic.AuthenticationError):
        wrong.beta.agents.list()


def test_other_workspace_sees_nothing(server: Server, client: anthropic.Anthropic) -> None:
    # Given a session, agent and environment in the admin's workspace
    agent_id, env_id = _agent_env(client)
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    # And a key for another workspace
    ws = server.rt.keys.create_workspace("other")
    _, secret = server.rt.keys.create_key(ws)
    other = server.client(secret)
    # Then the other key cannot see any of them
    with pytest.raises(anthropic.NotFoundError):
        other.beta.sessions.retrieve(session.id)
    with pytest.raises(anthropic.NotFoundError):
        other.beta.sessions.events.list(session.id)
    with pytest.raises(anthropic.NotFoundError):
        other.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "x"}]}]
        )
    with pytest.raises(anthropic.NotFoundError):
        other.beta.agents.retrieve(agent_id)
    with pytest.raises(anthropic.NotFoundError):
        other.beta.environments.retrieve(env_id)
    with pytest.raises(anthropic.NotFoundError):
        other.beta.sessions.create(agent=agent_id, environment_id=env_id)
    assert list(other.beta.sessions.list()) == []
    assert list(other.beta.agents.list()) == []
    assert list(other.beta.environments.list()) == []
    # And the owner still sees its session
    assert client.beta.sessions.retrieve(session.id).id == session.id


def test_session_pages_carry_a_usable_prev_page_and_tokens_keep_their_order(server: Server) -> None:
    # Given five sessions and a client that validates responses strictly
    client = server.client(_strict_response_validation=True)
    agent_id, env_id = _agent_env(client)
    created = [client.beta.sessions.create(agent=agent_id, environment_id=env_id).id for _ in range(5)]
    newest_first = list(reversed(created))
    # When the first page of two is read, then it has no previous page
    first = client.beta.sessions.list(limit=2)
    assert [s.id for s in first.data] == newest_first[:2] and first.prev_page is None and first.next_page
    # When the next page is read, then its prev_page leads back to the first page
    second = client.beta.sessions.list(limit=2, page=first.next_page)
    assert [s.id for s in second.data] == newest_first[2:4] and second.prev_page
    back = client.beta.sessions.list(limit=2, page=second.prev_page)
    assert [s.id for s in back.data] == newest_first[:2] and back.prev_page is None
    assert back.next_page and [s.id for s in client.beta.sessions.list(limit=2, page=back.next_page).data] == [
        s.id for s in second.data
    ]
    # And a token reused with the other order is refused, as the hosted API does
    with pytest.raises(anthropic.BadRequestError, match="page token order does not match request"):
        client.beta.sessions.list(limit=2, order="asc", page=first.next_page)


def test_event_page_tokens_keep_their_order(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    # Given a session with a few events
    agent_id, env_id = _agent_env(client)
    sid = client.beta.sessions.create(agent=agent_id, environment_id=env_id).id
    model_server.push("hello")
    _say(client, sid, "hi")
    wait_idle(client, sid)
    # When a newest-first token is reused oldest-first, then it is refused
    page = client.beta.sessions.events.list(sid, limit=1, order="desc")
    assert page.next_page
    with pytest.raises(anthropic.BadRequestError, match="page token order does not match request"):
        client.beta.sessions.events.list(sid, limit=1, order="asc", page=page.next_page)
    # And a token holding a number beyond any sequence is a 400, not a 500
    huge = "page_" + base64.urlsafe_b64encode(b"seq:asc:" + b"9" * 40).decode().rstrip("=")
    with pytest.raises(anthropic.BadRequestError, match="not a page cursor"):
        client.beta.sessions.events.list(sid, page=huge)
