"""A plain event send is made on the server's event loop (api/edge.py call_on_loop), and one that would wait there
for the database goes to a write thread instead: the server keeps answering meanwhile, and the send still lands."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anthropic
import pytest

from managed_agents.services.sessions import SessionService
from managed_agents.settings import ServerSettings
from managed_agents.wiring import DB_FILE
from tests.e2e.conftest import Server, embedded_only, strict_client, wait_idle, wait_until

pytestmark = embedded_only("the embedded server's event loop and SQLite's locks")
HELLO: Any = [{"type": "user.message", "content": [{"type": "text", "text": "hello"}]}]


@pytest.fixture
def server_settings(server_settings: ServerSettings) -> ServerSettings:
    return server_settings.model_copy(update={"request_deadline_seconds": 10.0})


@pytest.fixture
def sends_seen(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Per send: whether it ran on a thread with a running event loop (the server's), not on a worker thread."""
    seen: list[bool] = []
    send = SessionService.send

    def recorded(self: SessionService, *args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return send(self, *args, **kwargs)

    monkeypatch.setattr(SessionService, "send", recorded)
    return seen


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="loop", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="loop", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def test_a_plain_send_is_made_on_the_event_loop(server: Server, sends_seen: list[bool]) -> None:
    client = strict_client(server)
    sid = _session(client)
    orchestrator = server.rt.orchestrator
    assert orchestrator is not None
    # When a user.message is sent, and, its turn over (no harness step writing beside it), an interrupt
    sent = client.beta.sessions.events.send(sid, events=HELLO)
    wait_idle(client, sid)
    wait_until(orchestrator.idle)
    client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
    # Then both were made on the loop, and the message is logged as sent
    assert sends_seen == [True, True]
    listed = [e.id for e in client.beta.sessions.events.list(sid) if e.type == "user.message"]
    assert listed == [sent.data[0].id]


def test_a_send_the_database_would_hold_goes_to_a_thread_and_the_server_answers_meanwhile(
    server: Server, sends_seen: list[bool]
) -> None:
    client = strict_client(server)
    sid = _session(client)
    # Given a writer that takes none of the server's locks holding the database (a backup, the sqlite3 shell)
    holder = sqlite3.connect(Path(server.rt.settings.data_dir) / DB_FILE, isolation_level=None, timeout=1)
    holder.execute("BEGIN IMMEDIATE")
    result: list[Any] = []
    sender = threading.Thread(target=lambda: result.append(client.beta.sessions.events.send(sid, events=HELLO)))
    try:
        # When a user.message is sent
        sender.start()
        wait_until(lambda: sends_seen, timeout=10)
        # Then the server still answers other requests while the send waits
        assert client.beta.sessions.retrieve(sid).id == sid
        assert sender.is_alive()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    sender.join(15)
    # and once the database is free the send lands, made the second time on a write thread
    assert result and result[0].data[0].type == "user.message"
    assert sends_seen == [True, False]
    assert [e.id for e in client.beta.sessions.events.list(sid) if e.type == "user.message"] == [result[0].data[0].id]
