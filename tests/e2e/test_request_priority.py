"""Requests first (adapters/local/request_priority.py): while the embedded server answers a request, a harness step
and an event stream's write wait (for a bounded time), so a burst of sends is not queued behind the turns and
stream fan-out the earlier sends started.

A request counts from its head's arrival until its response starts: one held open here (its head sent, its body
not yet) holds background work back. A work-queue long poll does not count, nor does an open stream once its
response started, nor a request whose client went away.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest

from managed_agents.adapters.local.request_priority import DEFAULT_MAX_WAIT_SECONDS, PRIORITY
from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, embedded_only, wait_idle, wait_until

pytestmark = embedded_only("the priority is the embedded server's: one process's requests and its harness threads")

HOLD_SECONDS = 60.0  # far longer than the test: a turn that starts while a request is held started too early


@pytest.fixture
def server_settings(server_settings: ServerSettings) -> ServerSettings:
    return server_settings.model_copy(update={"request_priority_seconds": HOLD_SECONDS})


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="priority", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


_OPEN: list[socket.socket] = []
AGENT = b'{"name": "held", "model": "claude-sonnet-4-6"}'


class HeldRequest:
    """A raw HTTP/1.1 POST whose head is sent and whose body is not (yet): the server is answering it."""

    def __init__(self, server: Server, path: str, body: bytes = AGENT) -> None:
        url = urlsplit(server.url)
        self.body = body
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10)
        _OPEN.append(self.sock)
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {url.netloc}\r\nauthorization: Bearer {server.admin_key}\r\n"
            "anthropic-version: 2023-06-01\r\nanthropic-beta: managed-agents-2026-04-01\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def finish(self) -> bytes:
        self.sock.sendall(self.body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += self.sock.recv(65536)
        self.sock.close()
        return answer

    def drop(self) -> None:
        self.sock.close()


@pytest.fixture
def quiet() -> Iterator[None]:
    """Every test starts and ends with no request counted (a leak would slow every later turn by the bound)."""
    wait_until(lambda: PRIORITY.pending == 0, 10)
    yield
    while _OPEN:  # a failed test's held requests too
        _OPEN.pop().close()
    wait_until(lambda: PRIORITY.pending == 0, 10)
    PRIORITY.max_wait = DEFAULT_MAX_WAIT_SECONDS  # the process's: later tests of this worker wait the usual bound


def _message(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def test_a_turn_waits_while_a_request_is_answered_then_runs(
    server: Server, model_server: ScriptedModelServer, quiet: None
) -> None:
    client = server.client()
    sid = _session(client)
    held = HeldRequest(server, "/v1/agents")
    wait_until(lambda: PRIORITY.pending == 1, 10)
    model_server.push("hello")
    client.beta.sessions.events.send(sid, events=[_message("hi")])  # answered at once: requests are not held back
    time.sleep(1.0)  # a harness woken by the send would have asked the model by now (it asks at once otherwise)
    assert model_server.requests == [], "the turn started while a request was being answered"
    assert [e.type for e in all_events(client, sid)] == ["user.message"]
    assert b" 200 " in held.finish().split(b"\r\n", 1)[0]
    events = wait_idle(client, sid)  # the request answered: the turn runs at once, not at the bound
    assert [e.type for e in events][-1] == "session.status_idle"
    assert len(model_server.requests) == 1


def test_a_stream_writes_only_once_the_requests_are_answered(server: Server, quiet: None) -> None:
    client = server.client()
    sid = _session(client)
    got: list[str] = []
    opened = threading.Event()

    def read() -> None:
        with client.beta.sessions.events.stream(sid) as stream:
            opened.set()
            for ev in stream:
                got.append(ev.type)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(10)
    wait_until(lambda: PRIORITY.pending == 0, 10)  # the open stream itself does not count
    held = HeldRequest(server, "/v1/agents")
    wait_until(lambda: PRIORITY.pending == 1, 10)
    client.beta.sessions.events.send(sid, events=[_message("hi")])
    time.sleep(0.5)
    assert got == [], "the stream wrote while a request was being answered"
    held.finish()
    reader.join(10)
    assert got == ["user.message"]


def test_a_client_gone_mid_request_and_a_long_poll_hold_nothing(server: Server, quiet: None) -> None:
    held = HeldRequest(server, "/v1/agents")
    wait_until(lambda: PRIORITY.pending == 1, 10)
    held.drop()
    wait_until(lambda: PRIORITY.pending == 0, 10)
    poll = HeldRequest(server, "/v1/environments/env_x/work/poll")  # a long poll never counts
    time.sleep(0.2)
    assert PRIORITY.pending == 0
    poll.drop()
