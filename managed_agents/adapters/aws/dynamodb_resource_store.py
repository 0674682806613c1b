"""DynamoDB adapter of the ResourceStore port: agents, versions, environments, sessions, keys, workspaces.

One table (on-demand billing), partition key `pk` = `"{kind}#{id}"` (S), no sort key. An item holds `kind`,
`id`, `workspace_id`, `created_at` (RFC 3339, fixed-width UTC, so it sorts as a string), `rev` (N), `archived`
(BOOL), `attrs` (compact JSON, the exact `Record.attrs`) and the document, as compact JSON in `doc` (S) or, when
that is larger than `COMPRESS_ABOVE_BYTES`, zlib-compressed in `doc_z` (B): an agent's system prompt alone may be
100,000 characters and an item holds at most 400 KB. Plus the index keys below, written from the record.

Every call of the port is a GetItem, a conditional write or a Query (no Scan), because the two access paths
that are not "by id" each have an index whose partition holds exactly the rows the call asks for:

* `get` / `get_by_id` / `insert` / `replace` / `delete`: the item by its key. `get` also checks the workspace,
  so a record of another workspace is "not found". `insert` is a put conditioned on `attribute_not_exists(pk)`
  (an existing id is `Conflict`, as the SQLite adapter's primary key makes it); `replace` is an UpdateItem
  conditioned on the workspace and `rev = expected_rev` (else `StaleRevision`), and leaves `created_at`,
  `workspace_id` and the list keys alone, as the SQLite UPDATE does; `delete` is conditioned on the workspace.
* GSI `by_time` (projection INCLUDE `archived`, `attrs`): partition `list_pk` = `"{kind}#{workspace_id}"`, sort
  `list_sk` = `"{created_at}#{id}"`. Because the timestamp is fixed-width, string order on `list_sk` is the
  (created_at, id) order the SQLite index gives, so the keyset cursor, `created_at` ranges and asc/desc become one
  key condition on `list_sk`; a page is one Query of the index entries (read ahead when filtered: the entries carry
  what the filters look at) and a consistent BatchGetItem of the `limit + 1` rows that match. The index holds no
  document: a record's update rewrites its entry only when its `archived` or `attrs` change (a session's status),
  not on every write of the document (which cost as much again as the item's own write: about half of what a
  session costs in DynamoDB writes).
* GSIs `lookup1..4` (projection KEYS_ONLY, sort key `scope_sk` = `"{workspace_id}#{created_at}#{id}"`):
  partition `lk{n}` = `"{kind}#{attr}#{s:|n:}{value}"` for the n-th attribute `domain/lookups.py` declares for the kind
  (session status, agent and environment ids, API and environment key hashes, the agent of a version, a work
  item's session, token hash, environment and state). A lookup listed in `SPARSE_LOOKUPS` is written only for the
  values listed there (a work item's state while it is live): the index then holds only the items a caller looks
  for (the work reaper's live items), not every stopped item ever, and `find` of any other value is refused
  (ValueError) instead of silently finding nothing; a list filtered on such a value reads another index instead.
  `find` is one Query per
  value (any workspace) and a consistent BatchGetItem of the hits; `list_records` with an `equals` filter on a
  looked-up attribute queries the `{workspace_id}#` range of that partition the same way, in (created_at, id)
  order. Keys-only projections are rewritten only when their key changes (a session's status), not on every
  update of the document. The value carries its type (`s:`/`n:`), so `"1"` never matches `1`, as in SQLite.

Filters the chosen index does not cover (`include_archived=False`, other `equals`, `any_of`) are applied to the
rows read, in Python with SQLite's typed equality, reading ahead when they are present; they cost reads, not
correctness. `find` on an attribute that `LOOKUPS` does not declare raises ValueError: it would need a Scan.

GSIs are eventually consistent: a list or find issued right after a write may miss it for a moment (the rows it
returns are re-read consistently and filtered again, so they are never staler than the index says). Where that
would refuse a request, `find` does not use an index: the attributes in `DIRECT_LOOKUPS` (an API key's and an
environment key's hash, which a client sends right after the key was created) also get an item of their own, `pk` =
`"{kind}_{attr}#{value}"` (e.g. `api_key_hash#<sha256>`) holding the record's key in `target`, written in the same
transaction as the record (insert, replace) and deleted with it; `find` reads those items and the records with
consistent reads (BatchGetItem). A record written before these items existed has none: `find` then queries the
lookup index as before (eventually consistent).

Low-cardinality lookups (`session` `status`) put many items in one index partition; shard the value if its write
rate ever needs it.
"""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from managed_agents.adapters.aws.dynamodb_event_store import webhook_item
from managed_agents.domain.clock import parse_rfc3339, rfc3339
from managed_agents.domain.errors import Conflict, RequestTooLarge, ServiceUnavailable, StaleRevision
from managed_agents.domain.events import JsonObject
from managed_agents.domain.lookups import LOOKUPS, SPARSE_LOOKUPS
from managed_agents.ports import ListQuery, OutboxEntry, Record

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, QueryOutputTypeDef

    _Item = dict[str, AttributeValueTypeDef]

