"""Shared rules of the resource API: metadata limits and patches, cursors, list pages, rendering."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, cast

from managed_agents.domain.clock import Clock, rfc3339
from managed_agents.domain.errors import InvalidRequest, StaleRevision
from managed_agents.domain.events import JsonObject, Order, TimeRange
from managed_agents.ports import ListQuery, Orchestrator, OutboxEntry, Record, ResourceStore
from managed_agents.services.records import Events, mutate

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


@dataclass
class Services:
    """What the resource services need; built once by wiring.py."""

    resources: ResourceStore
    clock: Clock
    orchestrator: Orchestrator | None = None
    # the outbox entries of a resource's webhook event `(workspace, type, resource id, data)`, e.g. "agent.created",
    # which the write that causes it records in its own transaction (ResourceStore.write_all's `outbox`;
    # services/webhooks.py `WebhookService.entries`); None: no webhooks
    webhook_entries: Callable[[str, str, str, Mapping[str, str] | None], list[OutboxEntry]] | None = None
    webhook_recorded: Callable[[], object] | None = None  # after a write recorded some (the deliverer's wake-up)

    def events(self, ws: str, type_: str, resource_id: str, data: Mapping[str, str] | None = None) -> list[OutboxEntry]:
        """The outbox entries of a webhook event (none when no endpoint could want it), for a write to record."""
        return self.webhook_entries(ws, type_, resource_id, data) if self.webhook_entries is not None else []

    def recorded(self, entries: Sequence[OutboxEntry]) -> None:
        """A write recorded these entries (committed): the deliverer may look now."""
        if entries and self.webhook_recorded is not None:
            self.webhook_recorded()

    def insert(self, rec: Record, event: str | None = None, data: Mapping[str, str] | None = None) -> None:
        """Insert the record, with the webhook event `<kind>.<event>` it causes in the same transaction."""
        outbox = self.events(rec.workspace_id, f"{rec.kind}.{event}", rec.id, data) if event else []
        if not outbox:
            self.resources.insert(rec)
            return
        self.resources.write_all(inserts=[rec], outbox=outbox)
        self.recorded(outbox)

    def delete(self, rec: Record, data: Mapping[str, str] | None = None) -> bool:
        """Delete the record, with its `<kind>.deleted` event in the same transaction; False when it was gone."""
        outbox = self.events(rec.workspace_id, f"{rec.kind}.deleted", rec.id, data)
        if not outbox:
            return self.resources.delete(rec.kind, rec.workspace_id, rec.id)
        try:
            self.resources.write_all(deletes=[(rec.kind, rec.workspace_id, rec.id)], outbox=outbox)
        except StaleRevision:  # deleted meanwhile: by the other request, which recorded the event
            return False
        self.recorded(outbox)
        return True

    def change_events(
        self,
        kind: str,
        event: EventName,
        recorded: list[OutboxEntry],
        data: Callable[[Record], Mapping[str, str] | None] | None = None,
    ) -> Events | None:
        """`records.mutate`'s events of a change that causes `event` (`"archived"` for `<kind>.archived`, or a
        function of the record before and after the change that names it, None for none); `recorded` keeps those of
        the last attempt, the one written (pass them to `recorded` after the write). `data`: the payload's extra
        fields of a record."""
        if event is None:
            return None

        def events(before: Record, after: Record) -> list[OutboxEntry]:
            name = event(before, after) if callable(event) else event
            extra = data(after) if data is not None else None
            recorded[:] = self.events(after.workspace_id, f"{kind}.{name}", after.id, extra) if name else []
            return recorded

        return events


# a change's webhook event: its name after the kind (`"updated"`), or named from the record before and after it
EventName = str | Callable[[Record, Record], str | None] | None


def archiving(before: Record, after: Record) -> str | None:
    """A change's `<kind>.archived` event: when it archived the record (not when it was archived already)."""
    return "archived" if after.archived and not before.archived else None


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequest(
            f"metadata: at most {MAX_METADATA_PAIRS} pairs are allowed, got {len(metadata)}",
            error_code="invalid_metadata",
        )
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY:
            raise InvalidRequest(
                f"metadata: keys must be 1 to {MAX_METADATA_KEY} characters, got {len(key)} for key {key[:80]!r}",
                error_code="invalid_metadata",
            )
        if len(value) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                f"metadata.{key}: values must be at most {MAX_METADATA_VALUE} characters, got {len(value)}",
                error_code="invalid_metadata",
            )
    return metadata


