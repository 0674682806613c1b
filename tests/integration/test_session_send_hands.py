"""A user.message asks for the session's hands (a work item) on the record the send already read: a session whose
agent has no sandbox tools costs no second read of the session, and one whose agent has them still gets its work
item at once (inference never waits for the sandbox: architecture "Three virtualized parts")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from managed_agents.services.keys import Principal
from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams, UserMessageParams
from managed_agents.wiring import Runtime, build_local_runtime

WS = "wrkspc_hands"
HELLO: Any = {"type": "user.message", "content": [{"type": "text", "text": "go"}]}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)
    yield rt
    rt.close()


def _session(rt: Runtime, tools: list[dict[str, Any]]) -> str:
    agent = rt.agents.create(
        WS, AgentCreateParams.model_validate({"name": "a", "model": "claude-sonnet-4-6", "tools": tools})
    )
    env = rt.environments.create(WS, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "cloud"}}))
    session = rt.sessions.create(
        WS, SessionCreateParams.model_validate({"agent": agent["id"], "environment_id": env["id"]})
    )
    return str(session["id"])


def _send_counting_session_reads(rt: Runtime, sid: str, monkeypatch: pytest.MonkeyPatch) -> int:
    reads: list[str] = []
    get_by_id = rt.resources.get_by_id

    def counted(kind: str, id_: str) -> Any:
        if kind == "session":
            reads.append(id_)
        return get_by_id(kind, id_)

    monkeypatch.setattr(rt.resources, "get_by_id", counted)
    rt.sessions.send(Principal(WS, "key-test"), sid, [UserMessageParams.model_validate(HELLO)])
    monkeypatch.undo()
    return len(reads)


def test_a_message_to_a_session_without_sandbox_tools_does_not_read_the_session_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cloud session whose agent has no sandbox tools
    sid = _session(runtime, [])
    # When a user.message is sent
    reads = _send_counting_session_reads(runtime, sid, monkeypatch)
    # Then no work item is made, and the session was not read by id for it
    assert runtime.resources.find("work", "session_id", [sid]) == []
    assert reads == 0


def test_a_message_to_a_session_with_sandbox_tools_gets_its_work_item_at_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cloud session whose agent has the agent toolset
    sid = _session(runtime, [{"type": "agent_toolset_20260401"}])
    # When a user.message is sent
    _send_counting_session_reads(runtime, sid, monkeypatch)
    # Then its work item exists before any turn ran
    assert len(runtime.resources.find("work", "session_id", [sid])) == 1