PK = "pk"
LIST_INDEX = "by_time"
LIST_PK = "list_pk"
LIST_SK = "list_sk"
SCOPE_SK = "scope_sk"
LOOKUP_SLOTS = 4
# Lookups `find` answers with consistent reads through an item addressed by the value (see the module doc). The
# attribute must also be a lookup (domain/lookups.py: records without the item are found through its index).
# Persisted key format.
DIRECT_LOOKUPS: frozenset[tuple[str, str]] = frozenset({("api_key", "hash"), ("environment_key", "hash")})
DIRECT_TARGET = "target"
COMPRESS_ABOVE_BYTES = 32_000
MAX_ITEM_BYTES = 390_000  # DynamoDB's 400 KB item limit, less room for the keys and attribute names

LIST_INCLUDES = ("archived", "attrs")  # what the by_time index projects besides the keys: what list filters look at
_UPPER = "$"  # sorts right after "#", the separator: every key "{x}#..." is < "{x}$"
_BATCH_GET_MAX = 100
_READ_AHEAD = 100
_RECORD_ATTRS = "#pk, #kind, #id, #ws, #created, #rev, #archived, #attrs, #doc, #doc_z, #expires"
_RECORD_NAMES = {
    "#pk": PK,
    "#kind": "kind",
    "#id": "id",
    "#ws": "workspace_id",
    "#created": "created_at",
    "#rev": "rev",
    "#archived": "archived",
    "#attrs": "attrs",
    "#doc": "doc",
    "#doc_z": "doc_z",
    "#expires": "expires_at",
}
# Record.expires_at as epoch seconds (N): the attribute the table's TTL is enabled on (stacks/config.py
# RESOURCES_TTL_ATTRIBUTE), so DynamoDB deletes expired records itself (within a day or two of expiry).
TTL_ATTRIBUTE = "expires_at"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def lookup_index(slot: int) -> str:
    """The name of the n-th lookup GSI (1-based) and of its partition key attribute, `lk{n}`."""
    return f"lookup{slot}"


def lookup_key(slot: int) -> str:
    return f"lk{slot}"


