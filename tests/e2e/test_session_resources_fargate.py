"""Session resources in a Fargate sandbox (the AWS leg: moto's RunTask runs the task's init container, then the
official worker, as processes; tests/aws/platform.py): the init container, which alone holds a materialization
token, downloads the session's files and clones its private repository (served by `git http-backend` on loopback
behind a token check) into the task volumes; bash reads them before the first tool call; the repository token is
nowhere the sandbox container, its ECS overrides, the events or the logs can see; the materialization token dies
once the worker runs; a failed clone or a deleted file is a readable session.error."""

from __future__ import annotations

import hashlib
from typing import Any

import anthropic
import httpx
import pytest

from managed_agents.testing.git_server import GitHttpServer, make_repository
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle, wait_until
from tests.e2e.sandbox_support import TOOLSET, tool_step

pytestmark = pytest.mark.parametrize("backend", [pytest.param("aws", marks=pytest.mark.slow)])
TOKEN = "ghs_repo-token-canary-fargate-51d0"
# the stand-in's task volumes are the session's working directory, the tools' cwd: /mnt/session → ./mnt/session
PROBE = (
    "cat mnt/session/uploads/*; echo; cat data/in.csv; echo; cat workspace/hello/README.md;"
    " git -C workspace/hello log --format=%H -1; cat src/tools/TOOL.md; echo ENV; env; echo CONFIG;"
    " cat workspace/hello/.git/config; echo GREP; grep -rl ghs_repo . 2>/dev/null | head -5; echo END"
)


def _results(events: list[Any]) -> list[str]:
    return ["".join(getattr(b, "text", "") for b in e.content or []) for e in events if e.type == "agent.tool_result"]


def _session(client: anthropic.Anthropic, resources: list[Any]) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=resources).id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def test_the_init_container_mounts_files_and_clones_without_the_sandbox_seeing_the_token(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, tmp_path: Any
) -> None:
    sha = make_repository(tmp_path / "git", "hello.git", {"README.md": b"hello from the repo\n"})
    make_repository(tmp_path / "git", "tools.git", {"TOOL.md": b"a tool\n"}, branch="dev")
    with GitHttpServer(tmp_path / "git", token=TOKEN) as git:
        # Given a session with an uploaded file (default and custom mount paths) and two private repositories
        f = client.beta.files.upload(file=("data.csv", b"a,b\n1,2\n", "text/csv"))
        g = client.beta.files.upload(file=("in.csv", "x,ü\n".encode(), "text/csv"))
        sid = _session(
            client,
            [
                {"type": "file", "file_id": f.id},
                {"type": "file", "file_id": g.id, "mount_path": "/data/in.csv"},
                {
                    "type": "github_repository",
                    "url": git.url("hello.git"),
                    "authorization_token": TOKEN,
                    "mount_path": "/workspace/hello",
                    "checkout": {"type": "commit", "sha": sha},
                },
                {
                    "type": "github_repository",
                    "url": git.url("tools.git"),
                    "authorization_token": TOKEN,
                    "mount_path": "/src/tools",
                    "checkout": {"type": "branch", "name": "dev"},
                },
            ],
        )
        # When the model's first tool call reads them through bash
        model_server.push(tool_step("toolu_1", "bash", {"command": PROBE}), "done")
        _say(client, sid, "look")
        events = wait_idle(client, sid, timeout=120)
    (result,) = _results(events)
    # Then the files and both repositories were in place before that call (outside the volumes: linked)
    assert "a,b\n1,2" in result and "x,ü" in result and "hello from the repo" in result and sha in result
    assert "a tool" in result
    assert [e for e in events if e.type == "session.error"] == []
    # And the init container cloned with the token, which is nowhere the sandbox can see
    assert git.requests and all(ok for _, ok in git.requests)
    assert TOKEN not in result and result.split("GREP", 1)[1].split("END")[0].strip() == ""
    workdir = server.sandbox_workdir(sid)
    assert all(TOKEN.encode() not in p.read_bytes() for p in workdir.rglob("*") if p.is_file() and not p.is_symlink())
    assert TOKEN not in str([e.model_dump() for e in events])
    platform = server.platform
    assert platform is not None
    assert all(TOKEN.encode() not in p.read_bytes() for p in platform.sandboxes.root.glob("*.log"))
    # nor in either container's ECS overrides: the sandbox container has no materialization token either
    (run,) = platform.sandboxes.runs
    assert TOKEN not in str(run) and "MANAGED_AGENTS_INIT_TOKEN" not in run["environment"]
    init_token = run["init"]["MANAGED_AGENTS_INIT_TOKEN"]
    # And the materialization token died when the worker started (its item is no longer `starting`)
    ids = run["init"]
    url = f"{server.url}/v1/environments/{ids['ANTHROPIC_ENVIRONMENT_ID']}/work/{ids['ANTHROPIC_WORK_ID']}"
    denied = httpx.get(f"{url}/materials", headers={"Authorization": f"Bearer {init_token}"})
    assert denied.status_code == 401, denied.text
    # nor does the sandbox's work token read the manifest
    work_token = run["environment"]["ANTHROPIC_WORK_SECRET"]
    assert httpx.get(f"{url}/materials", headers={"Authorization": f"Bearer {work_token}"}).status_code == 401


