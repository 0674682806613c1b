"""Session resources in a cloud sandbox: a mounted file and a cloned private repository (served by `git
http-backend` on loopback behind a token check) are read through bash before the first tool call; the token is found
nowhere the sandbox or the client can see; a failed clone or a deleted file is a readable session.error."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import anthropic
import pytest

from managed_agents.adapters.local.subprocess_sandbox import bubblewrap_path
from managed_agents.testing.git_server import GitHttpServer, make_repository
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, embedded_only, wait_idle, wait_until
from tests.e2e.sandbox_support import TOOLSET, tool_step

TOKEN = "ghs_repo-token-canary-7c2b9e41"
pytestmark = [
    embedded_only("the embedded server clones and mounts; the Fargate init container is not built yet"),
    pytest.mark.skipif(bubblewrap_path() is None, reason="mount paths need bubblewrap's mount namespace"),
]
PROBE = (
    "cat /mnt/session/uploads/*; echo; cat /workspace/hello/README.md; git -C /workspace/hello log --format=%H -1;"
    " echo ENV; env; echo CONFIG; cat /workspace/hello/.git/config; echo PS; cat /proc/*/cmdline | tr '\\0' ' ';"
    " echo GREP; grep -rl ghs_repo /workspace /mnt /tmp $HOME 2>/dev/null | head -5;"
    " echo RO; echo x > /mnt/session/uploads/probe 2>&1 || echo read-only"
)


def _results(events: list[Any]) -> list[str]:
    out = []
    for e in events:
        if e.type == "agent.tool_result":
            out.append("".join(getattr(b, "text", "") for b in e.content or []))
    return out


def _session(client: anthropic.Anthropic, resources: list[Any]) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=resources).id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def test_a_mounted_file_and_a_cloned_repository_without_the_token(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    sha = make_repository(tmp_path / "git", "hello.git", {"README.md": b"hello from the repo\n"})
    with GitHttpServer(tmp_path / "git", token=TOKEN) as git:
        # Given a session with an uploaded file and a private repository
        f = client.beta.files.upload(file=("data.csv", b"a,b\n1,2\n", "text/csv"))
        sid = _session(
            client,
            [
                {"type": "file", "file_id": f.id},
                {
                    "type": "github_repository",
                    "url": git.url("hello.git"),
                    "authorization_token": TOKEN,
                    "mount_path": "/workspace/hello",
                    "checkout": {"type": "commit", "sha": sha},
                },
            ],
        )
        # When the model's first tool call reads them through bash
        model_server.push(tool_step("toolu_1", "bash", {"command": PROBE}), "done")
        _say(client, sid, "look")
        events = wait_idle(client, sid, timeout=90)
    (result,) = _results(events)
    # Then the file and the repository were in place before that call
    assert "a,b\n1,2" in result and "hello from the repo" in result and sha in result
    assert "read-only" in result.split("RO", 1)[1]
    # And the server cloned with the token, which is nowhere in the sandbox (env, .git/config, processes, files)
    assert git.requests and all(ok for _, ok in git.requests)
    assert TOKEN not in result and "GREP\n" in result and result.split("GREP", 1)[1].split("RO")[0].strip() == ""
    assert server.rt.provisioner is not None
    workdir = server.rt.provisioner.workdir(sid)
    assert all(TOKEN.encode() not in p.read_bytes() for p in workdir.rglob("*") if p.is_file())
    stage = server.rt.provisioner.stage(sid)
    assert all(TOKEN.encode() not in p.read_bytes() for p in stage.rglob("*") if p.is_file())
    # nor in any event, nor in the sandbox's log
    assert TOKEN not in str([e.model_dump() for e in events])
    logs = server.rt.provisioner.logs
    assert all(TOKEN.encode() not in p.read_bytes() for p in logs.iterdir())


def test_a_failed_clone_and_a_deleted_file_are_readable_session_errors(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    make_repository(tmp_path / "git", "hello.git", {"README.md": b"x\n"})
    with GitHttpServer(tmp_path / "git", token=TOKEN) as git:
        f = client.beta.files.upload(file=("gone.txt", b"gone", "text/plain"))
        sid = _session(
            client,
            [
                {"type": "file", "file_id": f.id},
                {"type": "github_repository", "url": git.url("hello.git"), "authorization_token": "wrong-token"},
                {"type": "github_repository", "url": git.url("missing.git"), "authorization_token": TOKEN},
            ],
        )
        client.beta.files.delete(f.id)
        model_server.push(tool_step("toolu_1", "bash", {"command": "ls /workspace /mnt/session/uploads; echo ok"}), "k")
        _say(client, sid, "look")
        events = wait_idle(client, sid, timeout=90)
    errors = [e.error for e in events if e.type == "session.error"]
    types = sorted(err.type for err in errors)
    assert types == ["repository_authentication_error", "repository_not_found_error", "unknown_error"], errors
    for err in errors:
        assert err.retry_status.type == "retrying" and err.message
    assert any(f.id in err.message and "not mounted" in err.message for err in errors)
    assert "wrong-token" not in str([e.model_dump() for e in events])
    # And the sandbox started without them: the tool call ran
    (result,) = _results(events)
    assert "ok" in result


def _outputs(client: anthropic.Anthropic, sid: str, count: int) -> list[Any]:
    def found() -> list[Any] | None:
        files = list(client.beta.files.list(scope_id=sid))
        return files if len(files) >= count else None

    result: list[Any] = wait_until(found, timeout=30)
    return result


def test_outputs_written_by_bash_become_session_scoped_files(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    sid = _session(client, [])
    write = (
        "mkdir -p /mnt/session/outputs/sub && printf 'the report\\n' > /mnt/session/outputs/report.md"
        " && head -c 3000 /dev/urandom > /mnt/session/outputs/sub/data.bin"
        " && ln -s /etc/passwd /mnt/session/outputs/leak && ln -s / /mnt/session/outputs/root"
        " && sha256sum /mnt/session/outputs/sub/data.bin"
    )
    model_server.push(tool_step("toolu_1", "bash", {"command": write}), "written")
    _say(client, sid, "write")
    events = wait_idle(client, sid, timeout=60)
    (result,) = _results(events)
    digest = result.split()[0]
    # Then both regular files are the session's, with their bytes; the links were not followed
    files = {f.filename: f for f in _outputs(client, sid, 2)}
    assert set(files) == {"report.md", "sub/data.bin"}
    for f in files.values():
        assert f.scope is not None and f.scope.type == "session" and f.scope.id == sid
    assert client.beta.files.download(files["report.md"].id).read() == b"the report\n"
    assert hashlib.sha256(client.beta.files.download(files["sub/data.bin"].id).read()).hexdigest() == digest
    # When the session idles again with one output changed, only that one is replaced
    model_server.push(tool_step("toolu_2", "bash", {"command": "echo v2 > /mnt/session/outputs/report.md"}), "again")
    _say(client, sid, "again")
    wait_idle(client, sid, timeout=60, count=2)

    def replaced() -> dict[str, Any] | None:
        now = {f.filename: f for f in client.beta.files.list(scope_id=sid)}
        return now if now.get("report.md") and now["report.md"].id != files["report.md"].id else None

    now = wait_until(replaced, timeout=30)
    assert set(now) == {"report.md", "sub/data.bin"} and now["sub/data.bin"].id == files["sub/data.bin"].id
    assert client.beta.files.download(now["report.md"].id).read() == b"v2\n"


def test_an_output_survives_its_sandbox_being_killed(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    sid = _session(client, [])
    cmd = "echo kept > /mnt/session/outputs/kept.txt && sleep 60"
    model_server.push(tool_step("toolu_1", "bash", {"command": cmd}), "after")
    _say(client, sid, "write then hang")
    provisioner = server.rt.provisioner
    assert provisioner is not None
    wait_until(lambda: (provisioner.outputs(sid) / "kept.txt").exists(), timeout=60)
    # When the sandbox is killed while its tool call runs
    pid = provisioner.pid(sid)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    # Then the output written before is a file of the session
    (kept,) = _outputs(client, sid, 1)
    assert kept.filename == "kept.txt" and client.beta.files.download(kept.id).read() == b"kept\n"
    events = wait_idle(client, sid, timeout=60)
    assert any(e.type == "session.error" for e in events)
