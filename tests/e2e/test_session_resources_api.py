"""Session resources through the official SDK (strict response validation), on both backends: `resources` on
create, add/list/retrieve/update/delete, a repository token that is never returned and rotates, precise 400/404s."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.e2e.conftest import Server, error_body, strict_client

TOKEN = "ghp_resource-canary-5f1e0c77"
ROTATED = "ghp_rotated-canary-93d1aa04"
BETA = {"anthropic-beta": "managed-agents-2026-04-01"}
REPO = "https://github.com/octo/hello-world.git"


def _setup(client: anthropic.Anthropic) -> tuple[str, str]:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return agent.id, env.id


def test_resources_on_create_and_the_resources_api(server: Server) -> None:
    client = strict_client(server)
    agent_id, env_id = _setup(client)
    f = client.beta.files.upload(file=("data.csv", b"a,b\n1,2\n", "text/csv"))
    # Given a session created with a file and a private repository
    session = client.beta.sessions.create(
        agent=agent_id,
        environment_id=env_id,
        resources=[
            {"type": "file", "file_id": f.id},
            {
                "type": "github_repository",
                "url": REPO,
                "authorization_token": TOKEN,
                "checkout": {"type": "branch", "name": "main"},
            },
        ],
    )
    # Then both are on the session, with their default mount paths, and no token anywhere
    file_res, repo_res = session.resources
    assert file_res.type == "file" and file_res.file_id == f.id
    assert file_res.mount_path == f"/mnt/session/uploads/{f.id}"
    assert repo_res.type == "github_repository" and repo_res.url == REPO
    assert repo_res.mount_path == "/workspace/hello-world"
    assert repo_res.checkout is not None and repo_res.checkout.type == "branch"
    assert file_res.id.startswith("sesrsc_") and repo_res.id != file_res.id
    listed = client.beta.sessions.resources.list(session.id)
    assert [r.id for r in listed.data] == [file_res.id, repo_res.id] and listed.next_page is None
    got = client.beta.sessions.resources.retrieve(repo_res.id, session_id=session.id)
    assert got.type == "github_repository" and got.mount_path == "/workspace/hello-world"
    # When a file is added at a path of its own
    g = client.beta.files.upload(file=("notes.md", b"# notes", "text/markdown"))
    added = client.beta.sessions.resources.add(session.id, type="file", file_id=g.id, mount_path="/data/notes.md")
    assert added.type == "file" and added.mount_path == "/data/notes.md"
    # Then pages walk all three
    first = client.beta.sessions.resources.list(session.id, limit=2)
    assert len(first.data) == 2 and first.next_page
    assert [r.id for r in client.beta.sessions.resources.list(session.id, limit=2)] == [
        file_res.id,
        repo_res.id,
        added.id,
    ]
    assert [r.id for r in client.beta.sessions.retrieve(session.id).resources] == [file_res.id, repo_res.id, added.id]
    # When the token is rotated
    rotated = client.beta.sessions.resources.update(repo_res.id, session_id=session.id, authorization_token=ROTATED)
    assert rotated.type == "github_repository" and rotated.updated_at >= repo_res.updated_at
    # Then no response ever carries either token
    for path in (
        f"/v1/sessions/{session.id}",
        f"/v1/sessions/{session.id}/resources",
        f"/v1/sessions/{session.id}/resources/{repo_res.id}",
        "/v1/sessions",
        f"/v1/sessions/{session.id}/events",
    ):
        raw = client.get(path, cast_to=object, options={"headers": BETA})
        assert TOKEN not in str(raw) and ROTATED not in str(raw)
    # And a file resource has no token to rotate
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.resources.update(file_res.id, session_id=session.id, authorization_token="x")
    assert "github_repository" in error_body(info.value)["message"]
    # When one is deleted
    deleted = client.beta.sessions.resources.delete(added.id, session_id=session.id)
    assert deleted.id == added.id and deleted.type == "session_resource_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.retrieve(added.id, session_id=session.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.delete(added.id, session_id=session.id)
    assert [r.id for r in client.beta.sessions.resources.list(session.id)] == [file_res.id, repo_res.id]


def test_a_memory_store_resource_names_a_store_of_the_workspace(server: Server) -> None:
    # (memory_store resources themselves: tests/e2e/test_memory_stores_api.py)
    client = strict_client(server)
    agent_id, env_id = _setup(client)
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.sessions.create(
            agent=agent_id,
            environment_id=env_id,
            resources=[{"type": "memory_store", "memory_store_id": "memstore_1"}],
        )
    assert error_body(info.value)["details"]["error_code"] == "memory_store_not_found"


def test_invalid_resources_are_precise_errors(server: Server) -> None:
    client = strict_client(server)
    agent_id, env_id = _setup(client)
    f = client.beta.files.upload(file=("a.txt", b"a", "text/plain"))

    def create(*resources: Any) -> anthropic.BadRequestError | anthropic.NotFoundError:
        with pytest.raises((anthropic.BadRequestError, anthropic.NotFoundError)) as info:
            client.beta.sessions.create(agent=agent_id, environment_id=env_id, resources=list(resources))
        assert isinstance(info.value, anthropic.BadRequestError | anthropic.NotFoundError)
        return info.value

    # a file that does not exist: 404 naming it
    err = create({"type": "file", "file_id": "file_missing"})
    assert isinstance(err, anthropic.NotFoundError) and "file_missing" in error_body(err)["message"]
    # mount paths: relative, '..', the outputs directory, twice the same
    assert "absolute" in error_body(create({"type": "file", "file_id": f.id, "mount_path": "rel/a"}))["message"]
    assert ".." in error_body(create({"type": "file", "file_id": f.id, "mount_path": "/a/../b"}))["message"]
    outputs = create({"type": "file", "file_id": f.id, "mount_path": "/mnt/session/outputs/a"})
    assert "outputs" in error_body(outputs)["message"]
    twice = create(
        {"type": "file", "file_id": f.id, "mount_path": "/x/a"},
        {"type": "file", "file_id": f.id, "mount_path": "/x/a"},
    )
    assert "resources[1].mount_path" in error_body(twice)["message"]
    # repositories: not http(s), credentials in the URL, a malformed commit, unknown fields
    assert "url" in error_body(create({"type": "github_repository", "url": "file:///etc"}))["message"]
    assert (
        "authorization_token"
        in error_body(create({"type": "github_repository", "url": "https://u:p@github.com/o/r"}))["message"]
    )
    create({"type": "github_repository", "url": REPO, "checkout": {"type": "commit", "sha": "abc"}})
    create({"type": "file", "file_id": f.id, "extra": 1})
    create({"type": "directory", "path": "/x"})
    # resources.add takes files only
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    with pytest.raises(anthropic.BadRequestError):
        client.post(
            f"/v1/sessions/{session.id}/resources",
            body={"type": "github_repository", "url": REPO},
            cast_to=object,
            options={"headers": BETA},
        )
    # unknown session / resource: 404
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.list("sesn_missing")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.retrieve("sesrsc_missing", session_id=session.id)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.resources.list(session.id, page="page_bm9wZQ")
