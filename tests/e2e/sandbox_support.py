"""Shared pieces of the sandbox tests: the official worker on a thread, a tool-using script, result checks."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import anthropic

from managed_agents.testing.scripted_model import ScriptedModelServer

TOOLSET: dict[str, Any] = {"type": "agent_toolset_20260401"}
# How a sandbox tool's result is logged (api-reference §3.1: user.tool_result is only valid on self_hosted): the
# worker posts user.tool_result either way; on cloud the platform's sandbox ran the tool, so it is the agent's.
CLOUD_RESULT = "agent.tool_result"
SELF_HOSTED_RESULT = "user.tool_result"


def tool_step(tool_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}]}


def push_file_workflow(model: ScriptedModelServer, tag: str = "") -> None:
    """write → edit → grep → bash → read on notes.txt, then a final answer."""
    model.push(
        tool_step(f"toolu_w{tag}", "write", {"file_path": "notes.txt", "content": f"alpha{tag}\nbeta\n"}),
        tool_step(f"toolu_e{tag}", "edit", {"file_path": "notes.txt", "old_string": "beta", "new_string": "gamma"}),
        tool_step(f"toolu_g{tag}", "grep", {"pattern": "gam+a"}),
        tool_step(f"toolu_b{tag}", "bash", {"command": "wc -l < notes.txt; tr a-z A-Z < notes.txt"}),
        tool_step(f"toolu_r{tag}", "read", {"file_path": "notes.txt"}),
        f"done{tag}",
    )


def sandbox_results(events: list[Any], result_type: str) -> list[Any]:
    """The results of the session's sandbox calls, all of which must be logged as `result_type`."""
    uses = {e.id for e in events if e.type == "agent.tool_use"}
    results = [e for e in events if e.type in (CLOUD_RESULT, SELF_HOSTED_RESULT) and e.tool_use_id in uses]
    assert [e.type for e in results] == [result_type] * len(results), [e.type for e in results]
    return results


def result_texts(events: list[Any], result_type: str) -> dict[str, tuple[str, bool]]:
    """tool name → (result text, is_error) for every sandbox call of the session."""
    uses = {e.id: e.name for e in events if e.type == "agent.tool_use"}
    out: dict[str, tuple[str, bool]] = {}
    for e in sandbox_results(events, result_type):
        text = "".join(getattr(b, "text", "") for b in e.content or [])
        out[uses[e.tool_use_id]] = (text, bool(e.is_error))
    return out


def check_file_workflow(events: list[Any], result_type: str, tag: str = "") -> None:
    results = result_texts(events, result_type)
    assert set(results) == {"write", "edit", "grep", "bash", "read"}, results
    assert not any(err for _, err in results.values()), results
    assert "notes.txt" in results["grep"][0]
    assert "2" in results["bash"][0].split() and f"ALPHA{tag.upper()}" in results["bash"][0]
    assert "GAMMA" in results["bash"][0]
    assert f"alpha{tag}" in results["read"][0] and "gamma" in results["read"][0]
    assert "beta" not in results["read"][0]
    assert [e.content[0].text for e in events if e.type == "agent.message"] == [f"done{tag}"]


class WorkerThread:
    """The official `EnvironmentWorker` polling a self-hosted environment, on its own event loop."""

    def __init__(self, base_url: str, environment_id: str, environment_key: str, workdir: Path, **kw: Any) -> None:
        self.base_url = base_url
        self.environment_id = environment_id
        self.environment_key = environment_key
        self.workdir = workdir
        self.kw = kw
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        client = anthropic.AsyncAnthropic(base_url=self.base_url, api_key=None, max_retries=2)
        worker = client.beta.environments.work.worker(
            environment_id=self.environment_id,
            environment_key=self.environment_key,
            workdir=str(self.workdir),
            memory_sync_interval=None,
            **self.kw,
        )
        self.task = self.loop.create_task(worker.run())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc

    def __enter__(self) -> WorkerThread:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(15)
