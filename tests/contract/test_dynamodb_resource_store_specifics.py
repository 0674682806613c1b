"""What only the DynamoDB resource store has: its access paths (no Scan, one Query per page), compression, limits."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from managed_agents.adapters.aws.dynamodb_resource_store import (
    LOOKUPS,
    PK,
    SPARSE_LOOKUPS,
    TTL_ATTRIBUTE,
    DynamoDbResourceStore,
    direct_key,
    item_key,
    lookup_key,
)
from managed_agents.domain.clock import rfc3339
from managed_agents.domain.errors import RequestTooLarge
from managed_agents.ports import ListQuery, Record
from stacks.config import RESOURCES_TTL_ATTRIBUTE

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def calls(dynamodb_resource_store: DynamoDbResourceStore) -> Iterator[list[str]]:
    """The DynamoDB operations the store makes, by name."""
    seen: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        seen.append(event_name.rsplit(".", 1)[-1])

    events = dynamodb_resource_store.dynamodb.meta.events
    events.register("before-call.dynamodb.*", record)
    yield seen
    events.unregister("before-call.dynamodb.*", record)


def _rec(kind: str, ws: str, i: int = 0, **attrs: str | int | None) -> Record:
    rid = f"{kind}_{uuid.uuid4().hex}"
    return Record(kind, ws, rid, {"id": rid}, T0 + timedelta(seconds=i), attrs=attrs)


def test_an_unfiltered_page_is_one_query_and_one_batch_read_and_nothing_scans(
    dynamodb_resource_store: DynamoDbResourceStore, calls: list[str]
) -> None:
    # Given 30 environments
    store, ws = dynamodb_resource_store, "wrkspc_a"
    for i in range(30):
        store.insert(_rec("environment", ws, i))
    calls.clear()
    # When three pages are listed with include_archived (nothing to filter)
    q = ListQuery(limit=10, include_archived=True)
    for _ in range(3):
        rows, _more = store.list_records("environment", ws, q)
        q = ListQuery(limit=10, include_archived=True, cursor=(rfc3339(rows[-1].created_at), rows[-1].id))
    # Then each page took exactly one Query of the index and one consistent read of its rows
    assert calls == ["Query", "BatchGetItem"] * 3


def test_every_port_call_is_a_key_read_a_conditional_write_or_a_query(
    dynamodb_resource_store: DynamoDbResourceStore, calls: list[str]
) -> None:
    store, ws = dynamodb_resource_store, "wrkspc_b"
    rec = _rec("session", ws, status="idle", agent_id="agent_1")
    store.insert(rec)
    store.get("session", ws, rec.id)
    store.get_by_id("session", rec.id)
    store.replace(rec, expected_rev=1)
    store.list_records("session", ws, ListQuery(equals={"agent_id": "agent_1"}))
    store.list_records("session", ws, ListQuery(any_of={"status": ("idle",)}))
    store.find("session", "status", ["idle", "running"])
    store.delete("session", ws, rec.id)
    assert set(calls) <= {"PutItem", "GetItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"}
    assert "Scan" not in calls
    # every list and find: one Query on an index plus one consistent BatchGetItem of its hits
    assert calls.count("BatchGetItem") == 3


def test_the_time_index_holds_what_lists_filter_on_and_no_document(
    dynamodb_resource_store: DynamoDbResourceStore,
) -> None:
    """A write of a record's document alone does not rewrite its entry in the by_time index (with the document
    projected, every session update cost DynamoDB as much again as the item's own write)."""
    store, ws = dynamodb_resource_store, "wrkspc_p"
    rec = _rec("session", ws, status="idle")
    rec.doc["usage"] = {"input_tokens": 1}
    store.insert(rec)
    entries = store.dynamodb.query(
        TableName=store.table_name,
        IndexName="by_time",
        KeyConditionExpression="list_pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"session#{ws}"}},
    )["Items"]
    assert len(entries) == 1
    assert set(entries[0]) == {PK, "list_pk", "list_sk", "archived", "attrs"}