def create_resources_table(client: DynamoDBClient, table_name: str) -> None:
    """Create the resources table with its GSIs (the schema the CDK stack defines too) and wait until it is active."""
    lookups = [
        {
            "IndexName": lookup_index(n),
            "KeySchema": [
                {"AttributeName": lookup_key(n), "KeyType": "HASH"},
                {"AttributeName": SCOPE_SK, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
        for n in range(1, LOOKUP_SLOTS + 1)
    ]
    key_names = [PK, LIST_PK, LIST_SK, SCOPE_SK, *(lookup_key(n) for n in range(1, LOOKUP_SLOTS + 1))]
    client.create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in key_names],
        KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": LIST_INDEX,
                "KeySchema": [
                    {"AttributeName": LIST_PK, "KeyType": "HASH"},
                    {"AttributeName": LIST_SK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(LIST_INCLUDES)},
            },
            *lookups,  # type: ignore[list-item]
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def item_key(kind: str, id_: str) -> str:
    return f"{kind}#{id_}"


def direct_key(kind: str, attr: str, value: str | int) -> str:
    """The key of the item that addresses a record by a DIRECT_LOOKUPS value: `api_key_hash#<sha256>`."""
    return f"{kind}_{attr}#{value}"


def _typed(value: str | int) -> str:
    # bool is an int, as SQLite's json_extract makes JSON true 1
    return f"n:{int(value)}" if isinstance(value, int) else f"s:{value}"


def _same(stored: object, wanted: str | int) -> bool:
    """SQLite's comparison of a json_extract result with a bound parameter: typed, so "1" != 1."""
    if stored is None:
        return False
    if isinstance(stored, int) and isinstance(wanted, int):
        return int(stored) == int(wanted)
    return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted


def _matches(rec: Record, query: ListQuery) -> bool:
    if rec.archived and not query.include_archived:
        return False
    for attr, value in query.equals.items():
        if not _same(rec.attrs.get(attr), value):
            return False
    for attr, values in query.any_of.items():
        stored = rec.attrs.get(attr)
        if not any(_same(stored, v) for v in values):
            return False
    return True


def _entry_matches(entry: Mapping[str, Any], query: ListQuery) -> bool:
    """`_matches` on a by_time index entry: its projected `archived` and `attrs` (the row read after is checked
    again: the index may lag)."""
    archived = bool(entry.get("archived", {}).get("BOOL", False))
    attrs = json.loads(entry["attrs"]["S"]) if "attrs" in entry else {}
    return _matches(Record("", "", "", {}, datetime.min.replace(tzinfo=UTC), archived=archived, attrs=attrs), query)


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """botocore failures become the platform's errors at the adapter boundary."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        if code == "ValidationException" and "size" in error.get("Message", "").lower():
            raise RequestTooLarge(f"resource store {action} failed: the record is too large to store") from exc
        raise ServiceUnavailable(f"resource store {action} failed: {code}") from exc
    except (BotoConnectionError, HTTPClientError) as exc:
        raise ServiceUnavailable(f"resource store {action} failed: {type(exc).__name__}") from exc


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _first_condition_failed(exc: ClientError) -> bool:
    """A cancelled transaction whose first item (the record) failed its condition."""
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or [{}]
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"


class DynamoDbResourceStore:
    def __init__(
        self,
        *,
        table_name: str,
        dynamodb_client: DynamoDBClient | None = None,
        lookups: Mapping[str, tuple[str, ...]] = LOOKUPS,
        sparse: Mapping[tuple[str, str], frozenset[str | int]] = SPARSE_LOOKUPS,
        direct: frozenset[tuple[str, str]] = DIRECT_LOOKUPS,
        outbox_table: str | None = None,
    ) -> None:
        """`outbox_table`: the events table, where `write_all` puts the webhook items of its `outbox`
        (dynamodb_event_store.webhook_item); None: a write_all with an outbox is refused (ValueError)."""
        for kind, attrs in lookups.items():
            if len(attrs) > LOOKUP_SLOTS:
                raise ValueError(f"{kind}: at most {LOOKUP_SLOTS} lookup attributes (one GSI each), got {attrs}")
        for kind, attr in sparse:
            if attr not in lookups.get(kind, ()):
                raise ValueError(f"sparse lookup {kind}.{attr} is not a lookup attribute")
        for kind, attr in direct:
            if kind in lookups and attr not in lookups[kind]:
                raise ValueError(f"direct lookup {kind}.{attr} is not a lookup attribute")
        self.table_name = table_name
        self.outbox_table = outbox_table
        self.lookups = dict(lookups)
        self.sparse = dict(sparse)
        self.direct = direct
        self.query_calls = 0  # DynamoDB Query calls made so far (benchmarks report queries per page)
        self._ddb = dynamodb_client
        self._lock = threading.Lock()

    @property
    def dynamodb(self) -> DynamoDBClient:
        if self._ddb is None:
            with self._lock:
                if self._ddb is None:
                    import boto3

                    self._ddb = boto3.client("dynamodb")
        return self._ddb

    # -- the port ------------------------------------------------------------------------------------------------

    def insert(self, rec: Record) -> None:
        put, pointers = self._insert_ops(rec)
        with _translated("insert"):
            try:
                if pointers:
                    self._transact([{"Put": put}, *({"Put": p} for p in pointers)])
                else:
                    self.dynamodb.put_item(**put)
            except ClientError as exc:
                if _condition_failed(exc) or _first_condition_failed(exc):
                    raise Conflict(f"{rec.kind} {rec.id} already exists") from exc
                raise

    def _insert_ops(self, rec: Record) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        for name, value in (("kind", rec.kind), ("workspace_id", rec.workspace_id)):
            if "#" in value or not value:
                raise ValueError(f"{name} {value!r} must be non-empty and free of '#' (it is part of index keys)")
        created = rfc3339(rec.created_at)
        item: _Item = {
            PK: {"S": item_key(rec.kind, rec.id)},
            "kind": {"S": rec.kind},
            "id": {"S": rec.id},
            "workspace_id": {"S": rec.workspace_id},
            "created_at": {"S": created},
            "rev": {"N": str(rec.rev)},
            "archived": {"BOOL": rec.archived},
            "attrs": {"S": _dumps(rec.attrs)},
            LIST_PK: {"S": f"{rec.kind}#{rec.workspace_id}"},
            LIST_SK: {"S": f"{created}#{rec.id}"},
            SCOPE_SK: {"S": f"{rec.workspace_id}#{created}#{rec.id}"},
        }
        doc_name, body = self._doc(rec)
        item[doc_name] = body
        if rec.expires_at is not None:
            item[TTL_ATTRIBUTE] = {"N": str(int(rec.expires_at.timestamp()))}
        for slot, lookup in self._lookup_values(rec).items():
            if lookup is not None:
                item[lookup_key(slot)] = {"S": lookup}
        put: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": PK},
        }
        return put, self._direct_items(rec)

    def get(self, kind: str, workspace_id: str, id_: str) -> Record | None:
        rec = self.get_by_id(kind, id_)
        return rec if rec is not None and rec.workspace_id == workspace_id else None

    def get_by_id(self, kind: str, id_: str) -> Record | None:
        with _translated("get"):
            out = self.dynamodb.get_item(
                TableName=self.table_name,
                Key={PK: {"S": item_key(kind, id_)}},
                ConsistentRead=True,
                ProjectionExpression=_RECORD_ATTRS,
                ExpressionAttributeNames=_RECORD_NAMES,
            )
        item = out.get("Item")
        return None if item is None else self._record(item)

    def replace(self, rec: Record, *, expected_rev: int) -> Record:
        new, update, pointers = self._replace_ops(rec, expected_rev)
        with _translated("replace"):
            try:
                if pointers:
                    self._transact([{"Update": update}, *({"Put": p} for p in pointers)])
                else:
                    self.dynamodb.update_item(**update)
            except ClientError as exc:
                if _condition_failed(exc) or _first_condition_failed(exc):
                    raise StaleRevision(f"{rec.kind} {rec.id} changed since revision {expected_rev}") from exc
                raise
        return new

    def _replace_ops(self, rec: Record, expected_rev: int) -> tuple[Record, dict[str, Any], list[dict[str, Any]]]:
        new = Record(
            rec.kind,
            rec.workspace_id,
            rec.id,
            rec.doc,
            rec.created_at,
            expected_rev + 1,
            rec.archived,
            rec.attrs,
            rec.expires_at,
        )
        name, body = self._doc(new)
        stale = "doc_z" if name == "doc" else "doc"
        names: dict[str, str] = {
            "#pk": PK,
            "#ws": "workspace_id",
            "#rev": "rev",
            "#archived": "archived",
            "#attrs": "attrs",
            "#body": name,
            "#stale": stale,
            "#expires": TTL_ATTRIBUTE,
        }
        values: _Item = {
            ":ws": {"S": rec.workspace_id},
            ":expected": {"N": str(expected_rev)},
            ":rev": {"N": str(new.rev)},
            ":archived": {"BOOL": new.archived},
            ":attrs": {"S": _dumps(new.attrs)},
            ":body": body,
        }
        sets = ["#rev = :rev", "#archived = :archived", "#attrs = :attrs", "#body = :body"]
        removes = ["#stale"]
        if new.expires_at is None:
            removes.append("#expires")
        else:
            values[":expires"] = {"N": str(int(new.expires_at.timestamp()))}
            sets.append("#expires = :expires")
        for slot, value in self._lookup_values(new).items():
            names[f"#lk{slot}"] = lookup_key(slot)
            if value is None:
                removes.append(f"#lk{slot}")
            else:
                values[f":lk{slot}"] = {"S": value}
                sets.append(f"#lk{slot} = :lk{slot}")
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {PK: {"S": item_key(rec.kind, rec.id)}},
            "UpdateExpression": f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            "ConditionExpression": "attribute_exists(#pk) AND #ws = :ws AND #rev = :expected",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        # (the items of a changed value are written again; one of a value the record no longer has is left, and
        # `find` ignores it: it checks the record's current attribute)
        return new, update, self._direct_items(new)

    def delete(self, kind: str, workspace_id: str, id_: str) -> bool:
        delete, pointers = self._delete_ops(kind, workspace_id, id_)
        with _translated("delete"):
            try:
                if pointers:
                    self._transact([{"Delete": delete}, *({"Delete": p} for p in pointers)])
                else:
                    self.dynamodb.delete_item(**delete)
            except ClientError as exc:
                if _condition_failed(exc) or _first_condition_failed(exc):
                    return False
                raise
        return True

    def _delete_ops(self, kind: str, workspace_id: str, id_: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        delete: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {PK: {"S": item_key(kind, id_)}},
            "ConditionExpression": "attribute_exists(#pk) AND #ws = :ws",
            "ExpressionAttributeNames": {"#pk": PK, "#ws": "workspace_id"},
            "ExpressionAttributeValues": {":ws": {"S": workspace_id}},
        }
        current = self.get_by_id(kind, id_) if any(k == kind for k, _ in self.direct) else None
        pointers = [
            {"TableName": self.table_name, "Key": {PK: p["Item"][PK]}}
            for p in (self._direct_items(current) if current is not None else [])
        ]
        return delete, pointers

    def write_all(
        self,
        *,
        inserts: Sequence[Record] = (),
        replaces: Sequence[tuple[Record, int]] = (),
        deletes: Sequence[tuple[str, str, str]] = (),
        outbox: Sequence[OutboxEntry] = (),
    ) -> None:
        """One transaction (TransactWriteItems): every insert (Conflict when one exists), replace (StaleRevision when
        its revision moved) and delete (StaleRevision when it is gone), and a webhook item in the events table per
        `outbox` entry, or none of them."""
        items: list[dict[str, Any]] = []
        failures: list[Exception | None] = []
        for rec in inserts:
            put, pointers = self._insert_ops(rec)
            items += [{"Put": put}, *({"Put": p} for p in pointers)]
            failures += [Conflict(f"{rec.kind} {rec.id} already exists")] + [None] * len(pointers)
        for rec, expected in replaces:
            _, update, pointers = self._replace_ops(rec, expected)
            items += [{"Update": update}, *({"Put": p} for p in pointers)]
            failures += [StaleRevision(f"{rec.kind} {rec.id} changed since revision {expected}")]
            failures += [None] * len(pointers)
        for kind, ws, id_ in deletes:
            delete, pointers = self._delete_ops(kind, ws, id_)
            items += [{"Delete": delete}, *({"Delete": p} for p in pointers)]
            failures += [StaleRevision(f"{kind} {id_} is gone")] + [None] * len(pointers)
        if outbox:
            if self.outbox_table is None:
                raise ValueError("this resource store has no outbox table: it cannot record webhook events")
            items += [{"Put": {"TableName": self.outbox_table, "Item": webhook_item(e)}} for e in outbox]
            failures += [None] * len(outbox)
        if not items:
            return
        with _translated("write"):
            try:
                self._transact(items)
            except ClientError as exc:
                reasons = exc.response.get("CancellationReasons") or []
                for reason, failure in zip(reasons, failures, strict=False):
                    if reason.get("Code") == "ConditionalCheckFailed" and failure is not None:
                        raise failure from exc
                raise

    def list_records(self, kind: str, workspace_id: str, query: ListQuery) -> tuple[list[Record], bool]:
        if query.limit <= 0:
            return [], False
        slots = [n for n in (self._slot(kind, attr, value) for attr, value in query.equals.items()) if n is not None]
        slot = slots[0] if slots else None
        if slot is None:
            index, pk_name, pk_value, sk_name, prefix = LIST_INDEX, LIST_PK, f"{kind}#{workspace_id}", LIST_SK, ""
        else:
            attr = self.lookups[kind][slot - 1]
            pk_value = f"{kind}#{attr}#{_typed(query.equals[attr])}"
            index, pk_name, sk_name, prefix = lookup_index(slot), lookup_key(slot), SCOPE_SK, f"{workspace_id}#"
        bounds = self._bounds(query, prefix)
        if bounds is None:
            return [], False
        condition, values, exclusive = bounds
        values[":pk"] = {"S": pk_value}
        names = {"#pk": pk_name}
        if condition:
            names["#sk"] = sk_name
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": f"#pk = :pk AND {condition}" if condition else "#pk = :pk",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": query.order != "desc",
        }
        filtered = slot is not None or not query.include_archived or bool(query.equals) or bool(query.any_of)
        wanted = query.limit + 1
        out: list[Record] = []
        while len(out) < wanted:
            remaining = wanted - len(out)
            limit = max(remaining, _READ_AHEAD) if filtered else remaining
            page = self._query(Limit=min(limit, _BATCH_GET_MAX) if slot is not None else limit, **kwargs)
            items = [i for i in page["Items"] if i[sk_name]["S"] not in exclusive]
            if slot is None:  # the entries carry what the filters look at: read only the rows that match
                keys = [i[PK]["S"] for i in items if _entry_matches(i, query)]
                while keys and len(out) < wanted:
                    chunk, keys = keys[: wanted - len(out)], keys[wanted - len(out) :]
                    out.extend(r for r in self._batch_get(chunk) if _matches(r, query))
            else:
                rows = [r for r in self._batch_get([i[PK]["S"] for i in items]) if r.workspace_id == workspace_id]
                out.extend(r for r in rows if _matches(r, query))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out[: query.limit], len(out) > query.limit

    def find(self, kind: str, attr: str, values: Sequence[str]) -> list[Record]:
        if not values:
            return []
        slot = self._slot(kind, attr)
        if slot is None:
            raise ValueError(f"{kind}.{attr} is not a lookup attribute of the DynamoDB resource store (see LOOKUPS)")
        unindexed = [v for v in values if not self._indexed(kind, attr, v)]
        if unindexed:
            raise ValueError(
                f"{kind}.{attr} is a sparse lookup of the DynamoDB resource store: {unindexed!r} not indexed (only "
                f"{sorted(map(str, self.sparse[(kind, attr)]))}, see SPARSE_LOOKUPS)"
            )
        keys: list[str] = []
        wanted = list(dict.fromkeys(values))
        if (kind, attr) in self.direct:
            found = self._direct_targets(kind, attr, wanted)
            keys.extend(found.values())
            wanted = [v for v in wanted if v not in found]  # (records older than their direct items: the index)
        for value in wanted:
            kwargs: dict[str, Any] = {
                "IndexName": lookup_index(slot),
                "KeyConditionExpression": "#pk = :pk",
                "ExpressionAttributeNames": {"#pk": lookup_key(slot)},
                "ExpressionAttributeValues": {":pk": {"S": f"{kind}#{attr}#{_typed(value)}"}},
            }
            while True:
                page = self._query(**kwargs)
                keys.extend(i[PK]["S"] for i in page["Items"])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # The index may lag: keep only rows whose fresh attribute still matches.
        return [r for r in self._batch_get(keys) if any(_same(r.attrs.get(attr), v) for v in values)]

    # -- internals -----------------------------------------------------------------------------------------------

    def _direct_items(self, rec: Record) -> list[dict[str, Any]]:
        """The Put requests of the items that address `rec` by its DIRECT_LOOKUPS values."""
        out: list[dict[str, Any]] = []
        for kind, attr in sorted(self.direct):
            value = rec.attrs.get(attr)
            if kind == rec.kind and isinstance(value, str | int):
                item: _Item = {
                    PK: {"S": direct_key(kind, attr, value)},
                    DIRECT_TARGET: {"S": item_key(rec.kind, rec.id)},
                }
                out.append({"TableName": self.table_name, "Item": item})
        return out

    def _direct_targets(self, kind: str, attr: str, values: Sequence[str]) -> dict[str, str]:
        """value -> the key of the record its direct item names, for the values that have one (consistent reads)."""
        by_key = {direct_key(kind, attr, v): v for v in values}
        out: dict[str, str] = {}
        pending = list(by_key)
        for start in range(0, len(pending), _BATCH_GET_MAX):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{PK: {"S": k}} for k in pending[start : start + _BATCH_GET_MAX]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "#pk, #target",
                    "ExpressionAttributeNames": {"#pk": PK, "#target": DIRECT_TARGET},
                }
            }
            for attempt in range(10):
                with _translated("read"):
                    batch = self.dynamodb.batch_get_item(RequestItems=request)
                for item in batch["Responses"].get(self.table_name, []):
                    out[by_key[item[PK]["S"]]] = item[DIRECT_TARGET]["S"]
                unprocessed = batch.get("UnprocessedKeys") or {}
                if not unprocessed:
                    break
                request = dict(unprocessed)
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
            else:
                raise ServiceUnavailable("resource store batch read left unprocessed keys")
        return out

    def _transact(self, items: list[dict[str, Any]]) -> None:
        self.dynamodb.transact_write_items(TransactItems=items)  # type: ignore[arg-type]

    def _slot(self, kind: str, attr: str, value: str | int | None = None) -> int | None:
        """The GSI slot of `kind.attr`; with a value, None also when a sparse lookup leaves that value out."""
        attrs = self.lookups.get(kind, ())
        if attr not in attrs or (value is not None and not self._indexed(kind, attr, value)):
            return None
        return attrs.index(attr) + 1

    def _indexed(self, kind: str, attr: str, value: object) -> bool:
        only = self.sparse.get((kind, attr))
        return only is None or (isinstance(value, str | int) and any(_same(value, v) for v in only))

    def _lookup_values(self, rec: Record) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for n, attr in enumerate(self.lookups.get(rec.kind, ()), start=1):
            value = rec.attrs.get(attr)
            indexed = value is not None and self._indexed(rec.kind, attr, value)
            out[n] = f"{rec.kind}#{attr}#{_typed(value)}" if indexed and value is not None else None
        return out

    @staticmethod
    def _doc(rec: Record) -> tuple[str, AttributeValueTypeDef]:
        raw = _dumps(rec.doc).encode()
        if len(raw) <= COMPRESS_ABOVE_BYTES:
            return "doc", {"S": raw.decode()}
        packed = zlib.compress(raw, 6)
        if len(packed) + len(_dumps(rec.attrs).encode()) > MAX_ITEM_BYTES:
            raise RequestTooLarge(
                f"{rec.kind} {rec.id} is too large to store: {len(raw)} bytes of JSON, {len(packed)} compressed "
                f"(at most {MAX_ITEM_BYTES})"
            )
        return "doc_z", {"B": packed}

    @staticmethod
    def _bounds(query: ListQuery, prefix: str) -> tuple[str, _Item, set[str]] | None:
        """The key condition on the sort key for the cursor and the created_at range, or None if it is empty.

        Returns (condition, values, exclusive), the condition "" when there is no bound. A BETWEEN is inclusive, so
        the cursor row (an exclusive bound that is an actual key) is dropped from the results afterwards.
        """
        lower: list[tuple[str, bool]] = [(prefix, True)] if prefix else []  # (key, inclusive)
        upper: list[tuple[str, bool]] = [(prefix[:-1] + _UPPER, False)] if prefix else []
        rng = query.created
        if rng.gte is not None:
            lower.append((prefix + rfc3339(rng.gte), True))
        if rng.gt is not None:
            lower.append((prefix + rfc3339(rng.gt) + _UPPER, True))
        if rng.lt is not None:
            upper.append((prefix + rfc3339(rng.lt), False))
        if rng.lte is not None:
            upper.append((prefix + rfc3339(rng.lte) + _UPPER, False))
        if query.cursor is not None:
            cursor = f"{prefix}{query.cursor[0]}#{query.cursor[1]}"
            (upper if query.order == "desc" else lower).append((cursor, False))
        # The tightest bound on each side; at equal keys the exclusive one is tighter.
        lo = max(lower, key=lambda b: (b[0], not b[1])) if lower else None
        hi = min(upper, key=lambda b: (b[0], b[1])) if upper else None
        values: _Item = {}
        exclusive: set[str] = set()
        if lo is not None and hi is not None:
            if lo[0] > hi[0] or (lo[0] == hi[0] and not (lo[1] and hi[1])):
                return None
            values[":lo"], values[":hi"] = {"S": lo[0]}, {"S": hi[0]}
            exclusive = {key for key, inclusive in (lo, hi) if not inclusive}
            return "#sk BETWEEN :lo AND :hi", values, exclusive
        if lo is not None:
            values[":lo"] = {"S": lo[0]}
            return ("#sk >= :lo" if lo[1] else "#sk > :lo"), values, exclusive
        if hi is not None:
            values[":hi"] = {"S": hi[0]}
            return ("#sk <= :hi" if hi[1] else "#sk < :hi"), values, exclusive
        return "", values, exclusive

    def _query(self, **kwargs: Any) -> QueryOutputTypeDef:
        with self._lock:
            self.query_calls += 1
        with _translated("query"):
            return self.dynamodb.query(TableName=self.table_name, **kwargs)

    def _batch_get(self, keys: Sequence[str]) -> list[Record]:
        """Consistent reads of the items, in the order of keys (missing ones, deleted meanwhile, are skipped)."""
        found: dict[str, Record] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _BATCH_GET_MAX):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{PK: {"S": k}} for k in unique[start : start + _BATCH_GET_MAX]],
                    "ConsistentRead": True,
                    "ProjectionExpression": _RECORD_ATTRS,
                    "ExpressionAttributeNames": _RECORD_NAMES,
                }
            }
            for attempt in range(10):
                with _translated("read"):
                    out = self.dynamodb.batch_get_item(RequestItems=request)
                for item in out["Responses"].get(self.table_name, []):
                    found[item[PK]["S"]] = self._record(item)
                unprocessed = out.get("UnprocessedKeys") or {}
                if not unprocessed:
                    break
                request = dict(unprocessed)
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
            else:
                raise ServiceUnavailable("resource store batch read left unprocessed keys")
        return [found[k] for k in unique if k in found]

    @staticmethod
    def _record(item: Mapping[str, Any]) -> Record:
        doc: JsonObject
        if "doc_z" in item:
            doc = json.loads(zlib.decompress(bytes(item["doc_z"]["B"])))
        else:
            doc = json.loads(item["doc"]["S"])
        created: datetime = parse_rfc3339(item["created_at"]["S"])
        return Record(
            kind=item["kind"]["S"],
            workspace_id=item["workspace_id"]["S"],
            id=item["id"]["S"],
            doc=doc,
            created_at=created,
            rev=int(item["rev"]["N"]),
            archived=bool(item["archived"]["BOOL"]),
            attrs=json.loads(item["attrs"]["S"]),
            expires_at=datetime.fromtimestamp(int(item[TTL_ATTRIBUTE]["N"]), UTC) if TTL_ATTRIBUTE in item else None,
        )