def test_a_failed_clone_and_a_deleted_file_are_readable_session_errors_on_fargate(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, tmp_path: Any
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
        model_server.push(tool_step("toolu_1", "bash", {"command": "echo ran"}), "k")
        _say(client, sid, "look")
        events = wait_idle(client, sid, timeout=120)
    errors = [e.error for e in events if e.type == "session.error"]
    types = sorted(err.type for err in errors)
    assert types == ["repository_authentication_error", "repository_not_found_error", "unknown_error"], errors
    for err in errors:
        assert err.retry_status.type == "retrying" and err.message and "wrong-token" not in err.message
    assert any(f.id in err.message and "not mounted" in err.message for err in errors)
    # And the sandbox started without them: the tool ran
    assert "ran" in _results(events)[0]


def _outputs(client: anthropic.Anthropic, sid: str, count: int) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        files = {f.filename: f for f in client.beta.files.list(scope_id=sid)}
        return files if len(files) >= count else None

    result: dict[str, Any] = wait_until(found, timeout=60)
    return result


def test_outputs_a_fargate_sandbox_writes_become_session_files_and_survive_its_stop(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a cloud session whose first tool call writes outputs (a link among them) in its task's volume
    sid = _session(client, [])
    write = (
        "mkdir -p mnt/session/outputs/sub && printf 'the report\\n' > mnt/session/outputs/report.md"
        " && head -c 3000 /dev/urandom > mnt/session/outputs/sub/data.bin && ln -s /etc/passwd mnt/session/outputs/leak"
        " && sha256sum mnt/session/outputs/sub/data.bin"
    )
    model_server.push(tool_step("toolu_1", "bash", {"command": write}), "written")
    _say(client, sid, "write")
    events = wait_idle(client, sid, timeout=120)
    digest = _results(events)[0].split()[0]
    # Then the sandbox sent them: session-scoped files with their bytes; the link was not followed
    files = _outputs(client, sid, 2)
    assert set(files) == {"report.md", "sub/data.bin"}
    assert all(f.scope is not None and f.scope.type == "session" and f.scope.id == sid for f in files.values())
    assert client.beta.files.download(files["report.md"].id).read() == b"the report\n"
    assert hashlib.sha256(client.beta.files.download(files["sub/data.bin"].id).read()).hexdigest() == digest
    # When the next call rewrites one output and hangs, and the task is stopped (StopTask: SIGTERM) meanwhile
    hang = "echo v2 > mnt/session/outputs/report.md && echo late > mnt/session/outputs/late.txt && sleep 60"
    model_server.push(tool_step("toolu_2", "bash", {"command": hang}), "after")
    _say(client, sid, "again")
    workdir = server.sandbox_workdir(sid)
    wait_until(lambda: (workdir / "mnt/session/outputs/late.txt").exists(), timeout=60)
    platform = server.platform
    assert platform is not None
    ecs = platform.ecs()
    for arn in ecs.list_tasks(cluster=platform.cluster, desiredStatus="RUNNING")["taskArns"]:
        ecs.stop_task(cluster=platform.cluster, task=arn, reason="test")

    # Then nothing written before the stop is lost: the changed output replaced, the new one stored
    def settled() -> dict[str, Any] | None:
        now = {f.filename: f for f in client.beta.files.list(scope_id=sid)}
        changed = now.get("report.md") is not None and now["report.md"].id != files["report.md"].id
        return now if changed and "late.txt" in now else None

    now = wait_until(settled, timeout=60)
    assert set(now) == {"report.md", "sub/data.bin", "late.txt"} and now["sub/data.bin"].id == files["sub/data.bin"].id
    assert client.beta.files.download(now["report.md"].id).read() == b"v2\n"
    assert client.beta.files.download(now["late.txt"].id).read() == b"late\n"


def test_only_the_sessions_work_token_writes_its_outputs(server: Server, client: anthropic.Anthropic) -> None:
    sid = _session(client, [])
    url = f"{server.url}/v1/sessions/{sid}/outputs/x.txt"
    # An API key (not the sandbox) is refused, as is no credential
    refused = httpx.put(url, content=b"x", headers={"Authorization": f"Bearer {server.admin_key}"})
    assert refused.status_code == 403, refused.text
    assert httpx.put(url, content=b"x").status_code == 401
    assert list(client.beta.files.list(scope_id=sid)) == []


def test_files_added_to_a_running_fargate_sandbox_are_in_place_before_its_next_tool_call(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a cloud session with one file, whose sandbox (a Fargate task) ran a tool call and is still running
    first = client.beta.files.upload(file=("first.txt", b"first\n", "text/plain"))
    sid = _session(client, [{"type": "file", "file_id": first.id}])
    model_server.push(tool_step("toolu_1", "bash", {"command": f"cat mnt/session/uploads/{first.id}"}), "read")
    _say(client, sid, "read")
    assert "first" in _results(wait_idle(client, sid, timeout=120))[0]
    platform = server.platform
    assert platform is not None and len(platform.sandboxes.runs) == 1
    # When files are added to the session: at the default mount path and in the workspace (where the image's sandbox
    # user may write; elsewhere the next task's init container places them: tests/unit/test_sandbox_entrypoint_inputs)
    late = client.beta.files.upload(file=("late.csv", "a,ü\n".encode(), "text/csv"))
    notes = client.beta.files.upload(file=("notes.md", b"# notes\n", "text/markdown"))
    data = client.beta.files.upload(file=("d.bin", bytes(range(256)), "application/octet-stream"))
    client.beta.sessions.resources.add(sid, type="file", file_id=late.id)
    client.beta.sessions.resources.add(sid, type="file", file_id=notes.id, mount_path="/workspace/docs/notes.md")
    client.beta.sessions.resources.add(sid, type="file", file_id=data.id, mount_path="/workspace/d.bin")
    # and the next tool call reads them
    probe = (
        f"cat mnt/session/uploads/{late.id} workspace/docs/notes.md; sha256sum workspace/d.bin;"
        f" stat -c %a mnt/session/uploads/{late.id}"
    )
    model_server.push(tool_step("toolu_2", "bash", {"command": probe}), "read")
    _say(client, sid, "read again")
    events = wait_idle(client, sid, timeout=120, count=2)
    # Then the running sandbox had put them in place, read-only, before that call: the same task, no new one
    result = _results(events)[-1]
    assert "a,ü" in result and "# notes" in result, result
    assert hashlib.sha256(bytes(range(256))).hexdigest() in result and result.strip().endswith("444"), result
    assert len(platform.sandboxes.runs) == 1
    assert [e for e in events if e.type == "session.error"] == []


def test_only_the_sessions_work_token_reads_its_inputs(server: Server, client: anthropic.Anthropic) -> None:
    f = client.beta.files.upload(file=("a.txt", b"a", "text/plain"))
    sid = _session(client, [{"type": "file", "file_id": f.id}])
    url = f"{server.url}/v1/sessions/{sid}/inputs"
    # An API key (not the sandbox) is refused, as is no credential
    refused = httpx.get(url, headers={"Authorization": f"Bearer {server.admin_key}"})
    assert refused.status_code == 403, refused.text
    assert httpx.get(url).status_code == 401