def patch_metadata(
    current: dict[str, str], patch: dict[str, str | None], *, empty_deletes: bool = False
) -> dict[str, str]:
    out = dict(current)
    for key, value in patch.items():
        if value is None or (empty_deletes and value == ""):
            out.pop(key, None)
        else:
            out[key] = value
    return check_metadata(out)


PREVIOUS = "prev"


def encode_cursor(rec: Record, order: Order = "desc", *, backward: bool = False) -> str:
    """An opaque page token: the position after (or, `backward`, before) `rec` in a listing of `order`."""
    values = [rfc3339(rec.created_at), rec.id, order, *([PREVIOUS] if backward else [])]
    raw = json.dumps(values, separators=(",", ":")).encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(page: str | None, order: Order = "desc") -> tuple[tuple[str, str], bool] | None:
    """The position and direction (`True`: the page before it) a token holds; 400 for anything this endpoint did not
    hand out, and for a token of a listing in the other order (hosted: "page token order does not match request")."""
    if not page:
        return None
    try:
        if not page.startswith("page_"):
            raise ValueError
        raw = page[5:]
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not (isinstance(values, list) and 3 <= len(values) <= 4 and all(isinstance(v, str) for v in values)):
            raise ValueError
        if values[2] not in ("asc", "desc") or values[3:] not in ([], [PREVIOUS]):
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"page: {page[:100]!r} is not a page cursor returned by this endpoint") from exc
    if values[2] != order:
        raise InvalidRequest("page: page token order does not match request")
    return (values[0], values[1]), len(values) == 4


def check_limit(limit: int | None, *, default: int = 20, maximum: int = 100) -> int:
    if limit is None:
        return default
    if limit < 1 or limit > maximum:
        raise InvalidRequest(f"limit: must be between 1 and {maximum}, got {limit}")
    return limit


def page_query(
    page: str | None,
    limit: int | None,
    *,
    order: Order = "desc",
    include_archived: bool = False,
    created: TimeRange | None = None,
    default_limit: int = 20,
    max_limit: int = 100,
) -> ListQuery:
    """The ListQuery of a list request's common parameters (`limit`, `page`, `order`, `include_archived`,
    `created_at[...]`); filters go into its `equals` / `any_of`."""
    decoded = decode_cursor(page, order)
    return ListQuery(
        limit=check_limit(limit, default=default_limit, maximum=max_limit),
        order=order,
        cursor=decoded[0] if decoded else None,
        backward=decoded[1] if decoded else False,
        include_archived=include_archived,
        created=created or TimeRange(),
    )


class RecordPage(NamedTuple):
    rows: list[Record]
    next_page: str | None
    prev_page: str | None


def list_page(store: ResourceStore, kind: str, workspace_id: str, query: ListQuery) -> RecordPage:
    """One page of records and the tokens of the pages after and before it (`prev_page`: None on the first page)."""
    if query.backward:  # the page before the cursor: read away from it in the other order, then turn the rows round
        other: Order = "asc" if query.order == "desc" else "desc"
        rows, more = store.list_records(kind, workspace_id, replace(query, order=other, backward=False))
        rows.reverse()
        return RecordPage(
            rows,
            encode_cursor(rows[-1], query.order) if rows else None,  # the page this token was handed out on
            encode_cursor(rows[0], query.order, backward=True) if more and rows else None,
        )
    rows, more = store.list_records(kind, workspace_id, query)
    return RecordPage(
        rows,
        encode_cursor(rows[-1], query.order) if more and rows else None,
        encode_cursor(rows[0], query.order, backward=True) if query.cursor is not None and rows else None,
    )


def render(doc: JsonObject) -> JsonObject:
    """The wire form of a stored document: internal keys (leading underscore) never leave."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def as_list(value: object) -> list[JsonObject]:
    return cast(list[JsonObject], value or [])


def archive_record(store: ResourceStore, clock: Clock, rec: Record, *, events: Events | None = None) -> Record:
    """Soft-archive: set `archived_at` once; archiving again returns the record as it is. `events`: the webhook
    events recorded with the archiving write (records.mutate)."""
    if rec.archived:
        return rec

    def change(r: Record) -> None:
        if not r.archived:
            now = rfc3339(clock.now())
            r.archived = True
            r.doc["archived_at"] = now
            r.doc["updated_at"] = now

    return mutate(store, rec, change, events=events)
