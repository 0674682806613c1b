"""Shared helpers of the benchmark scripts: our server in-process on loopback, a scripted model, JSON output.

Run a benchmark as ``uv run python bench/<name>.py``; each prints JSON lines.

BENCH_SERVER_SRC=<dir> measures the `managed_agents` package found in <dir> (a checkout of a baseline commit, e.g.
`git archive <commit> managed_agents | tar -x -C <dir>`) instead of this checkout's, in the benches that run our
server in this process (`stack`) as in those that serve it from another (`_profiled_serve.py`), so that an A/B in one
time window compares two builds, not this checkout with itself.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the checkout, installed or not (or a baseline's package: BENCH_SERVER_SRC, see the module docstring)
sys.path.insert(0, os.environ.get("BENCH_SERVER_SRC") or str(Path(__file__).resolve().parents[1]))

import anthropic

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.api.app import create_app
from managed_agents.settings import ServerSettings
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from managed_agents.wiring import Runtime, bootstrap_admin_key, build_local_runtime


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


@dataclass
class Stack:
    url: str
    admin_key: str
    rt: Runtime
    model: ScriptedModelServer

    def client(self, **kw: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=self.admin_key, max_retries=0, **kw)

    def agent_env(self, client: anthropic.Anthropic) -> tuple[str, str]:
        agent = client.beta.agents.create(name="bench", model="claude-sonnet-4-6")
        env = client.beta.environments.create(name="bench", config={"type": "cloud"})
        return agent.id, env.id


@contextmanager
def stack(latency_ms: float = 0, **settings: Any) -> Iterator[Stack]:
    """Scripted model (echo) + our runtime + uvicorn on a free port, all in this process."""
    with tempfile.TemporaryDirectory() as tmp, ScriptedModelServer(fallback="echo", latency_ms=latency_ms) as model:
        client_model = AnthropicMessagesModel(api_key="bench", base_url=model.base_url, timeout=60)
        rt = build_local_runtime(ServerSettings(data_dir=str(Path(tmp) / "data"), **settings), model=client_model)
        secret = bootstrap_admin_key(rt)
        assert secret
        port = free_port()
        rt.set_api_url(f"http://127.0.0.1:{port}")  # where cloud sandboxes call back
        try:
            with UvicornThread(create_app(rt), port):
                yield Stack(f"http://127.0.0.1:{port}", secret, rt, model)
        finally:
            rt.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def idle_count(client: anthropic.Anthropic, session_id: str) -> int:
    evs = client.beta.sessions.events.list(session_id, limit=1000, types=["session.status_idle"])
    return len(evs.data)


def user_message(client: anthropic.Anthropic, session_id: str, text: str) -> None:
    client.beta.sessions.events.send(
        session_id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )
