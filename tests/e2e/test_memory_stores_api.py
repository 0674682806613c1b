"""Memory stores through the official SDK: stores, memories with preconditions, path listing, versions, redaction."""

from __future__ import annotations

import hashlib
from typing import Any

import anthropic
import pytest

from tests.e2e.conftest import Server


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    err = body["error"]
    assert isinstance(err, dict)
    return err


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_memory_store_crud_archive_and_list(client: anthropic.Anthropic) -> None:
    store = client.beta.memory_stores.create(
        name="Team Notes", description="what the team learned", metadata={"a": "1"}
    )
    assert store.type == "memory_store" and store.id.startswith("memstore_") and store.archived_at is None
    updated = client.beta.memory_stores.update(store.id, description="", metadata={"a": None, "b": "2"})
    assert updated.description == "" and updated.metadata == {"b": "2"} and updated.name == "Team Notes"
    assert store.id in {s.id for s in client.beta.memory_stores.list()}
    archived = client.beta.memory_stores.archive(store.id)
    assert archived.archived_at is not None
    assert client.beta.memory_stores.archive(store.id).archived_at == archived.archived_at  # idempotent
    assert store.id not in {s.id for s in client.beta.memory_stores.list()}
    assert store.id in {s.id for s in client.beta.memory_stores.list(include_archived=True)}
    # an archived store refuses changes and new memories
    with pytest.raises(anthropic.BadRequestError):
        client.beta.memory_stores.update(store.id, name="x")
    with pytest.raises(anthropic.BadRequestError):
        client.beta.memory_stores.memories.create(store.id, path="/a.md", content="x")
    assert client.beta.memory_stores.delete(store.id).type == "memory_store_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.retrieve(store.id)


def test_memories_crud_rename_and_preconditions(client: anthropic.Anthropic) -> None:
    store = client.beta.memory_stores.create(name="m")
    mem = client.beta.memory_stores.memories.create(store.id, path="/notes/todo.md", content="buy milk")
    assert mem.type == "memory" and mem.id.startswith("mem_") and mem.memory_store_id == store.id
    assert mem.content == "buy milk" and mem.content_sha256 == _sha("buy milk") and mem.content_size_bytes == 8
    assert client.beta.memory_stores.memories.retrieve(mem.id, memory_store_id=store.id, view="basic").content is None
    # a second memory at the same path is a 409 path conflict (not retried by the SDK)
    with pytest.raises(anthropic.ConflictError) as info:
        client.beta.memory_stores.memories.create(store.id, path="/notes/todo.md", content="other")
    assert _error(info.value)["type"] == "memory_path_conflict_error"
    assert info.value.response.headers.get("x-should-retry") == "false"
    # an update with a stale precondition is a 409 precondition failure; with the right one it applies
    with pytest.raises(anthropic.ConflictError) as stale:
        client.beta.memory_stores.memories.update(
            mem.id,
            memory_store_id=store.id,
            content="x",
            precondition={"type": "content_sha256", "content_sha256": _sha("no")},
        )
    assert _error(stale.value)["type"] == "memory_precondition_failed_error"
    renamed = client.beta.memory_stores.memories.update(
        mem.id,
        memory_store_id=store.id,
        path="/done/todo.md",
        content="bought milk",
        precondition={"type": "content_sha256", "content_sha256": mem.content_sha256},
    )
    assert renamed.id == mem.id and renamed.path == "/done/todo.md" and renamed.content == "bought milk"
    assert renamed.memory_version_id != mem.memory_version_id
    # the old path is free again, the new one taken
    again = client.beta.memory_stores.memories.create(store.id, path="/notes/todo.md", content="")
    assert again.content == "" and again.content_sha256 == _sha("")
    with pytest.raises(anthropic.ConflictError):
        client.beta.memory_stores.memories.update(again.id, memory_store_id=store.id, path="/done/todo.md")
    # delete honours expected_content_sha256
    with pytest.raises(anthropic.ConflictError):
        client.beta.memory_stores.memories.delete(
            renamed.id, memory_store_id=store.id, expected_content_sha256=_sha("stale")
        )
    deleted = client.beta.memory_stores.memories.delete(
        renamed.id, memory_store_id=store.id, expected_content_sha256=_sha("bought milk")
    )
    assert deleted.type == "memory_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.memories.retrieve(renamed.id, memory_store_id=store.id)


@pytest.mark.parametrize(
    "path",
    [
        "notes.md",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/a/",
        "/a\x00b",
        "/a\u2028b",
        "/e\u0301",
        "/" + "/".join("x" * 21),
        "/" + "x" * 1024,
    ],
)
def test_memory_paths_follow_the_reference_rules(client: anthropic.Anthropic, path: str) -> None:
    store = client.beta.memory_stores.create(name="rules")
    with pytest.raises(anthropic.BadRequestError):
        client.beta.memory_stores.memories.create(store.id, path=path, content="x")


