"""End-to-end fixtures: our server on loopback, driven only through the official `anthropic` SDK."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.api.app import create_app
from managed_agents.settings import ServerSettings
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from managed_agents.wiring import Runtime, bootstrap_admin_key, build_local_runtime


@dataclass
class Server:
    url: str
    admin_key: str
    rt: Runtime
    model: ScriptedModelServer

    def client(self, key: str | None = None, **kw: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key or self.admin_key, max_retries=0, **kw)


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(fallback="error") as s:
        yield s


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "data"),
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
        sse_ping_seconds=0.5,
        work_lease_ttl_seconds=6,
        sandbox_idle_seconds=30,
    )


@pytest.fixture
def server(server_settings: ServerSettings, model_server: ScriptedModelServer) -> Iterator[Server]:
    model = AnthropicMessagesModel(api_key="test", base_url=model_server.base_url, timeout=30)
    rt = build_local_runtime(server_settings, model=model)
    secret = bootstrap_admin_key(rt)
    assert secret
    port = free_port()
    rt.set_api_url(f"http://127.0.0.1:{port}")
    with UvicornThread(create_app(rt), port):
        yield Server(f"http://127.0.0.1:{port}", secret, rt, model_server)
    rt.close()


@pytest.fixture
def client(server: Server) -> anthropic.Anthropic:
    return server.client()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Bounded polling (style: never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def all_events(client: anthropic.Anthropic, session_id: str) -> list[Any]:
    return list(client.beta.sessions.events.list(session_id, limit=1000))


def wait_idle(client: anthropic.Anthropic, session_id: str, timeout: float = 10.0, count: int = 1) -> list[Any]:
    """Wait until the log holds `count` session.status_idle events; return all events."""

    def done() -> list[Any] | None:
        evs = all_events(client, session_id)
        idles = [e for e in evs if e.type == "session.status_idle"]
        return evs if len(idles) >= count else None

    result: list[Any] = wait_until(done, timeout)
    return result


def create_environment_key(client: anthropic.Anthropic, environment_id: str, name: str = "worker") -> str:
    """An environment key through our keys endpoint (the SDK has no method for it: the hosted console mints them)."""
    body: Any = client.post(f"/v1/environments/{environment_id}/keys", body={"name": name}, cast_to=object)
    key: str = body["key"]
    return key
