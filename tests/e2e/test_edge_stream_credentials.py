"""An open event stream re-checks its credential: revoking the key ends the stream with `event: error`."""

from __future__ import annotations

import threading
from typing import Any

import anthropic

from tests.e2e.conftest import Server, wait_until


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def test_a_revoked_keys_open_stream_ends_with_an_authentication_error(
    server: Server, client: anthropic.Anthropic
) -> None:
    # Given a second API key of the workspace with an open stream on a session
    sid = _session(client)
    workspace = server.rt.keys.authenticate(server.admin_key).workspace_id
    doc, secret = server.rt.keys.create_key(workspace, name="short-lived")
    outcome: dict[str, Any] = {}
    opened = threading.Event()

    def follow() -> None:
        try:
            with server.client(secret, timeout=30).beta.sessions.events.stream(sid) as stream:
                opened.set()
                for ev in stream:
                    outcome.setdefault("events", []).append(ev.type)
            outcome["ended"] = "cleanly"
        except anthropic.APIError as exc:
            outcome["error"] = exc.body

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert opened.wait(10)
    # When the key is revoked
    server.rt.keys.revoke(str(doc["id"]))
    # Then the stream ends with an `event: error` carrying an authentication_error (the SDK raises it)
    wait_until(lambda: "error" in outcome or "ended" in outcome, timeout=15)
    body = outcome.get("error")
    assert isinstance(body, dict), outcome
    error = body.get("error", body)
    assert error["type"] == "authentication_error"
    # And the admin key's requests are unaffected
    assert client.beta.sessions.retrieve(sid).id == sid