def test_memories_list_by_prefix_depth_view_and_pages(client: anthropic.Anthropic) -> None:
    store = client.beta.memory_stores.create(name="tree")
    paths = ["/a.md", "/notes/b.md", "/notes/deep/c.md", "/notes/deep/d.md", "/notes-archive/e.md", "/z/f.md"]
    for p in paths:
        client.beta.memory_stores.memories.create(store.id, path=p, content=f"content of {p}")
    listed = list(client.beta.memory_stores.memories.list(store.id))
    assert [m.path for m in listed] == sorted(paths) and all(m.content is None for m in listed)
    # whole segments only: /notes/ is not /notes-archive/
    under = [m.path for m in client.beta.memory_stores.memories.list(store.id, path_prefix="/notes/")]
    assert under == ["/notes/b.md", "/notes/deep/c.md", "/notes/deep/d.md"]
    # depth 1: direct children, deeper ones rolled into one memory_prefix
    top = [(m.type, m.path) for m in client.beta.memory_stores.memories.list(store.id, depth=1)]
    assert top == [
        ("memory", "/a.md"),
        ("memory_prefix", "/notes-archive/"),
        ("memory_prefix", "/notes/"),
        ("memory_prefix", "/z/"),
    ]
    one = [(m.type, m.path) for m in client.beta.memory_stores.memories.list(store.id, path_prefix="/notes/", depth=1)]
    assert one == [("memory", "/notes/b.md"), ("memory_prefix", "/notes/deep/")]
    # pages of 2 give every item once, in order, prefixes included
    paged = [m.path for m in client.beta.memory_stores.memories.list(store.id, depth=1, limit=1)]
    assert paged == [p for _, p in top]
    full = list(client.beta.memory_stores.memories.list(store.id, view="full", limit=2))
    assert [m.content for m in full] == [f"content of {p}" for p in sorted(paths)]
    with pytest.raises(anthropic.BadRequestError):
        client.beta.memory_stores.memories.list(store.id, view="full", limit=21)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.memory_stores.memories.list(store.id, path_prefix="/notes")


def test_memory_versions_filters_actors_and_redaction(client: anthropic.Anthropic, server: Server) -> None:
    store = client.beta.memory_stores.create(name="history")
    mem = client.beta.memory_stores.memories.create(store.id, path="/x.md", content="one")
    client.beta.memory_stores.memories.update(mem.id, memory_store_id=store.id, content="two")
    other = client.beta.memory_stores.memories.create(store.id, path="/y.md", content="y")
    client.beta.memory_stores.memories.delete(other.id, memory_store_id=store.id)
    versions = list(client.beta.memory_stores.memory_versions.list(store.id, memory_id=mem.id))
    # newest first, one per change, each by the API key that made it
    assert [v.operation for v in versions] == ["modified", "created"]
    assert all(v.created_by is not None and v.created_by.type == "api_actor" for v in versions)
    assert versions[0].content is None  # basic view
    key_id = versions[0].created_by.api_key_id  # type: ignore[union-attr]
    assert len(list(client.beta.memory_stores.memory_versions.list(store.id, api_key_id=key_id))) == 4
    assert len(list(client.beta.memory_stores.memory_versions.list(store.id, api_key_id="apikey_other"))) == 0
    assert [v.memory_id for v in client.beta.memory_stores.memory_versions.list(store.id, operation="deleted")] == [
        other.id
    ]
    assert len(list(client.beta.memory_stores.memory_versions.list(store.id, session_id="sesn_none"))) == 0
    first = client.beta.memory_stores.memory_versions.retrieve(versions[1].id, memory_store_id=store.id)
    assert first.content == "one" and first.path == "/x.md" and first.content_sha256 == _sha("one")
    # the current version cannot be redacted; an older one can, and loses path and content
    with pytest.raises(anthropic.BadRequestError):
        client.beta.memory_stores.memory_versions.redact(versions[0].id, memory_store_id=store.id)
    redacted = client.beta.memory_stores.memory_versions.redact(first.id, memory_store_id=store.id)
    assert redacted.redacted_at is not None and redacted.redacted_by is not None
    assert redacted.content is None and redacted.path is None and redacted.content_sha256 is None
    assert client.beta.memory_stores.memory_versions.retrieve(first.id, memory_store_id=store.id).content is None
    assert client.beta.memory_stores.memories.retrieve(mem.id, memory_store_id=store.id).content == "two"


def test_memory_stores_are_workspace_private_and_need_an_api_key(client: anthropic.Anthropic, server: Server) -> None:
    store = client.beta.memory_stores.create(name="private")
    mem = client.beta.memory_stores.memories.create(store.id, path="/s.md", content="secret")
    ws2 = server.rt.keys.create_workspace("other")
    _, key2 = server.rt.keys.create_key(ws2)
    outsider = server.client(key2)
    with pytest.raises(anthropic.NotFoundError):
        outsider.beta.memory_stores.retrieve(store.id)
    with pytest.raises(anthropic.NotFoundError):
        outsider.beta.memory_stores.memories.retrieve(mem.id, memory_store_id=store.id)
    with pytest.raises(anthropic.NotFoundError):
        list(outsider.beta.memory_stores.memories.list(store.id))
    # a memory id of one store is not found through another store of the same workspace
    second = client.beta.memory_stores.create(name="second")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.memories.retrieve(mem.id, memory_store_id=second.id)
    # deleting the store deletes its memories
    client.beta.memory_stores.delete(store.id)
    assert server.rt.resources.get_by_id("memory", mem.id) is None


