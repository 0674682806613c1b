"""Strings the model API cannot take are refused at the door, and a failed write never leaves a session running.

A lone surrogate (`"\\udfff"` in JSON) decodes to a Python string that cannot be encoded as UTF-8: no store, no log
line and no Messages API request can carry it. Every request body is checked once, by the wire models' base class.
The Python SDK cannot send one (it encodes JSON as UTF-8), but JavaScript's `JSON.stringify` escapes a lone
surrogate and sends it, so these bodies go out as raw JSON text, as the TypeScript SDK would send them.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import pytest

from managed_agents.domain.events import NewEvent, StoredEvent
from tests.e2e.conftest import Server, wait_until

LONE = "\udfff"


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _post(server: Server, path: str, body: dict[str, Any]) -> httpx2.Response:
    """POST `body` as ASCII JSON (a lone surrogate becomes the escape `\\udfff`), as JavaScript clients send it."""
    headers = {
        "Authorization": f"Bearer {server.admin_key}",
        "anthropic-beta": "managed-agents-2026-04-01",
        "content-type": "application/json",
    }
    return httpx2.post(server.url + path, content=json.dumps(body).encode(), headers=headers, timeout=10)


def _bad_request(resp: httpx2.Response) -> str:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


def test_lone_surrogate_in_a_message_is_a_400_and_the_session_stays_idle(
    server: Server, client: anthropic.Anthropic
) -> None:
    # Given an idle session
    sid = _session(client)
    # When a user.message carries a lone surrogate
    resp = _post(
        server,
        f"/v1/sessions/{sid}/events",
        {"events": [{"type": "user.message", "content": [{"type": "text", "text": f"hi {LONE}"}]}]},
    )
    # Then the 400 names the field and the problem
    message = _bad_request(resp)
    assert "events[0]" in message and "content[0].text" in message and "surrogate" in message
    # And nothing happened: the session is idle, its log empty, and it can be deleted
    assert wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle", timeout=30)
    assert list(client.beta.sessions.events.list(sid)) == []
    assert client.beta.sessions.delete(sid).type == "session_deleted"


@pytest.mark.parametrize(
    "metadata",
    [{"k": f"v{LONE}"}, {f"k{LONE}": "v"}],
    ids=["value", "key"],
)
def test_lone_surrogate_in_metadata_is_a_400(
    server: Server, client: anthropic.Anthropic, metadata: dict[str, str]
) -> None:
    # Given / When metadata with a lone surrogate in a key or a value, on an agent and on a session
    message = _bad_request(_post(server, "/v1/agents", {"name": "a", "model": "m", "metadata": metadata}))
    assert "metadata" in message and "surrogate" in message
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    body = {"agent": agent.id, "environment_id": env.id, "metadata": metadata}
    # Then each is a 400, and no session was made
    assert "surrogate" in _bad_request(_post(server, "/v1/sessions", body))
    assert list(client.beta.sessions.list()) == []
    assert [a.id for a in client.beta.agents.list()] == [agent.id]


def test_paired_surrogates_are_ordinary_text(client: anthropic.Anthropic) -> None:
    # Given / When an emoji outside the BMP (a surrogate pair in JSON) is sent
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", metadata={"k": "\U0001f600"})
    # Then it is stored and read back as the character it encodes
    assert client.beta.agents.retrieve(agent.id).metadata == {"k": "\U0001f600"}


class _FailingAppends:
    """An event store whose appends fail (a full disk, a throttled table) while reads work."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def append(self, session_id: str, events: list[NewEvent], **kwargs: Any) -> list[StoredEvent]:
        raise OSError("disk full")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_failed_append_leaves_the_session_idle_and_deletable(
    server: Server, client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an idle session whose log cannot be written
    sid = _session(client)
    monkeypatch.setattr(server.rt.sessions, "events", _FailingAppends(server.rt.sessions.events))
    # When a message is sent
    with pytest.raises(anthropic.InternalServerError):
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "x"}]}]
        )
    # Then the session is not left running: it is idle and can be deleted
    assert wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle", timeout=30)
    monkeypatch.undo()
    assert client.beta.sessions.delete(sid).type == "session_deleted"
