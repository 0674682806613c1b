"""Memory stores on every ResourceStore adapter: the path index (services/memory_stores.py) relies only on the
port's (created_at, id) order, so the same listing, uniqueness and cascade rules must hold on SQLite and DynamoDB."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from managed_agents.domain.clock import SystemClock, rfc3339
from managed_agents.ports import ListQuery, Record, ResourceStore
from managed_agents.services.common import Services
from managed_agents.services.keys import Principal
from managed_agents.services.memory_stores import PATH_KEY_BYTES, MemoryPathConflict, MemoryStoreService
from managed_agents.wire.memory_stores import MemoryCreateParams, MemoryStoreCreateParams, MemoryUpdateParams

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _setup(store: ResourceStore) -> tuple[MemoryStoreService, Principal, str]:
    svc = MemoryStoreService(Services(store, SystemClock()))
    p = Principal(workspace_id=f"wrkspc_{uuid.uuid4().hex[:12]}", key_id="apikey_test")
    sid = str(svc.create(p.workspace_id, MemoryStoreCreateParams(name="contract"))["id"])
    return svc, p, sid


def _paths(svc: MemoryStoreService, p: Principal, sid: str, **kw: object) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    page = None
    while True:
        items, page = svc.list_memories(
            p.workspace_id,
            sid,
            path_prefix=kw.get("prefix"),  # type: ignore[arg-type]
            depth=kw.get("depth"),  # type: ignore[arg-type]
            view="basic",
            limit=kw.get("limit", 100),  # type: ignore[arg-type]
            page=page,
        )
        out.extend((str(i["type"]), str(i["path"])) for i in items)
        if page is None:
            return out


def test_records_of_one_instant_list_in_utf8_byte_order_of_their_ids(resource_store: ResourceStore) -> None:
    # Given records sharing created_at whose ids differ in ASCII, multi-byte and astral characters
    ws = f"wrkspc_{uuid.uuid4().hex[:12]}"
    ids = ["k:/a", "k:/a/b", "k:/a-b", "k:/a.b", "k:/\u00e9", "k:/\uffee", "k:/\U0001f600", "k:/Z"]
    for rid in ids:
        resource_store.insert(Record("memory_path", ws, rid, {"id": rid}, EPOCH))
    # When they are listed from a cursor that is not itself a record
    rows, more = resource_store.list_records(
        "memory_path", ws, ListQuery(limit=100, order="asc", cursor=(rfc3339(EPOCH), "k:/a."), include_archived=True)
    )
    # Then the order is the UTF-8 byte order of the ids, starting after the cursor
    expected = sorted((i for i in ids if i.encode() > b"k:/a."), key=lambda i: i.encode())
    assert [r.id for r in rows] == expected and not more


def test_memory_paths_list_in_order_by_prefix_and_depth(resource_store: ResourceStore) -> None:
    svc, p, sid = _setup(resource_store)
    long_a = "/long/" + "a" * (PATH_KEY_BYTES + 50)
    long_b = "/long/" + "a" * (PATH_KEY_BYTES + 50) + "b"
    paths = ["/a", "/b/c", "/b/d/e", "/b-x/f", "/\u00e9t\u00e9/g", "/\U0001f600", long_a, long_b]
    for path in paths:
        svc.create_memory(p, sid, MemoryCreateParams(path=path, content=path), "basic")
    # a second store of the workspace does not leak into the first one's listing
    other = str(svc.create(p.workspace_id, MemoryStoreCreateParams(name="other"))["id"])
    svc.create_memory(p, other, MemoryCreateParams(path="/b/zz", content=""), "basic")

    listed = [path for _, path in _paths(svc, p, sid, limit=3)]
    assert sorted(listed) == sorted(paths) and len(listed) == len(paths)
    short = [x for x in listed if len(x.encode()) <= PATH_KEY_BYTES]
    assert short == sorted(short, key=lambda x: x.encode())
    assert _paths(svc, p, sid, prefix="/b/") == [("memory", "/b/c"), ("memory", "/b/d/e")]
    assert _paths(svc, p, sid, prefix="/long/") == [("memory", x) for x in listed if x.startswith("/long/")]
    assert _paths(svc, p, sid, depth=1, limit=2) == [
        ("memory", "/a"),
        ("memory_prefix", "/b-x/"),
        ("memory_prefix", "/b/"),
        ("memory_prefix", "/long/"),
        ("memory_prefix", "/\u00e9t\u00e9/"),
        ("memory", "/\U0001f600"),
    ]


def test_a_path_is_unique_in_its_store_and_renames_free_it(resource_store: ResourceStore) -> None:
    svc, p, sid = _setup(resource_store)
    mem = svc.create_memory(p, sid, MemoryCreateParams(path="/x", content="1"), "full")
    with pytest.raises(MemoryPathConflict):
        svc.create_memory(p, sid, MemoryCreateParams(path="/x", content="2"), "full")
    svc.update_memory(p, sid, str(mem["id"]), MemoryUpdateParams(path="/y"), "full")
    assert _paths(svc, p, sid) == [("memory", "/y")]
    svc.create_memory(p, sid, MemoryCreateParams(path="/x", content="3"), "full")
    assert _paths(svc, p, sid) == [("memory", "/x"), ("memory", "/y")]
    # a path entry left by a write that did not finish is taken over
    resource_store.delete("memory", p.workspace_id, str(mem["id"]))
    svc.create_memory(p, sid, MemoryCreateParams(path="/y", content="4"), "full")
    # deleting the store removes memories, path entries and versions
    svc.delete(p.workspace_id, sid)
    for kind in ("memory", "memory_path", "memory_version"):
        rows, _ = resource_store.list_records(kind, p.workspace_id, ListQuery(limit=100, include_archived=True))
        assert rows == [], kind


def test_a_create_that_fails_midway_leaves_no_path_entry(
    resource_store: ResourceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a memory id that is taken already (any write of the create failing after the path's would do)
    svc, p, sid = _setup(resource_store)
    taken = f"mem_{uuid.uuid4().hex}"
    resource_store.insert(Record("memory", p.workspace_id, taken, {"id": taken, "path": "/elsewhere"}, EPOCH))
    monkeypatch.setattr(
        "managed_agents.services.memory_stores.new_id",
        lambda kind: taken if kind == "memory" else f"memver_{uuid.uuid4().hex}",
    )
    # When a memory is created, it fails
    with pytest.raises(MemoryPathConflict):
        svc.create_memory(p, sid, MemoryCreateParams(path="/notes.md", content="x"), "full")
    # Then nothing of it was written: no path entry (an orphan), no version
    assert (
        resource_store.list_records("memory_path", p.workspace_id, ListQuery(limit=10, include_archived=True))[0] == []
    )
    assert (
        resource_store.list_records("memory_version", p.workspace_id, ListQuery(limit=10, include_archived=True))[0]
        == []
    )
