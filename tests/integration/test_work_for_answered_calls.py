"""Hands asked for from a log that has moved on: the harness's step read the log, then a failed work item answered
the step's sandbox calls with its error (`WorkService.fail`), then the step asked for hands for them. No sandbox is
launched for calls that are answered, and an item that was launched for them anyway and fails before it ever ran
anything is no `session.error` after the session went idle (it was once, in
test_sandbox_cloud.py::test_sandbox_that_never_starts_becomes_a_readable_session_error)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from managed_agents.domain.events import NewEvent
from managed_agents.ports import Record, iter_all
from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from managed_agents.wiring import Runtime, build_local_runtime

WS = "wrkspc_answered"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    rt = build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)
    assert rt.work is not None
    launched: list[str] = []
    # the launch is where a sandbox would start: recorded, so each test decides when (and whether) it fails
    monkeypatch.setattr(rt.work, "_launch", lambda rec, *_a, **_k: launched.append(rec.id))
    rt.launched = launched  # type: ignore[attr-defined]
    yield rt
    rt.close()


def _session_with_a_bash_call(rt: Runtime) -> tuple[str, str]:
    agent = rt.agents.create(
        WS,
        AgentCreateParams.model_validate(
            {"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]}
        ),
    )
    env = rt.environments.create(WS, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "cloud"}}))
    sid = str(
        rt.sessions.create(WS, SessionCreateParams.model_validate({"agent": agent["id"], "environment_id": env["id"]}))[
            "id"
        ]
    )
    call = "sevt_bash_call"
    rt.events.append(sid, [NewEvent(call, "agent.tool_use", {"name": "bash", "input": {"command": "true"}})])
    return sid, call


def _answer(rt: Runtime, sid: str, call: str) -> None:
    content: Any = [{"type": "text", "text": "The sandbox could not be started. The tool call was abandoned."}]
    rt.events.append(
        sid,
        [NewEvent("sevt_answer", "agent.tool_result", {"tool_use_id": call, "content": content, "is_error": True})],
    )


def _types(rt: Runtime, sid: str) -> list[str]:
    return [e.type for e in iter_all(rt.events, sid)]


def _items(rt: Runtime, sid: str) -> list[Record]:
    return rt.resources.find("work", "session_id", [sid])


def test_hands_for_answered_calls_launch_nothing(runtime: Runtime) -> None:
    # Given a bash call that a failed item answered after the harness's step read the log
    assert runtime.work is not None
    sid, call = _session_with_a_bash_call(runtime)
    _answer(runtime, sid, call)
    # When the step asks for hands for it
    got = runtime.work.ensure_for_session(sid, calls=[call])
    # Then no work item is made and no sandbox launched
    assert got is None
    assert _items(runtime, sid) == []
    assert runtime.launched == []  # type: ignore[attr-defined]


def test_hands_for_an_unanswered_call_launch_a_sandbox(runtime: Runtime) -> None:
    # Given a bash call still waiting
    assert runtime.work is not None
    sid, call = _session_with_a_bash_call(runtime)
    # When the step asks for hands for it
    got = runtime.work.ensure_for_session(sid, calls=[call])
    # Then a work item is made for it and its sandbox launched
    assert got is not None and got.doc["_for_calls"] == [call]
    assert runtime.launched == [got.id]  # type: ignore[attr-defined]


def test_an_item_for_calls_answered_meanwhile_fails_without_a_session_error(runtime: Runtime) -> None:
    # Given an item launched for a call that another item's failure then answered
    assert runtime.work is not None
    sid, call = _session_with_a_bash_call(runtime)
    item = runtime.work.ensure_for_session(sid, calls=[call])
    assert item is not None
    _answer(runtime, sid, call)
    before = _types(runtime, sid)
    # When its sandbox fails to start
    runtime.work.fail(item.id, "The sandbox could not be started: boom.")
    # Then the item is stopped, and the log (whose call was answered) gets nothing more
    assert runtime.resources.get_by_id("work", item.id).doc["state"] == "stopped"  # type: ignore[union-attr]
    assert _types(runtime, sid) == before


def test_an_item_whose_call_still_waits_fails_with_its_error(runtime: Runtime) -> None:
    # Given an item launched for a call that still waits
    assert runtime.work is not None
    sid, call = _session_with_a_bash_call(runtime)
    item = runtime.work.ensure_for_session(sid, calls=[call])
    assert item is not None
    # When its sandbox fails to start
    runtime.work.fail(item.id, "The sandbox could not be started: boom.")
    # Then the call gets the error as its result, and a session.error says so
    events = list(iter_all(runtime.events, sid))
    assert [e.type for e in events[-2:]] == ["agent.tool_result", "session.error"]
    assert events[-2].payload["tool_use_id"] == call and events[-2].payload["is_error"] is True
    assert "boom" in str(events[-1].payload["error"])
