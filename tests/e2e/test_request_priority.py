"""Requests first (adapters/local/request_priority.py): while the embedded server answers a request, a harness step
and an event stream's write wait (for a bounded time), so a burst of sends is not queued behind the turns and
stream fan-out the earlier sends started.

A request counts from the moment it has wholly arrived until its response starts: one held here (its service call
blocked by the test) holds background work back. A request whose body is still arriving does not count, nor a
work-queue long poll, nor an open stream once its response started, nor a request whose client went away.
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
GATE = threading.Event()  # held requests' service calls wait on it


class RawRequest:
    """A raw HTTP/1.1 `POST /v1/agents`: whole (its service call then waits for GATE, see `held`), or its head only."""

    def __init__(self, server: Server, *, whole: bool = True, path: str = "/v1/agents") -> None:
        url = urlsplit(server.url)
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10)
        _OPEN.append(self.sock)
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {url.netloc}\r\nauthorization: Bearer {server.admin_key}\r\n"
            "anthropic-version: 2023-06-01\r\nanthropic-beta: managed-agents-2026-04-01\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(AGENT)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + (AGENT if whole else b""))

    def status(self) -> bytes:
        """Let the held service call go on; the response's status line."""
        GATE.set()
        answer = b""
        while b"\r\n" not in answer:
            answer += self.sock.recv(65536)
        self.sock.close()
        return answer.split(b"\r\n", 1)[0]

    def drop(self) -> None:
        self.sock.close()


@pytest.fixture
def held(server: Server) -> Iterator[None]:
    """Creations of agents named "held" wait for GATE: such a request sent whole is being answered until the test lets
    it go on. Every test starts and ends with no request counted (a leak would slow every later turn by the bound)."""
    create = server.rt.agents.create

    def blocked(*args: Any, **kwargs: Any) -> Any:
        if getattr(args[-1], "name", None) == "held":  # (the tests' other agents are made at once)
            assert GATE.wait(60)
        return create(*args, **kwargs)

    wait_until(lambda: PRIORITY.pending == 0, 10)
    GATE.clear()
    server.rt.agents.create = blocked  # type: ignore[method-assign]
    yield
    GATE.set()
    while _OPEN:  # a failed test's requests too
        _OPEN.pop().close()
    server.rt.agents.create = create  # type: ignore[method-assign]
    wait_until(lambda: PRIORITY.pending == 0, 10)
    PRIORITY.max_wait = DEFAULT_MAX_WAIT_SECONDS  # the process's: later tests of this worker wait the usual bound


def _message(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def test_a_turn_waits_while_a_request_is_answered_then_runs(
    server: Server, model_server: ScriptedModelServer, held: None
) -> None:
    client = server.client()
    sid = _session(client)
    request = RawRequest(server)
    wait_until(lambda: PRIORITY.pending == 1, 10)
    model_server.push("hello")
    client.beta.sessions.events.send(sid, events=[_message("hi")])  # answered at once: requests are not held back
    time.sleep(1.0)  # a harness woken by the send would have asked the model by now (it asks at once otherwise)
    assert model_server.requests == [], "the turn started while a request was being answered"
    assert [e.type for e in all_events(client, sid)] == ["user.message"]
    assert b" 200 " in request.status()
    events = wait_idle(client, sid)  # the request answered: the turn runs at once, not at the bound
    assert [e.type for e in events][-1] == "session.status_idle"
    assert len(model_server.requests) == 1


def test_a_stream_writes_only_once_the_requests_are_answered(server: Server, held: None) -> None:
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
    request = RawRequest(server)
    wait_until(lambda: PRIORITY.pending == 1, 10)
    client.beta.sessions.events.send(sid, events=[_message("hi")])
    time.sleep(0.5)
    assert got == [], "the stream wrote while a request was being answered"
    request.status()
    reader.join(10)
    assert got == ["user.message"]


def test_a_client_gone_mid_request_a_body_still_arriving_and_a_long_poll_hold_nothing(
    server: Server, held: None
) -> None:
    request = RawRequest(server)
    wait_until(lambda: PRIORITY.pending == 1, 10)
    request.drop()
    wait_until(lambda: PRIORITY.pending == 0, 10)
    arriving = RawRequest(server, whole=False)  # an upload still arriving: only its processing counts
    poll = RawRequest(server, path="/v1/environments/env_x/work/poll")  # a long poll never counts
    time.sleep(0.2)
    assert PRIORITY.pending == 0
    arriving.drop()
    poll.drop()
