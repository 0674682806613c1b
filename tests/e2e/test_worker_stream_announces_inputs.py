"""The event stream announces the session's file resources in each `agent.tool_use` frame only to a work token that
asks (`x-managed-agents-inputs: announce`, what a Fargate sandbox's worker sends; api/sse.py): the ETag the sandbox's
`GET /v1/sessions/{id}/inputs` would answer, so the sandbox need not ask before each tool call."""

from __future__ import annotations

import threading
from typing import Any

import anthropic
import httpx2

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle
from tests.e2e.sandbox_support import tool_step
from tests.e2e.test_work_queue_api import _claim, _say, _setup, _token

ANNOUNCE = {"x-managed-agents-inputs": "announce"}
BETA = {"anthropic-beta": "managed-agents-2026-04-01"}


def _tool_use_frame(url: str, headers: dict[str, str], opened: threading.Event, out: list[str]) -> None:
    """Read the stream until its first `agent.tool_use` frame; its lines go to `out`."""
    frame: list[str] = []
    with httpx2.stream("GET", url, headers={**BETA, **headers}, timeout=60) as resp:
        assert resp.status_code == 200, resp.read()
        opened.set()
        for line in resp.iter_lines():
            if line:
                frame.append(line)
                continue
            if "event: agent.tool_use" in frame:
                out.extend(frame)
                return
            frame = []


def test_only_a_work_token_that_asks_is_told_the_inputs_etag_with_each_tool_use(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a self-hosted session whose work item a worker claimed, and a file resource on the session
    env_id, sid = _setup(client)
    f = client.beta.files.upload(file=("a.txt", b"a", "text/plain"))
    client.beta.sessions.resources.add(sid, type="file", file_id=f.id)
    model_server.push("first")
    _say(client, sid)
    item, _worker, _work = _claim(server, env_id)
    wait_idle(client, sid)
    token = _token(item.secret)
    url = f"{server.url}/v1/sessions/{sid}/events/stream"
    # When three streams follow the next turn, which calls a tool: the work token asking, the work token not
    # asking, and an API key asking
    callers = {
        "work, asking": {"Authorization": f"Bearer {token}", **ANNOUNCE},
        "work": {"Authorization": f"Bearer {token}"},
        "api key, asking": {"x-api-key": server.admin_key, **ANNOUNCE},
    }
    frames: dict[str, list[str]] = {name: [] for name in callers}
    readers: list[tuple[threading.Thread, threading.Event]] = []
    for name, headers in callers.items():
        opened = threading.Event()
        thread = threading.Thread(target=_tool_use_frame, args=(url, headers, opened, frames[name]), daemon=True)
        thread.start()
        readers.append((thread, opened))
    assert all(opened.wait(30) for _, opened in readers)
    model_server.push(tool_step("toolu_1", "bash", {"command": "true"}))
    _say(client, sid, "call a tool")
    for thread, _ in readers:
        thread.join(60)
    # Then only the asking work token's tool use frame carries the ETag its inputs request answers with
    # (30 s, not httpx's 5 s default: CI's starved machine once took longer than 5 s to answer this in-process)
    auth = {"Authorization": f"Bearer {token}"}
    inputs = httpx2.get(f"{server.url}/v1/sessions/{sid}/inputs", headers=auth, timeout=30)
    assert inputs.status_code == 200, inputs.text
    comments: dict[str, Any] = {n: [ln for ln in lines if ln.startswith(":")] for n, lines in frames.items()}
    assert all("event: agent.tool_use" in lines for lines in frames.values()), frames
    assert comments == {
        "work, asking": [f": managed-agents-inputs {inputs.headers['etag']}"],
        "work": [],
        "api key, asking": [],
    }
