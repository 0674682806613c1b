"""uvloop, uvicorn[standard]'s event loop, installed beside the server: the model adapter still reaches the model on
it (its transports do not subclass asyncio.Transport, and the adapter's connection once asserted they did: every
model request failed with "Connection error"), and the embedded server keeps asyncio's loop, the one it is tested
on, instead of uvicorn's "auto" choice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken
from managed_agents.api.server import uvicorn_config
from managed_agents.settings import ServerSettings
from managed_agents.testing.loopback import loop_thread
from managed_agents.testing.scripted_model import ScriptedModelServer

uvloop = pytest.importorskip("uvloop")  # (the dev extra installs it where it builds: not on Windows)

REQUEST = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def uvloop_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A uvloop loop running on a thread of its own, as the embedded server's loop does."""
    with loop_thread(uvloop.new_event_loop()) as loop:
        yield loop


def test_the_model_adapter_streams_a_message_on_a_uvloop_loop(uvloop_loop: asyncio.AbstractEventLoop) -> None:
    # Given the adapter running its requests on a uvloop loop (as on the server's loop while it serves)
    with ScriptedModelServer(["first", "second"]) as server:
        model = AnthropicMessagesModel(api_key="test", base_url=server.base_url, timeout=30)
        model.run_requests_on(uvloop_loop)
        # When two requests stream (the second on the kept-alive connection)
        first = model.stream_message(dict(REQUEST), cancel=ThreadCancelToken())
        second = model.stream_message(dict(REQUEST), cancel=ThreadCancelToken())
        model.run_requests_on(uvloop_loop, leaving=True)
        model.close()
    # Then both answers arrived whole
    assert [first.content[0]["text"], second.content[0]["text"]] == ["first", "second"]
    assert first.stop_reason == "end_turn"


def test_the_server_runs_on_asyncios_loop_where_uvloop_is_installed() -> None:
    # Given uvloop importable (uvicorn's "auto" would take it)
    # When the server's uvicorn configuration makes its loop
    config = uvicorn_config(object(), host="127.0.0.1", port=0, settings=ServerSettings())
    factory = config.get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        # Then it is asyncio's own
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()