def test_sessions_attach_memory_stores_and_work_tokens_use_exactly_those(
    client: anthropic.Anthropic, server: Server, model_server: Any
) -> None:
    from tests.e2e.test_work_queue_api import TOOLSET, _claim, _say

    # Given a read_write store, a read_only store, a store the session does not have, and an archived one
    rw = client.beta.memory_stores.create(name="Team Notes!", description="what we learned")
    ro = client.beta.memory_stores.create(name="Policies")
    other = client.beta.memory_stores.create(name="Elsewhere")
    gone = client.beta.memory_stores.create(name="Old")
    client.beta.memory_stores.archive(gone.id)
    agent = client.beta.agents.create(name="a", model="m", tools=[TOOLSET])
    env = client.beta.environments.create(name="sh", config={"type": "self_hosted"})
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.create(
            agent=agent.id, environment_id=env.id, resources=[{"type": "memory_store", "memory_store_id": gone.id}]
        )
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.create(
            agent=agent.id, environment_id=env.id, resources=[{"type": "memory_store", "memory_store_id": "memstore_x"}]
        )
    # When a session is created with the first two
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=env.id,
        resources=[
            {"type": "memory_store", "memory_store_id": rw.id, "instructions": "keep it short"},
            {"type": "memory_store", "memory_store_id": ro.id, "access": "read_only"},
        ],
    )
    # Then they are mounted under /mnt/memory/<slug of the name>, with their access and texts
    by_id = {r.memory_store_id: r for r in session.resources if r.type == "memory_store"}
    assert by_id[rw.id].mount_path == "/mnt/memory/team-notes" and by_id[rw.id].access == "read_write"
    assert by_id[rw.id].description == "what we learned" and by_id[rw.id].instructions == "keep it short"
    assert by_id[ro.id].mount_path == "/mnt/memory/policies" and by_id[ro.id].access == "read_only"
    assert by_id[ro.id].name == "Policies"
    # And sessions.list finds the sessions that have a store (with the other filters applied)
    plain = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    assert [x.id for x in client.beta.sessions.list(memory_store_id=rw.id)] == [session.id]
    assert [x.id for x in client.beta.sessions.list(memory_store_id=ro.id, statuses=["idle"])] == [session.id]
    assert [x.id for x in client.beta.sessions.list(memory_store_id=ro.id, statuses=["running"])] == []
    assert list(client.beta.sessions.list(memory_store_id=other.id)) == []
    assert plain.id in {x.id for x in client.beta.sessions.list()}
    again = client.beta.sessions.create(
        agent=agent.id, environment_id=env.id, resources=[{"type": "memory_store", "memory_store_id": rw.id}]
    )
    assert [x.id for x in client.beta.sessions.list(memory_store_id=rw.id, limit=1)] == [again.id, session.id]
    fact = client.beta.memory_stores.memories.create(ro.id, path="/rules.md", content="be kind")
    # And the session's work token reads both, writes only the read_write one, and cannot reach any other store
    model_server.push("hello")
    _say(client, session.id)
    _item, _worker, token = _claim(server, env.id)
    assert [m.path for m in token.beta.memory_stores.memories.list(ro.id)] == ["/rules.md"]
    assert token.beta.memory_stores.memories.retrieve(fact.id, memory_store_id=ro.id).content == "be kind"
    written = token.beta.memory_stores.memories.create(rw.id, path="/learned.md", content="x")
    versions = list(client.beta.memory_stores.memory_versions.list(rw.id, session_id=session.id))
    assert [v.memory_id for v in versions] == [written.id]
    assert versions[0].created_by is not None and versions[0].created_by.type == "session_actor"
    assert versions[0].created_by.session_id == session.id  # type: ignore[union-attr]
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.memory_stores.memories.create(ro.id, path="/sneaky.md", content="x")
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.memory_stores.memories.update(fact.id, memory_store_id=ro.id, content="changed")
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.memory_stores.memories.delete(fact.id, memory_store_id=ro.id)
    with pytest.raises(anthropic.NotFoundError):
        list(token.beta.memory_stores.memories.list(other.id))
    # nor a store of another workspace, even one with a memory at the same path
    ws2 = server.rt.keys.create_workspace("other")
    _, key2 = server.rt.keys.create_key(ws2)
    foreign = server.client(key2).beta.memory_stores.create(name="Team Notes!")
    with pytest.raises(anthropic.NotFoundError):
        list(token.beta.memory_stores.memories.list(foreign.id))
    with pytest.raises(anthropic.NotFoundError):
        token.beta.memory_stores.memories.create(foreign.id, path="/x.md", content="x")
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.memory_stores.retrieve(rw.id)
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.memory_stores.memory_versions.redact(versions[0].id, memory_store_id=rw.id)
