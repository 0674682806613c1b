"""A harness failure (a bug, not a model error) reaches live streams at once, with its model request span closed.

The failure report is appended by the orchestrator's error hook, not by the turn; it used to skip the notifier, so
an open stream saw the `session.error` and the idle only at its next ping (~15 s by default). Streams here ping
every 60 s: a report that did not notify would not arrive within the test's bound.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import anthropic
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, embedded_only, wait_idle

# Embedded only: the fault is injected into the in-process harness; on AWS the report is appended by the
# ReportFailure Lambda and streams poll the store (tests/aws/test_session_run_handlers.py covers its span).
pytestmark = embedded_only("injects a crashing model adapter into the in-process harness")

DELIVERY_BOUND_SECONDS = 10  # far below the 60 s ping: a miss means the stream waited for a ping


@pytest.fixture
def server_settings(server_settings: ServerSettings) -> ServerSettings:
    return server_settings.model_copy(update={"sse_ping_seconds": 60.0})


class _CrashingModel:
    """A model adapter with a bug: it raises something that is not a ModelError, mid-request, once released (so
    the stream has read everything before it and waits for what comes next)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def stream_message(self, request: Any, *, cancel: Any = None, on_event: Any = None) -> Any:
        assert self.release.wait(DELIVERY_BOUND_SECONDS)
        raise RuntimeError("injected: the model adapter crashed mid-request")


def _follow(client: anthropic.Anthropic, sid: str, out: queue.Queue[Any], opened: threading.Event) -> None:
    with client.beta.sessions.events.stream(sid) as stream:
        opened.set()
        for ev in stream:
            out.put(ev)
            if ev.type == "session.status_idle":
                return


def _msg(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def test_a_harness_failure_reaches_an_open_stream_at_once_with_its_span_closed(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a session followed by a live stream, and a harness whose model adapter crashes mid-request
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e")
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    assert server.rt.orchestrator is not None
    deps = server.rt.orchestrator.deps
    crashing = _CrashingModel()
    working, deps.model = deps.model, crashing
    got: queue.Queue[Any] = queue.Queue()
    opened = threading.Event()
    threading.Thread(target=_follow, args=(client, sid, got, opened), daemon=True).start()
    assert opened.wait(5)
    # When a message is sent, the stream has read up to the model request's start, and the harness fails
    client.beta.sessions.events.send(sid, events=[_msg("hi")])
    streamed: list[Any] = []
    while not streamed or streamed[-1].type != "span.model_request_start":
        streamed.append(got.get(timeout=DELIVERY_BOUND_SECONDS))
    crashing.release.set()
    # Then the stream delivers the whole failure report without waiting for a ping
    while streamed[-1].type != "session.status_idle":
        streamed.append(got.get(timeout=DELIVERY_BOUND_SECONDS))
    assert [e.type for e in streamed] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "span.model_request_end",
        "session.error",
        "session.status_idle",
    ]
    start, end, error, idle = streamed[2:]
    assert end.model_request_start_id == start.id and end.is_error is True
    assert error.error.type == "unknown_error" and error.error.retry_status.type == "exhausted"
    assert "injected" in error.error.message
    assert idle.stop_reason.type == "retries_exhausted"
    assert [e.id for e in streamed] == [e.id for e in all_events(client, sid)]
    # And the next message runs a fresh request (the dead one is closed, not re-run)
    deps.model = working
    model_server.push("answered")
    client.beta.sessions.events.send(sid, events=[_msg("again")])
    events = wait_idle(client, sid, count=2)
    types = [e.type for e in events]
    assert types.count("span.model_request_start") == types.count("span.model_request_end") == 2
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["answered"]
    model_server.assert_complete()
