"""DynamoDB adapter of the EventStore port; payloads too large for an item are spilled to S3.

Table (on-demand billing), partition key `session_id` (S), sort key `seq` (N):

* event items: `session_id`, `seq` (1, 2, ...), `id`, `type`, `processed_at` (RFC 3339, fixed-width UTC, so it
  sorts as a string), and either `payload` + optional `internal` (compact JSON strings) or `s3_key` when the two
  together are larger than `spill_threshold_bytes`; the S3 object `events/{session_id}/{event_id}.json` then
  holds `{"payload": ..., "internal": ...}`.
* guard items: `session_id` = `"{session_id}#id#{event_id}"`, `seq` = 0, `event_seq` = the event's seq. They make
  event ids unique per session (a conditional put per id) and serve `get` by id. They live in partitions of
  their own, so a Query on a session's partition never sees them.
* webhook items (`webhook_item`): `session_id` = `"webhook#{event id}"`, `seq` = 0, `webhook_type`, `resource_id`,
  `workspace_id`, `created_at`, optional `data` (JSON), `expires_at` (epoch seconds: the table's TTL removes them
  after `WEBHOOK_ITEM_TTL_SECONDS`). The resource store writes one in the transaction of each write that causes a
  resource's webhook event (`agent.created`, ...: ResourceStore.write_all's `outbox`), so the table's stream carries
  them to the webhook relay beside the session events (adapters/aws/webhook_queue.py). One partition each.

An append of one event (the common case: a tool result, a message, a span) is two conditional PutItem calls, one
write unit each where a transaction costs two per item: first the guard, conditioned on
`attribute_not_exists(session_id)` and pointing at the seq the writer means to take (the partition's last seq, from
a consistent read, + 1), then the event item at that seq, conditioned on `attribute_not_exists(seq)` and carrying
the writer's random token (`w`). A guard may so point at a seq that does not hold its event (its writer lost the
race for the seq or stopped between the two puts), and the rule that keeps an id at most once in the log is: a guard
is moved off seq S (a put conditioned on `event_seq = S`) only by a writer that saw S hold another event, and the
event is written only at the seq its guard points at. So:

* the event put fails (another event took the seq): the writer reads the item there (consistently); if it is its own
  event (same token: a retried call whose first response was lost) the append succeeded, if it is the same id under
  another token a rival wrote it (DuplicateEvent), else it moves its guard to the new last seq + 1 and puts again;
* the guard put fails (the id is taken): the writer reads the guard and the item at its seq; the id there is a
  duplicate; an empty seq (its writer is about to write it, or stopped) is written by this writer (whichever of them
  wins, the id is there once); another event there makes the guard an orphan, which it moves and follows.

An append of more events, or of one with webhook items (below), is one `TransactWriteItems` call, all or nothing: for
every event a put of the event item conditioned on `attribute_not_exists(seq)` and a put of its guard item conditioned
on `attribute_not_exists(session_id)` (or, to take over an orphan guard left by a one-event append, on `event_seq = S`,
S having been seen holding another event, or being the empty seq the transaction's first put takes). A writer that
lost the race to another one (an event-item condition failed) re-reads the last seq and tries again, so the sequence
stays gapless with any number of concurrent writers. A guard whose event is in the log is a duplicate id:
`DuplicateEvent`, nothing written. The transaction also holds the webhook items of the append's `RecordSync.outbox`
(a session create's `session.created`: `atomic_outbox`).

Limits: a transaction holds at most 100 items, so an append takes at most `MAX_EVENTS_PER_APPEND` (50) events
(ValueError above that; the harness appends small batches), and at most 4 MB, so events are also spilled, largest
first, while the inline payloads of a batch exceed `TRANSACTION_BUDGET_BYTES`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from managed_agents.domain.clock import Clock, SystemClock, parse_rfc3339, rfc3339
from managed_agents.domain.errors import DuplicateEvent, LogMoved, ServiceUnavailable
from managed_agents.domain.events import JsonObject, NewEvent, Order, StoredEvent, TimeRange
from managed_agents.ports import OutboxEntry, RecordSync

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryOutputTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestTypeDef,
    )
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

    _Item = dict[str, AttributeValueTypeDef]

PK = "session_id"
SK = "seq"
GUARD_SEQ = 0
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's cap on TransactWriteItems
MAX_EVENTS_PER_APPEND = 50  # two items per event, 100 items per transaction
TRANSACTION_BUDGET_BYTES = 3_500_000  # of inline payload per transaction (DynamoDB caps a transaction at 4 MB)
MAX_SEQ = 10**18
APPEND_ATTEMPTS = 200
BACKOFF_BASE_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.2

WEBHOOK_KEY_PREFIX = "webhook#"
WEBHOOK_TYPE = "webhook_type"  # the attribute the relay's second stream filter matches (stacks/constructs/webhooks.py)
TTL_ATTRIBUTE = "expires_at"  # the table's TTL attribute: only webhook items have it
WEBHOOK_ITEM_TTL_SECONDS = 7 * 24 * 3600  # (the stream keeps records 24 hours; the item is kept for a look after)

log = logging.getLogger("managed_agents.events")
TOKEN_ATTRIBUTE = "w"  # a one-event append's random token on its event item (module docstring)

_BATCH_WRITE_MAX = 24  # of 25, even so an event item and its guard always share a batch
_BATCH_GET_MAX = 100
_NAMES = {"#pk": PK, "#sk": SK}
_EVENT_ATTRS = "#pk, #sk, #id, #type, #pa, #payload, #internal, #s3"
_EVENT_NAMES = {
    **_NAMES,
    "#id": "id",
    "#type": "type",
    "#pa": "processed_at",
    "#payload": "payload",
    "#internal": "internal",
    "#s3": "s3_key",
}

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def create_events_table(client: DynamoDBClient, table_name: str) -> None:
    """Create the events table (the schema the CDK stack defines too) and wait until it is active."""
    client.create_table(
        TableName=table_name,
        AttributeDefinitions=[
            {"AttributeName": PK, "AttributeType": "S"},
            {"AttributeName": SK, "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def webhook_item(entry: OutboxEntry, *, ttl_seconds: int = WEBHOOK_ITEM_TTL_SECONDS) -> _Item:
    """The events-table item of a resource's webhook event (module docstring, "webhook items")."""
    item: _Item = {
        PK: {"S": f"{WEBHOOK_KEY_PREFIX}{entry.event_id}"},
        SK: {"N": str(GUARD_SEQ)},
        WEBHOOK_TYPE: {"S": entry.type},
        "resource_id": {"S": entry.session_id},
        "workspace_id": {"S": entry.workspace_id or ""},
        "created_at": {"S": rfc3339(entry.created_at)},
        TTL_ATTRIBUTE: {"N": str(int(entry.created_at.timestamp()) + ttl_seconds)},
    }
    if entry.data:
        item["data"] = {"S": _dumps(dict(entry.data))}
    return item


