"""Archiving or deleting a session stops its sandbox first: a sandbox that cannot be stopped changes nothing.

On AWS the stop is the provisioner Lambda's ListTasks + StopTask; when it fails (a missing grant, ECS throttling)
the request answers a retryable 503 and the session, its work and its event log are as they were. A delete cut off
after it began (a crash, a timeout) is finished by the retry, so no half-deleted session keeps its log.
"""

from __future__ import annotations

import pytest

from managed_agents.domain.errors import NotFound, ServiceUnavailable
from managed_agents.ports import SandboxExited, SandboxLaunch, iter_all
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams, SessionUpdateParams
from managed_agents.wiring import Runtime
from tests.aws.conftest import AwsEnv


class FlakyProvisioner:
    """A provisioner whose `stop` fails while `failing` is set, as the Lambda does without ecs:ListTasks."""

    isolation = "test"

    def __init__(self) -> None:
        self.failing = True
        self.stopped: list[str] = []

    def launch(self, spec: SandboxLaunch, on_exit: SandboxExited) -> None:
        raise AssertionError("no sandbox is launched in these tests")

    def stop(self, session_id: str, work_id: str | None) -> None:
        if self.failing:
            raise RuntimeError("AccessDeniedException: not authorized to perform ecs:ListTasks")
        self.stopped.append(session_id)

    def dispose(self, session_id: str) -> None:
        """Nothing to remove."""


def _session(rt: Runtime) -> tuple[str, str]:
    ws = rt.keys.create_workspace("default")
    agent = rt.agents.create(ws, AgentCreateParams.model_validate({"name": "a", "model": "claude-scripted"}))
    env = rt.environments.create(ws, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "cloud"}}))
    session = rt.sessions.create(
        ws, SessionCreateParams.model_validate({"agent": agent["id"], "environment_id": env["id"], "title": "t"})
    )
    sid = str(session["id"])
    rt.sessions.update(ws, sid, SessionUpdateParams.model_validate({"title": "renamed"}))  # an event in the log
    return ws, sid


@pytest.fixture
def flaky(aws_env: AwsEnv) -> FlakyProvisioner:
    # (the runtime's work service, given a provisioner as when the Lambda has one configured)
    provisioner = FlakyProvisioner()
    rt = aws_env.deps.runtime
    assert rt.work is not None
    rt.work.provisioner = provisioner
    rt.sessions.work = rt.work
    return provisioner


def test_an_archive_whose_sandbox_cannot_be_stopped_changes_nothing(aws_env: AwsEnv, flaky: FlakyProvisioner) -> None:
    # Given a session and a provisioner that cannot stop sandboxes
    rt = aws_env.deps.runtime
    ws, sid = _session(rt)
    # When the session is archived
    with pytest.raises(ServiceUnavailable, match="nothing was changed; retry") as failure:
        rt.sessions.archive(ws, sid)
    # Then the client is told to retry (503, retryable) and the session is not archived
    assert failure.value.status == 503 and failure.value.retryable
    assert rt.sessions.get(ws, sid)["archived_at"] is None
    # And once the sandbox can be stopped, the retry archives it
    flaky.failing = False
    assert rt.sessions.archive(ws, sid)["archived_at"] is not None
    assert flaky.stopped == [sid]


def test_a_delete_whose_sandbox_cannot_be_stopped_keeps_the_session_and_its_log(
    aws_env: AwsEnv, flaky: FlakyProvisioner
) -> None:
    # Given a session with events and a provisioner that cannot stop sandboxes
    rt = aws_env.deps.runtime
    ws, sid = _session(rt)
    before = [e.id for e in iter_all(rt.events, sid)]
    assert before
    # When the session is deleted
    with pytest.raises(ServiceUnavailable):
        rt.sessions.delete(ws, sid)
    # Then the session and every event are still there
    assert rt.sessions.get(ws, sid)["id"] == sid
    assert [e.id for e in iter_all(rt.events, sid)] == before
    # And the retry deletes both
    flaky.failing = False
    assert rt.sessions.delete(ws, sid) == {"id": sid, "type": "session_deleted"}
    assert list(iter_all(rt.events, sid)) == []
    assert rt.resources.get_by_id("session", sid) is None


def test_a_delete_cut_off_half_way_is_finished_by_its_retry(
    aws_env: AwsEnv, flaky: FlakyProvisioner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a delete that crashes after marking the session deleted, before its log is removed
    flaky.failing = False
    rt = aws_env.deps.runtime
    ws, sid = _session(rt)

    def crash(session_id: str) -> None:
        raise ConnectionError("the Lambda timed out")

    with monkeypatch.context() as m:
        m.setattr(rt.events, "delete_session", crash)
        with pytest.raises(ConnectionError):
            rt.sessions.delete(ws, sid)
    # (the session is gone for readers already)
    with pytest.raises(NotFound):
        rt.sessions.get(ws, sid)
    assert list(iter_all(rt.events, sid))
    # When the client retries the delete
    out = rt.sessions.delete(ws, sid)
    # Then it completes: no event and no record left behind
    assert out == {"id": sid, "type": "session_deleted"}
    assert list(iter_all(rt.events, sid)) == []
    assert rt.resources.get_by_id("session", sid) is None
    # And deleting once more is a plain 404
    with pytest.raises(NotFound):
        rt.sessions.delete(ws, sid)
