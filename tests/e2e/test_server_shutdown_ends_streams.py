"""A graceful shutdown of the embedded server ends its open event streams at once and cleanly (api/server.py
EdgeH11Protocol.shutdown, api/sse.py STREAM_END): uvicorn waits for responses in flight, and an event stream never
finishes by itself, so before, a restart waited on every open stream until `timeout_graceful_shutdown` cut them
mid-chunk (or for good where that timeout is off, as on the tests' loopback servers)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anthropic

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.api.app import create_app
from managed_agents.settings import ServerSettings
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from managed_agents.wiring import bootstrap_admin_key, build_local_runtime


def test_a_graceful_shutdown_ends_open_streams_cleanly_and_does_not_wait_on_them(
    tmp_path: Path, model_server: ScriptedModelServer
) -> None:
    # Given the embedded server (no stream time limit, pings far apart) with two SDK clients following a session
    settings = ServerSettings(data_dir=str(tmp_path / "data"), sse_ping_seconds=60.0, sse_max_seconds=0.0)
    rt = build_local_runtime(settings, model=AnthropicMessagesModel(api_key="t", base_url=model_server.base_url))
    try:
        secret = bootstrap_admin_key(rt)
        assert secret
        port = free_port()
        server = UvicornThread(create_app(rt), port)  # graceful shutdown without a timeout: it waits for responses
        outcomes: list[dict[str, Any]] = []
        with server:
            client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=secret, max_retries=0)
            agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
            env = client.beta.environments.create(name="e", config={"type": "cloud"})
            sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
            opened = threading.Semaphore(0)

            def follow(outcome: dict[str, Any]) -> None:
                try:
                    with client.beta.sessions.events.stream(sid) as stream:
                        opened.release()
                        outcome["events"] = [ev.type for ev in stream]
                    outcome["ended"] = "cleanly"
                except Exception as exc:  # an incomplete chunked body, a reset: the stream was cut, not ended
                    outcome["error"] = repr(exc)

            readers = []
            for _ in range(2):
                outcomes.append({})
                readers.append(threading.Thread(target=follow, args=(outcomes[-1],), daemon=True))
                readers[-1].start()
            assert opened.acquire(timeout=10) and opened.acquire(timeout=10)
            # When the server shuts down while both streams are open (the `with` block ends: should_exit, then join)
        # Then the shutdown finished (the server's thread ended within UvicornThread's join) though the clients are
        # still reading
        assert not server.thread.is_alive(), "the shutdown is still waiting on the open streams"
        # And each stream ended cleanly for its client, as at sse_max_seconds (no error, nothing cut mid-chunk)
        for reader in readers:
            reader.join(10)
        assert outcomes == [{"events": [], "ended": "cleanly"}] * 2, outcomes
    finally:
        rt.close()