def webhook_entry(image: Mapping[str, Any]) -> OutboxEntry | None:
    """The outbox entry of a webhook item's stream image (`webhook_item`); None for any other item."""
    if WEBHOOK_TYPE not in image or not str(image[PK]["S"]).startswith(WEBHOOK_KEY_PREFIX):
        return None
    key = str(image[PK]["S"])
    data = json.loads(image["data"]["S"]) if "data" in image else None
    return OutboxEntry(
        key,
        image["resource_id"]["S"],
        key.removeprefix(WEBHOOK_KEY_PREFIX),
        image[WEBHOOK_TYPE]["S"],
        parse_rfc3339(image["created_at"]["S"]),
        image["workspace_id"]["S"] or None,
        data,
    )


def guard_key(session_id: str, event_id: str) -> str:
    """The partition key of the item that reserves `event_id` in a session."""
    return f"{session_id}#id#{event_id}"


def spill_prefix(session_id: str) -> str:
    return f"events/{session_id}/"


def spill_key(session_id: str, event_id: str) -> str:
    """The S3 key of a spilled payload."""
    return f"{spill_prefix(session_id)}{event_id}.json"


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """botocore failures become the platform's ServiceUnavailable at the adapter boundary."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise ServiceUnavailable(f"event store {action} failed: {code}") from exc
    except (BotoConnectionError, HTTPClientError) as exc:
        raise ServiceUnavailable(f"event store {action} failed: {type(exc).__name__}") from exc


@dataclass
class _Body:
    """One event's payload and internal parts, serialized once, and where they go."""

    event: NewEvent | StoredEvent
    payload: str
    internal: str | None
    size: int
    spill: bool = False


class _SeqConflict(Exception):
    """Another writer took a sequence number first: re-read the last seq and retry."""


@dataclass(frozen=True)
class _Orphan:
    """A guard whose seq does not hold its event: another event's (`seen_other`), or nothing yet."""

    seq: int
    seen_other: bool