def test_a_filtered_list_reads_only_the_rows_its_index_entries_match(
    dynamodb_resource_store: DynamoDbResourceStore,
) -> None:
    # Given 28 archived environments and 4 live ones among them
    store, ws = dynamodb_resource_store, "wrkspc_f"
    live = set()
    for i in range(32):
        rec = _rec("environment", ws, i, state="x" if i % 8 else "y")
        rec.archived = i % 8 != 0
        store.insert(rec)
        if not rec.archived:
            live.add(rec.id)
    read: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        read.extend(len(t["Keys"]) for t in params["RequestItems"].values())

    events = store.dynamodb.meta.events
    events.register("provide-client-params.dynamodb.BatchGetItem", record)
    try:
        # When the live ones are listed two at a time (archived ones filtered out), then filtered on an attribute
        first, more = store.list_records("environment", ws, ListQuery(limit=2))
        second, more2 = store.list_records(
            "environment", ws, ListQuery(limit=2, cursor=(rfc3339(first[-1].created_at), first[-1].id))
        )
        only_y, _ = store.list_records("environment", ws, ListQuery(limit=10, equals={"state": "y"}))
    finally:
        events.unregister("provide-client-params.dynamodb.BatchGetItem", record)
    # Then the pages hold the live rows, newest first, and only those rows (and one to tell "more") were read
    assert {r.id for r in first + second} == live and more and not more2
    assert {r.id for r in only_y} == live
    assert read == [3, 2, 4]


def test_find_on_an_attribute_without_an_index_is_refused(dynamodb_resource_store: DynamoDbResourceStore) -> None:
    with pytest.raises(ValueError, match=r"session\.agent_version is not a lookup attribute"):
        dynamodb_resource_store.find("session", "agent_version", ["1"])


def test_too_many_lookup_attributes_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 4 lookup attributes"):
        DynamoDbResourceStore(table_name="t", lookups={"session": ("a", "b", "c", "d", "e")})
    with pytest.raises(ValueError, match=r"sparse lookup session\.e is not a lookup attribute"):
        DynamoDbResourceStore(table_name="t", lookups={"session": ("a",)}, sparse={("session", "e"): frozenset()})


def test_the_work_state_index_holds_live_items_only(
    dynamodb_resource_store: DynamoDbResourceStore, calls: list[str]
) -> None:
    # Given a live work item and a stopped one
    store, ws = dynamodb_resource_store, "wrkspc_w"
    live, stopped = _rec("work", ws, 0, state="active"), _rec("work", ws, 1, state="stopped")
    store.insert(live)
    store.insert(stopped)

    def state_key(rec: Record) -> object:
        item = store.dynamodb.get_item(TableName=store.table_name, Key={PK: {"S": item_key("work", rec.id)}})["Item"]
        return item.get(lookup_key(LOOKUPS["work"].index("state") + 1))

    # Then only the live one carries the state index key, and it loses it when it stops
    assert state_key(live) == {"S": "work#state#s:active"}
    assert state_key(stopped) is None
    store.replace(Record("work", ws, live.id, live.doc, live.created_at, attrs={"state": "stopped"}), expected_rev=1)
    assert state_key(live) is None
    # And the reaper's find is Queries of the index, never a Scan; a value the index leaves out is refused
    calls.clear()
    assert store.find("work", "state", ["starting", "active", "stopping"]) == []
    assert set(calls) <= {"Query", "BatchGetItem"} and calls.count("Query") == 3
    with pytest.raises(ValueError, match=r"work\.state is a sparse lookup .*'stopped'"):
        store.find("work", "state", ["active", "stopped"])
    # And a list filtered on an unindexed value reads the workspace's time index instead
    rows, _ = store.list_records("work", ws, ListQuery(equals={"state": "stopped"}))
    assert sorted(r.id for r in rows) == sorted([live.id, stopped.id])


def test_sparse_work_states_are_the_work_services_live_states() -> None:
    from managed_agents.services.work import LEASED, LIVE

    assert SPARSE_LOOKUPS[("work", "state")] == frozenset(LIVE) and set(LEASED) <= set(LIVE)


def test_large_documents_are_stored_compressed(dynamodb_resource_store: DynamoDbResourceStore) -> None:
    store, ws = dynamodb_resource_store, "wrkspc_c"
    small = _rec("agent", ws)
    big = _rec("agent", ws, 1)
    big.doc["system"] = "Be concise. " * 20_000  # 240 KB
    store.insert(small)
    store.insert(big)

    def item(rec: Record) -> dict[str, Any]:
        out = store.dynamodb.get_item(TableName=store.table_name, Key={PK: {"S": item_key("agent", rec.id)}})
        return dict(out["Item"])

    assert "doc" in item(small) and "doc_z" not in item(small)
    assert "doc_z" in item(big) and "doc" not in item(big)
    assert len(item(big)["doc_z"]["B"]) < 20_000
    # shrinking it again stores it plainly, and drops the compressed copy
    big.doc["system"] = "short"
    store.replace(big, expected_rev=1)
    assert "doc" in item(big) and "doc_z" not in item(big)
    assert store.get("agent", ws, big.id) is not None