class _Contested(Exception):
    """A guard of these ids was not what the transaction assumed (there, or moved): read what they say."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(ids)
        self.ids = ids


def _backoff(attempt: int) -> None:
    # Full jitter, so the writers that lost a round do not all come back together.
    time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(attempt, 10))))


class DynamoDbEventStore:
    def __init__(
        self,
        *,
        table_name: str,
        bucket_name: str,
        dynamodb_client: DynamoDBClient | None = None,
        s3_client: S3Client | None = None,
        clock: Clock | None = None,
        spill_threshold_bytes: int = 350_000,
    ) -> None:
        self.table_name = table_name
        self.bucket_name = bucket_name
        self.clock = clock or SystemClock()
        self.spill_threshold_bytes = spill_threshold_bytes
        self.query_calls = 0  # DynamoDB Query calls made so far (benchmarks report queries per page)
        self._ddb = dynamodb_client
        self._s3 = s3_client
        self._lock = threading.Lock()

    # -- clients -------------------------------------------------------------------------------------------------

    @property
    def dynamodb(self) -> DynamoDBClient:
        if self._ddb is None:
            with self._lock:
                if self._ddb is None:
                    import boto3

                    self._ddb = boto3.client("dynamodb")
        return self._ddb

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            with self._lock:
                if self._s3 is None:
                    import boto3

                    self._s3 = boto3.client("s3")
        return self._s3

    # -- the port ------------------------------------------------------------------------------------------------

    # The session record lives in the resources table and is written by its own adapter after the append
    # (`RecordSync.change` is ignored): putting it in this TransactWriteItems would need this adapter to encode
    # resource items (lookup pointers included) and to retry on the record's revision too.
    atomic_record_sync = False
    # `RecordSync.outbox` is honoured: its webhook items (a session's `session.created` with its initial events) are
    # put in the append's transaction, so a failed append records no webhook of a session that never was (at most
    # MAX_TRANSACTION_ITEMS - 2 x events of them fit; the rest are written right after the append, and a crash
    # between the two loses them).
    atomic_outbox = True

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        sync: RecordSync | None = None,
        expected_last_seq: int | None = None,
    ) -> list[StoredEvent]:
        """Append atomically with the next sequence numbers (see the module docstring for how).

        With `expected_last_seq` the batch goes through the transaction (one event too) at the seqs after it, read
        first as the unconditional append reads the last seq: LogMoved when the log does not end there, or when a
        rival took the next seq before the transaction committed (its event-item conditions failed).

        Raises DuplicateEvent when an id is already in the session's log, ValueError for more than
        MAX_EVENTS_PER_APPEND events or an id repeated within the batch, ServiceUnavailable when AWS fails or the
        writer keeps losing the race for the next seq (APPEND_ATTEMPTS tries).
        """
        if not events:
            return []
        if len(events) > MAX_EVENTS_PER_APPEND:
            raise ValueError(f"at most {MAX_EVENTS_PER_APPEND} events per append, got {len(events)}")
        ids = [e.id for e in events]
        if len(set(ids)) != len(ids):
            raise ValueError("an append cannot repeat an event id")
        outbox = list(sync.outbox) if sync is not None else []
        fits = max(MAX_TRANSACTION_ITEMS - 2 * len(events), 0)
        bodies = self._bodies(events)
        if any(b.spill for b in bodies):
            # Do not let a duplicate append overwrite the spilled payload of an event already in the log (only a
            # duplicate racing this very check could; re-runs of one turn do not run concurrently).
            existing = self._existing_ids(session_id, ids)
            if existing:
                raise DuplicateEvent(existing)
            self._write_spills(session_id, bodies)
        if len(bodies) == 1 and not outbox and expected_last_seq is None:
            return [self._append_one(session_id, bodies[0])]
        takeover: dict[str, _Orphan] = {}  # orphan guards to take over, by event id
        for attempt in range(APPEND_ATTEMPTS):
            last = self.last_seq(session_id)
            if expected_last_seq is not None and last != expected_last_seq:
                existing = self._existing_ids(session_id, ids)  # (a duplicate is reported first, as the port says)
                if existing:
                    raise DuplicateEvent(existing)
                raise LogMoved(expected_last_seq)
            now = self.clock.now()
            try:
                self._transact(session_id, last, now, bodies, takeover, outbox[:fits])
            except _Contested as contested:
                takeover = self._takeovers(session_id, contested.ids, takeover)
                continue
            except _SeqConflict:
                _backoff(attempt)  # (a conditional append then finds the log moved, or tries the same seqs again)
                continue
            if outbox[fits:]:
                self._put_webhook_items(session_id, outbox[fits:])
            return [
                StoredEvent(session_id, last + i + 1, e.id, e.type, now, dict(e.payload), e.internal)
                for i, e in enumerate(events)
            ]
        raise ServiceUnavailable(f"event store append lost the race for the next seq {APPEND_ATTEMPTS} times")

    def read(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int = 1000,
        order: Order = "asc",
        types: Sequence[str] | None = None,
        processed: TimeRange | None = None,
    ) -> list[StoredEvent]:
        items = self._read_items(session_id, after_seq, before_seq, limit, order, types, processed, consistent=True)
        return [self._event(session_id, item) for item in items]

    def read_tail(self, session_id: str, *, after_seq: int, limit: int = 1000) -> list[StoredEvent]:
        """What follows `after_seq`, for a reader that polls the end of the log (an event stream, an inline tool
        wait): an eventually consistent Query, half the read units of `read`'s. It may lag a moment behind the newest
        appends, which the next poll reads; it is used only when it cannot have skipped one, i.e. when its events
        are after_seq + 1, + 2, ... (the sequence is gapless). Anything else is answered by the consistent `read`."""
        items = self._read_items(session_id, after_seq, None, limit, "asc", None, None, consistent=False)
        if [int(item[SK]["N"]) for item in items] != list(range(after_seq + 1, after_seq + 1 + len(items))):
            return self.read(session_id, after_seq=after_seq, limit=limit)
        return [self._event(session_id, item) for item in items]

    def _read_items(
        self,
        session_id: str,
        after_seq: int,
        before_seq: int | None,
        limit: int,
        order: Order,
        types: Sequence[str] | None,
        processed: TimeRange | None,
        *,
        consistent: bool,
    ) -> list[_Item]:
        lo = max(after_seq + 1, 1)
        hi = MAX_SEQ if before_seq is None else before_seq - 1
        if limit <= 0 or lo > hi:
            return []
        names = dict(_EVENT_NAMES)
        values: _Item = {":s": {"S": session_id}, ":lo": {"N": str(lo)}, ":hi": {"N": str(hi)}}
        filters: list[str] = []
        if types:
            marks = [f":t{i}" for i in range(len(types))]
            values.update({m: {"S": t} for m, t in zip(marks, types, strict=True)})
            filters.append(f"#type IN ({', '.join(marks)})")
        if processed is not None:
            bounds = (
                ("gt", ">", processed.gt),
                ("gte", ">=", processed.gte),
                ("lt", "<", processed.lt),
                ("lte", "<=", processed.lte),
            )
            for name, op, ts in bounds:
                if ts is not None:
                    values[f":{name}"] = {"S": rfc3339(ts)}
                    filters.append(f"#pa {op} :{name}")
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#pk = :s AND #sk BETWEEN :lo AND :hi",
            "ProjectionExpression": _EVENT_ATTRS,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": order != "desc",
        }
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        items: list[_Item] = []
        while len(items) < limit:
            remaining = limit - len(items)
            # Limit counts items evaluated before the filter: without one, a page is exactly one Query (unless it
            # passes 1 MB); with one, read ahead a little so selective filters take fewer round trips.
            page = self._query(Limit=max(remaining, 100) if filters else remaining, consistent=consistent, **kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items[:limit]

    def get(self, session_id: str, event_id: str) -> StoredEvent | None:
        with _translated("get"):
            guard = self.dynamodb.get_item(
                TableName=self.table_name,
                Key={PK: {"S": guard_key(session_id, event_id)}, SK: {"N": str(GUARD_SEQ)}},
                ConsistentRead=True,
            )
        seq = guard.get("Item", {}).get("event_seq", {}).get("N")
        if seq is None:
            return None
        with _translated("get"):
            found = self.dynamodb.get_item(
                TableName=self.table_name,
                Key={PK: {"S": session_id}, SK: {"N": seq}},
                ConsistentRead=True,
                ProjectionExpression=_EVENT_ATTRS,
                ExpressionAttributeNames=_EVENT_NAMES,
            )
        item = found.get("Item")
        if item is None or item.get("id", {}).get("S") != event_id:
            return None
        return self._event(session_id, item)

    def last_seq(self, session_id: str) -> int:
        page = self._query(
            KeyConditionExpression="#pk = :s",
            ProjectionExpression="#sk",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={":s": {"S": session_id}},
            ScanIndexForward=False,
            Limit=1,
        )
        items = page["Items"]
        return int(items[0][SK]["N"]) if items else 0

    def delete_session(self, session_id: str) -> None:
        """Delete the session's event items with their guards, a page at a time, then its spilled objects.

        An event item and its guard go in the same batch, so an interrupted delete leaves no guard without its
        event (which would make the id undeletable); a repeated delete finishes the job.
        """
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#pk = :s",
            "ProjectionExpression": "#pk, #sk, #id",
            "ExpressionAttributeNames": {**_NAMES, "#id": "id"},
            "ExpressionAttributeValues": {":s": {"S": session_id}},
        }
        while True:
            page = self._query(Limit=100, **kwargs)
            requests: list[WriteRequestTypeDef] = []
            for item in page["Items"]:
                requests.append({"DeleteRequest": {"Key": {PK: item[PK], SK: item[SK]}}})
                requests.append(
                    {
                        "DeleteRequest": {
                            "Key": {PK: {"S": guard_key(session_id, item["id"]["S"])}, SK: {"N": str(GUARD_SEQ)}}
                        }
                    }
                )
            for start in range(0, len(requests), _BATCH_WRITE_MAX):
                self._batch_write(requests[start : start + _BATCH_WRITE_MAX])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        self._delete_spills(session_id)

    def import_events(self, session_id: str, events: Sequence[StoredEvent]) -> None:
        """Bulk-load an already sequenced log (a migration from another store, test fixtures) with BatchWriteItem.

        Not atomic and unchecked: no duplicate-id, gap or overwrite checks, the caller owns the sequence. Spills
        large payloads like `append` does.
        """
        bodies = self._bodies(events)
        self._write_spills(session_id, bodies)
        requests: list[WriteRequestTypeDef] = []
        for e, b in zip(events, bodies, strict=True):
            for item in self._items(session_id, e.seq, b, rfc3339(e.processed_at)):
                requests.append({"PutRequest": {"Item": item}})
        for start in range(0, len(requests), _BATCH_WRITE_MAX):
            self._batch_write(requests[start : start + _BATCH_WRITE_MAX])

    # -- append internals ----------------------------------------------------------------------------------------

    def _bodies(self, events: Sequence[NewEvent | StoredEvent]) -> list[_Body]:
        bodies = []
        for e in events:
            payload = _dumps(e.payload)
            internal = None if e.internal is None else _dumps(e.internal)
            size = len(payload.encode()) + (0 if internal is None else len(internal.encode()))
            bodies.append(_Body(e, payload, internal, size, spill=size > self.spill_threshold_bytes))
        inline = sum(b.size for b in bodies if not b.spill)
        for b in sorted(bodies, key=lambda b: b.size, reverse=True):
            if inline <= TRANSACTION_BUDGET_BYTES:
                break
            if not b.spill:
                b.spill = True
                inline -= b.size
        return bodies

    def _write_spills(self, session_id: str, bodies: Sequence[_Body]) -> None:
        # Before the transaction: an object orphaned by a failed append is harmless and the next one overwrites it.
        for b in bodies:
            if b.spill:
                internal = "null" if b.internal is None else b.internal
                with _translated("spill"):
                    self.s3.put_object(
                        Bucket=self.bucket_name,
                        Key=spill_key(session_id, b.event.id),
                        Body=f'{{"payload":{b.payload},"internal":{internal}}}'.encode(),
                        ContentType="application/json",
                    )

    def _items(self, session_id: str, seq: int, body: _Body, processed_at: str) -> tuple[_Item, _Item]:
        """An event's item and the guard item reserving its id."""
        event_id = body.event.id
        item: _Item = {
            PK: {"S": session_id},
            SK: {"N": str(seq)},
            "id": {"S": event_id},
            "type": {"S": body.event.type},
            "processed_at": {"S": processed_at},
        }
        if body.spill:
            item["s3_key"] = {"S": spill_key(session_id, event_id)}
        else:
            item["payload"] = {"S": body.payload}
            if body.internal is not None:
                item["internal"] = {"S": body.internal}
        guard: _Item = {
            PK: {"S": guard_key(session_id, event_id)},
            SK: {"N": str(GUARD_SEQ)},
            "event_seq": {"N": str(seq)},
        }
        return item, guard

    def _put_webhook_items(self, session_id: str, outbox: Sequence[OutboxEntry]) -> None:
        """The webhook items that did not fit in the append's transaction, after it (logged when they fail: the
        events are in the log, so the append must not look failed)."""
        try:
            with _translated("webhook items"):
                for entry in outbox:
                    self.dynamodb.put_item(TableName=self.table_name, Item=webhook_item(entry))
        except ServiceUnavailable:
            log.exception("webhook items of an append were lost", extra={"session_id": session_id})

    def _transact(
        self,
        session_id: str,
        last: int,
        now: datetime,
        bodies: Sequence[_Body],
        takeover: Mapping[str, _Orphan],
        outbox: Sequence[OutboxEntry] = (),
    ) -> None:
        for event_id, orphan in takeover.items():
            # An orphan guard (module docstring) moves off a seq seen holding another event (event items are never
            # overwritten, so it still does), or off the empty last seq + 1 that this transaction's first put takes
            # in the same commit. A seq seen empty that is no longer the next one may hold the event now: look again.
            if not orphan.seen_other and orphan.seq <= last:
                raise _Contested([event_id])
            if not orphan.seen_other and orphan.seq > last + 1:
                raise _SeqConflict()  # (a stale last seq)
        processed_at = rfc3339(now)
        ops: list[TransactWriteItemTypeDef] = []
        labels: list[tuple[str, str]] = []  # ("event" | "guard" | "webhook", event id) of each op
        for i, b in enumerate(bodies):
            item, guard = self._items(session_id, last + i + 1, b, processed_at)
            event_id = b.event.id
            ops.append(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(#sk)",
                        "ExpressionAttributeNames": {"#sk": SK},
                    }
                }
            )
            labels.append(("event", event_id))
            if event_id not in takeover:
                ops.append(
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": guard,
                            "ConditionExpression": "attribute_not_exists(#pk)",
                            "ExpressionAttributeNames": {"#pk": PK},
                        }
                    }
                )
                labels.append(("guard", event_id))
                continue
            ops.append(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": guard,
                        "ConditionExpression": "#es = :s",
                        "ExpressionAttributeNames": {"#es": "event_seq"},
                        "ExpressionAttributeValues": {":s": {"N": str(takeover[event_id].seq)}},
                    }
                }
            )
            labels.append(("guard", event_id))
        # (each webhook item has a partition of its own, named by a fresh event id: no condition)
        for entry in outbox:
            ops.append({"Put": {"TableName": self.table_name, "Item": webhook_item(entry)}})
            labels.append(("webhook", entry.event_id))
        try:
            # The token makes botocore's own retries of this call idempotent (a lost response is not a duplicate).
            self.dynamodb.transact_write_items(TransactItems=ops, ClientRequestToken=uuid.uuid4().hex)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise ServiceUnavailable(f"event store append failed: {exc}") from exc
            self._cancelled(session_id, bodies, labels, exc)
        except (BotoConnectionError, HTTPClientError) as exc:
            raise ServiceUnavailable(f"event store append failed: {type(exc).__name__}") from exc

    def _cancelled(
        self, session_id: str, bodies: Sequence[_Body], labels: Sequence[tuple[str, str]], exc: ClientError
    ) -> None:
        """Turn a cancelled transaction into _Contested (a guard is not what was assumed: its id may be a duplicate),
        _SeqConflict, or ServiceUnavailable."""
        reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
        ids = [b.event.id for b in bodies]
        if len(reasons) == len(labels):
            contested = [
                event_id
                for (kind, event_id), code in zip(labels, reasons, strict=True)
                if kind == "guard" and code == "ConditionalCheckFailed"
            ]
            if contested:
                raise _Contested(list(dict.fromkeys(contested)))
            retryable = {"None", "ConditionalCheckFailed", "TransactionConflict"}
            if all(code in retryable for code in reasons):
                if any(
                    code == "TransactionConflict" and kind == "guard"
                    for (kind, _), code in zip(labels, reasons, strict=True)
                ):
                    # A concurrent transaction touched a guard: whether it committed decides.
                    existing = self._existing_ids(session_id, ids)
                    if existing:
                        raise DuplicateEvent(existing)
                raise _SeqConflict()
            raise ServiceUnavailable(f"event store append cancelled: {reasons}") from exc
        # No usable reasons: ask the guards which of the ids exist.
        existing = self._existing_ids(session_id, ids)
        if existing:
            raise DuplicateEvent(existing)
        raise _Contested(ids)

    def _takeovers(self, session_id: str, ids: Sequence[str], takeover: Mapping[str, _Orphan]) -> dict[str, _Orphan]:
        """What the guards of contested ids say: DuplicateEvent for those whose event is in the log; the orphan guards
        (their seq empty or another event's) to take over in the next try."""
        out = dict(takeover)
        duplicates = []
        for event_id, (seq, holder) in self._guards(session_id, ids).items():
            if seq is None:
                out.pop(event_id, None)  # (gone meanwhile: a plain guard put again)
            elif holder == event_id:
                duplicates.append(event_id)
            else:
                out[event_id] = _Orphan(seq, seen_other=holder is not None)
        if duplicates:
            raise DuplicateEvent(duplicates)
        return out

    # -- the one-event append ------------------------------------------------------------------------------------

    def _append_one(self, session_id: str, body: _Body) -> StoredEvent:
        """Two conditional puts instead of a transaction (half the write units): see the module docstring."""
        event_id = body.event.id
        token = uuid.uuid4().hex[:16]
        seq = self.last_seq(session_id) + 1
        if not self._put_guard(session_id, event_id, seq, expect=None):
            seq = self._follow_guard(session_id, event_id)
        for attempt in range(APPEND_ATTEMPTS):
            now = self.clock.now()
            holder = self._put_event(session_id, seq, body, now, token)
            if holder is None:
                return StoredEvent(
                    session_id, seq, event_id, body.event.type, now, dict(body.event.payload), body.event.internal
                )
            if holder.get("id", {}).get("S") == event_id:
                if holder.get(TOKEN_ATTRIBUTE, {}).get("S") == token:  # ours: a retried call's first try went through
                    return self._event(session_id, holder)
                raise DuplicateEvent([event_id])  # a rival wrote it (the same id, appended twice at once)
            if holder:  # another event took the seq: move the guard on, if it is still where we put it
                _backoff(attempt)
                moved = self.last_seq(session_id) + 1
                seq = (
                    moved
                    if self._put_guard(session_id, event_id, moved, expect=seq)
                    else self._follow_guard(session_id, event_id)
                )
        raise ServiceUnavailable(f"event store append lost the race for the next seq {APPEND_ATTEMPTS} times")

    def _put_guard(self, session_id: str, event_id: str, seq: int, *, expect: int | None) -> bool:
        """Put the id's guard pointing at `seq`: a new one (expect None) or one that points at `expect`. False when
        that condition failed."""
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": PK}}
            if expect is None
            else {
                "ConditionExpression": "#k = :s",
                "ExpressionAttributeNames": {"#k": "event_seq"},
                "ExpressionAttributeValues": {":s": {"N": str(expect)}},
            }
        )
        item: _Item = {
            PK: {"S": guard_key(session_id, event_id)},
            SK: {"N": str(GUARD_SEQ)},
            "event_seq": {"N": str(seq)},
        }
        return self._conditional_put(item, condition)

    def _put_event(self, session_id: str, seq: int, body: _Body, now: datetime, token: str) -> _Item | None:
        """Put the event at `seq`, if free; None when written, else what holds the seq (consistent read; {} if
        nothing: a delete took it meanwhile)."""
        item, _ = self._items(session_id, seq, body, rfc3339(now))
        item[TOKEN_ATTRIBUTE] = {"S": token}
        condition = {"ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": SK}}
        if self._conditional_put(item, condition):
            return None
        found = self._get_items(
            [{PK: {"S": session_id}, SK: {"N": str(seq)}}],
            _EVENT_ATTRS + ", #w",
            {**_EVENT_NAMES, "#w": TOKEN_ATTRIBUTE},
        )
        return found[0] if found else {}

    def _follow_guard(self, session_id: str, event_id: str) -> int:
        """The id's guard exists: the seq to write the event at (DuplicateEvent when the event is in the log)."""
        for attempt in range(APPEND_ATTEMPTS):
            seq, holder = self._guards(session_id, [event_id])[event_id]
            if seq is None:  # gone meanwhile (a delete of the session): a new one
                seq = self.last_seq(session_id) + 1
                if self._put_guard(session_id, event_id, seq, expect=None):
                    return seq
            elif holder is None:
                return seq  # (the last seq + 1: its writer is about to write it, or stopped; whichever of us wins)
            elif holder == event_id:
                raise DuplicateEvent([event_id])
            else:  # an orphan: its seq holds another event
                moved = self.last_seq(session_id) + 1
                if self._put_guard(session_id, event_id, moved, expect=seq):
                    return moved
            _backoff(attempt)
        raise ServiceUnavailable(f"event store append could not settle the guard of {event_id!r}")

    def _conditional_put(self, item: _Item, condition: Mapping[str, Any]) -> bool:
        try:
            self.dynamodb.put_item(TableName=self.table_name, Item=item, **condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise ServiceUnavailable(f"event store append failed: {exc.response.get('Error', {}).get('Code')}") from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise ServiceUnavailable(f"event store append failed: {type(exc).__name__}") from exc
        return True

    # -- guards --------------------------------------------------------------------------------------------------

    def _guards(self, session_id: str, ids: Sequence[str]) -> dict[str, tuple[int | None, str | None]]:
        """Each id's guard seq (None: no guard) and the id of the event at that seq (None: nothing there), by
        consistent reads."""
        guards = self._get_items(
            [{PK: {"S": guard_key(session_id, i)}, SK: {"N": str(GUARD_SEQ)}} for i in ids],
            "#pk, #es",
            {"#pk": PK, "#es": "event_seq"},
        )
        prefix = guard_key(session_id, "")
        seqs = {g[PK]["S"][len(prefix) :]: int(g["event_seq"]["N"]) for g in guards if "event_seq" in g}
        events = self._get_items(
            [{PK: {"S": session_id}, SK: {"N": str(s)}} for s in sorted(set(seqs.values()))],
            "#sk, #id",
            {"#sk": SK, "#id": "id"},
        )
        at = {int(e[SK]["N"]): e["id"]["S"] for e in events}
        return {i: (seqs.get(i), at.get(seqs[i]) if i in seqs else None) for i in ids}

    def _existing_ids(self, session_id: str, ids: Sequence[str]) -> list[str]:
        """Which of ids the session's log holds: a guard whose seq holds its event (consistent reads)."""
        return [i for i, (_, holder) in self._guards(session_id, ids).items() if holder == i]

    def _get_items(self, keys: Sequence[_Item], projection: str, names: Mapping[str, str]) -> list[_Item]:
        """Consistent BatchGetItem of keys (any number), unprocessed keys retried."""
        found: list[_Item] = []
        for start in range(0, len(keys), _BATCH_GET_MAX):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": list(keys[start : start + _BATCH_GET_MAX]),
                    "ConsistentRead": True,
                    "ProjectionExpression": projection,
                    "ExpressionAttributeNames": dict(names),
                }
            }
            for attempt in range(10):
                with _translated("append"):
                    out = self.dynamodb.batch_get_item(RequestItems=request)
                found.extend(out["Responses"].get(self.table_name, []))
                unprocessed = out.get("UnprocessedKeys") or {}
                if not unprocessed:
                    break
                request = dict(unprocessed)
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
            else:
                raise ServiceUnavailable("event store could not read the id guards")
        return found

    # -- reads and deletes ---------------------------------------------------------------------------------------

    def _query(self, *, consistent: bool = True, **kwargs: Any) -> QueryOutputTypeDef:
        with self._lock:
            self.query_calls += 1
        with _translated("query"):
            return self.dynamodb.query(TableName=self.table_name, ConsistentRead=consistent, **kwargs)

    def _event(self, session_id: str, item: _Item) -> StoredEvent:
        payload: JsonObject
        internal: JsonObject | None
        if "s3_key" in item:
            with _translated("read"):
                body = self.s3.get_object(Bucket=self.bucket_name, Key=item["s3_key"]["S"])["Body"].read()
            spilled = json.loads(body)
            payload, internal = spilled["payload"], spilled["internal"]
        else:
            payload = json.loads(item["payload"]["S"])
            internal = json.loads(item["internal"]["S"]) if "internal" in item else None
        return StoredEvent(
            session_id=session_id,
            seq=int(item[SK]["N"]),
            id=item["id"]["S"],
            type=item["type"]["S"],
            processed_at=parse_rfc3339(item["processed_at"]["S"]),
            payload=payload,
            internal=internal,
        )

    def _batch_write(self, requests: list[WriteRequestTypeDef]) -> None:
        pending = {self.table_name: requests}
        for attempt in range(10):
            with _translated("batch write"):
                out = self.dynamodb.batch_write_item(RequestItems=pending)
            unprocessed = out.get("UnprocessedItems") or {}
            if not unprocessed:
                return
            pending = {self.table_name: list(unprocessed.get(self.table_name, []))}  # type: ignore[arg-type]
            time.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise ServiceUnavailable("event store batch write left unprocessed items")

    def _delete_spills(self, session_id: str) -> None:
        """Every object under the session's prefix, including ones orphaned by failed appends."""
        prefix = spill_prefix(session_id)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            with _translated("delete"):
                listing = self.s3.list_objects_v2(**kwargs)
                keys: list[ObjectIdentifierTypeDef] = [
                    {"Key": obj["Key"]} for obj in listing.get("Contents", []) if "Key" in obj
                ]
                if keys:
                    self.s3.delete_objects(Bucket=self.bucket_name, Delete={"Objects": keys, "Quiet": True})
            token = listing.get("NextContinuationToken")
            if not listing.get("IsTruncated") or not token:
                return