def test_a_document_too_large_even_compressed_is_refused(dynamodb_resource_store: DynamoDbResourceStore) -> None:
    store, ws = dynamodb_resource_store, "wrkspc_d"
    rec = _rec("agent", ws)
    rec.doc["blob"] = os.urandom(400_000).hex()  # incompressible 800 KB
    with pytest.raises(RequestTooLarge, match="too large to store"):
        store.insert(rec)
    assert store.get_by_id("agent", rec.id) is None


def test_ids_and_workspaces_with_a_separator_in_the_kind_or_workspace_are_refused(
    dynamodb_resource_store: DynamoDbResourceStore,
) -> None:
    with pytest.raises(ValueError, match="free of '#'"):
        dynamodb_resource_store.insert(_rec("agent", "wrkspc#x"))


def test_expiring_records_carry_the_tables_ttl_attribute(dynamodb_resource_store: DynamoDbResourceStore) -> None:
    # Given a record that expires
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    rec = Record("idempotency_key", "wrkspc_ttl", "idem_1", {"id": "idem_1"}, datetime(2029, 1, 1, tzinfo=UTC))
    rec.expires_at = expires
    dynamodb_resource_store.insert(rec)
    # When the raw item is read
    item = dynamodb_resource_store.dynamodb.get_item(
        TableName=dynamodb_resource_store.table_name, Key={"pk": {"S": "idempotency_key#idem_1"}}
    )["Item"]
    # Then it holds the epoch seconds in the attribute the stack enables TTL on, so DynamoDB removes it itself
    assert TTL_ATTRIBUTE == RESOURCES_TTL_ATTRIBUTE
    assert item[TTL_ATTRIBUTE] == {"N": str(int(expires.timestamp()))}


def test_a_key_hash_is_found_with_consistent_reads_even_when_the_index_lags(
    dynamodb_resource_store: DynamoDbResourceStore, calls: list[str]
) -> None:
    # Given an API key record, written with the item that addresses it by its hash, in one transaction
    store, ws, digest = dynamodb_resource_store, "wrkspc_k", f"h_{uuid.uuid4().hex}"
    key = _rec("api_key", ws, hash=digest)
    store.insert(key)
    assert calls[-1] == "TransactWriteItems"
    # (the lookup index has not caught up yet: the record's index key is gone from the index's point of view)
    _drop_index_key(store, key, slot=1)
    calls.clear()
    # When the key is looked up by its hash
    found = store.find("api_key", "hash", [digest])
    # Then it is found without asking the index: consistent reads of the hash's item and of the record
    assert [r.id for r in found] == [key.id]
    assert calls == ["BatchGetItem", "BatchGetItem"]
    item = store.dynamodb.get_item(TableName=store.table_name, Key={PK: {"S": direct_key("api_key", "hash", digest)}})
    assert item["Item"]["target"] == {"S": item_key("api_key", key.id)}


def test_a_key_written_before_its_hash_item_existed_is_found_through_the_index(
    dynamodb_resource_store: DynamoDbResourceStore,
) -> None:
    # Given a key record as an older version wrote it: no item addressed by its hash
    store, ws, digest = dynamodb_resource_store, "wrkspc_old", f"h_{uuid.uuid4().hex}"
    key = _rec("api_key", ws, hash=digest)
    store.insert(key)
    store.dynamodb.delete_item(TableName=store.table_name, Key={PK: {"S": direct_key("api_key", "hash", digest)}})
    # Then it is still found, through the lookup index as before
    assert [r.id for r in store.find("api_key", "hash", [digest])] == [key.id]


def test_the_hash_item_is_deleted_with_its_key_and_never_listed(dynamodb_resource_store: DynamoDbResourceStore) -> None:
    store, ws, digest = dynamodb_resource_store, "wrkspc_del", f"h_{uuid.uuid4().hex}"
    key = _rec("api_key", ws, hash=digest)
    store.insert(key)
    # (the hash's item is in no index: listing keys lists the key once)
    rows, _ = store.list_records("api_key", ws, ListQuery(limit=10, include_archived=True))
    assert [r.id for r in rows] == [key.id]
    assert store.delete("api_key", ws, key.id)
    pk = direct_key("api_key", "hash", digest)
    assert "Item" not in store.dynamodb.get_item(TableName=store.table_name, Key={PK: {"S": pk}})


def _drop_index_key(store: DynamoDbResourceStore, rec: Record, *, slot: int) -> None:
    store.dynamodb.update_item(
        TableName=store.table_name,
        Key={PK: {"S": item_key(rec.kind, rec.id)}},
        UpdateExpression="REMOVE #lk",
        ExpressionAttributeNames={"#lk": lookup_key(slot)},
    )
