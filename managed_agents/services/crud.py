"""The shared shape of a resource API, written once (style.md: "a new resource is four small files").

Every Managed Agents resource is a workspace-scoped document with `id`, `type`, `metadata`, `created_at`,
`updated_at` and `archived_at` (api-reference §1.2), created, retrieved, updated (an omitted field keeps its value,
an explicit `null` clears it, `metadata` is a patch), listed with cursors, archived (soft, idempotent) and deleted
(`{id, type: "<kind>_deleted"}`). `Collection` does that over the resource store; a resource's service adds only
its rules: validation, the fields it stores, what archiving or deleting also does.

    ENVIRONMENTS = Kind("environment", lambda: new_id("environment"), not_found_code="environment_not_found")
    envs = Collection(svc, ENVIRONMENTS)
    doc = envs.create(ws, {"name": ..., "metadata": ...})
    envs.update(ws, env_id, lambda doc: assign(doc, params, ("name", "description"), required=("name",)))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from pydantic import BaseModel

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.errors import InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.ports import ListQuery, OutboxEntry, Record
from managed_agents.services.common import (
    EventName,
    Services,
    archive_record,
    archiving,
    check_metadata,
    list_page,
    patch_metadata,
    render,
)
from managed_agents.services.records import Events, mutate

Attrs = dict[str, str | int | None]
Page = tuple[list[JsonObject], str | None]
Recorded = list[OutboxEntry]  # (a name the class's own `list` method does not shadow)


@dataclass(frozen=True)
class Kind:
    """One kind of stored resource: its store kind (also its wire `type`), how its ids are made, and the error codes
    the reference gives it."""

    name: str
    new_id: Callable[[], str]
    noun: str = ""  # in messages; defaults to the name with spaces
    not_found_code: str | None = None
    archived_code: str | None = None

    @property
    def label(self) -> str:
        return self.noun or self.name.replace("_", " ")


class Collection:
    """Create, retrieve, update, list, archive and delete one kind of resource in the resource store."""

    def __init__(
        self,
        svc: Services,
        kind: Kind,
        *,
        view: Callable[[JsonObject], JsonObject] | None = None,
        event_data: Callable[[Record], dict[str, str]] | None = None,
    ) -> None:
        """`view`: what the wire form adds to the stored document (fields derived on read); `event_data`: what its
        webhook payloads carry besides the id (`Collection.event_data`)."""
        self.svc = svc
        self.kind = kind
        self._view = view
        self._event_data = event_data

    def render(self, doc: JsonObject) -> JsonObject:
        out = render(doc)
        return self._view(out) if self._view is not None else out

    # -- create and read --------------------------------------------------------------------------------------

    def insert(
        self,
        ws: str,
        fields: JsonObject,
        *,
        attrs: Attrs | None = None,
        id_: str | None = None,
        expires_at: datetime | None = None,
        event: str = "created",
    ) -> Record:
        """Store a new document: `fields` plus `id`, `type` and the timestamps; `metadata`, if given, is checked.
        `expires_at`: the store may drop the record from then on (Record.expires_at); `event`: the webhook event it
        causes, after the kind (`<kind>.created`)."""
        now = self.svc.clock.now()
        rid = id_ or self.kind.new_id()
        doc: JsonObject = {"id": rid, "type": self.kind.name, **fields}
        if "metadata" in doc:
            doc["metadata"] = check_metadata(dict(cast(dict[str, str], doc["metadata"])))
        doc.update({"created_at": rfc3339(now), "updated_at": rfc3339(now), "archived_at": None})
        rec = Record(self.kind.name, ws, rid, doc, now, attrs=dict(attrs or {}), expires_at=expires_at)
        self.svc.insert(rec, event, self.event_data(rec))  # (kinds without webhook events record none)
        return rec

    def event_data(self, rec: Record) -> dict[str, str] | None:
        """What this kind's webhook payloads carry besides the id (a credential's `vault_id`, ...)."""
        return self._event_data(rec) if self._event_data is not None else None

    def create(self, ws: str, fields: JsonObject, *, attrs: Attrs | None = None, id_: str | None = None) -> JsonObject:
        return self.render(self.insert(ws, fields, attrs=attrs, id_=id_).doc)

    def record(self, ws: str, rid: str) -> Record:
        rec = self.svc.resources.get(self.kind.name, ws, rid)
        if rec is None:
            raise NotFound(f"{self.kind.label} {rid!r} not found", error_code=self.kind.not_found_code)
        return rec

    def live(self, ws: str, rid: str, *, doing: str = "changed") -> Record:
        """The record, refusing an archived one (400 with the kind's `archived_code`)."""
        rec = self.record(ws, rid)
        self.check_live(rec, doing=doing)
        return rec

    def check_live(self, rec: Record, *, doing: str = "changed") -> None:
        if rec.archived:
            raise InvalidRequest(
                f"{self.kind.label} {rec.id!r} is archived and cannot be {doing}", error_code=self.kind.archived_code
            )

    def get(self, ws: str, rid: str) -> JsonObject:
        return self.render(self.record(ws, rid).doc)

    def list(self, ws: str, query: ListQuery) -> Page:
        page = list_page(self.svc.resources, self.kind.name, ws, query)
        return [self.render(r.doc) for r in page.rows], page.next_page

    def iterate(self, ws: str, *, include_archived: bool, **equals: str | int) -> Iterator[Record]:
        """Every record matching `equals`, oldest first, page by page."""
        cursor: tuple[str, str] | None = None
        while True:
            query = ListQuery(
                limit=100, order="asc", cursor=cursor, include_archived=include_archived, equals=dict(equals)
            )
            rows, more = self.svc.resources.list_records(self.kind.name, ws, query)
            yield from rows
            if not more or not rows:
                return
            cursor = (rfc3339(rows[-1].created_at), rows[-1].id)

    # -- change -----------------------------------------------------------------------------------------------

    def change(
        self, rec: Record, edit: Callable[[Record], None], *, touch: bool = False, event: EventName = None
    ) -> Record:
        """Apply `edit` under the store's revision check (re-applied on a lost race); `updated_at` moves when the
        document changed, or always with `touch` (a change that lives outside the document, e.g. a secret).
        `event`: the webhook event the change causes (`"updated"` for `<kind>.updated`), or a function of the record
        before and after that names it (None: none), recorded in the change's transaction."""

        def apply(r: Record) -> None:
            before = dict(r.doc)
            edit(r)
            if touch or r.doc != before:
                r.doc["updated_at"] = rfc3339(self.svc.clock.now())

        recorded: Recorded = []
        new = mutate(self.svc.resources, rec, apply, events=self._events(event, recorded))
        self.svc.recorded(recorded)
        return new

    def _events(self, event: EventName, recorded: Recorded) -> Events | None:
        return self.svc.change_events(self.kind.name, event, recorded, self.event_data)

    def update(self, ws: str, rid: str, edit: Callable[[JsonObject], None]) -> JsonObject:
        """Change a live record's document with `edit` (see `assign`, `assign_metadata`) and return its wire form."""
        rec = self.live(ws, rid)
        return self.render(self.change(rec, lambda r: edit(r.doc), event="updated").doc)

    def archive(self, ws: str, rid: str) -> JsonObject:
        return self.render(self.archive_record(self.record(ws, rid)).doc)

    def archive_record(self, rec: Record) -> Record:
        """Soft-archive: `archived_at` is set once; archiving again returns the record as it is (and causes no
        `<kind>.archived` event)."""
        recorded: Recorded = []
        events = self._events(archiving, recorded)
        archived = archive_record(self.svc.resources, self.svc.clock, rec, events=events)
        self.svc.recorded(recorded)
        return archived

    def delete(self, ws: str, rid: str) -> JsonObject:
        self.remove(self.record(ws, rid))
        return self.deleted(rid)

    def remove(self, rec: Record) -> None:
        """Delete the record, with its `<kind>.deleted` event."""
        self.svc.delete(rec, self.event_data(rec))

    def deleted(self, rid: str) -> JsonObject:
        return {"id": rid, "type": f"{self.kind.name}_deleted"}


def assign(
    doc: JsonObject,
    params: BaseModel,
    names: Iterable[str],
    *,
    required: Iterable[str] = (),
    empty_clears: Iterable[str] = (),
) -> None:
    """Copy the update fields the request sent into `doc`: an omitted field keeps its value, an explicit `null`
    clears it (400 for the `required` ones, which cannot be cleared), and `""` clears the `empty_clears` ones to
    null (hosted: an empty `system` or `description` reads back as null)."""
    sent = params.model_fields_set
    must, empty = set(required), set(empty_clears)
    for name in names:
        if name not in sent:
            continue
        value = getattr(params, name)
        if value is None and name in must:
            raise InvalidRequest(f"{name}: cannot be cleared")
        doc[name] = None if (name in empty and value == "") else value


def assign_metadata(
    doc: JsonObject, params: BaseModel, *, empty_deletes: bool = False, null_clears: bool = True
) -> None:
    """Apply the request's `metadata` patch, if it sent one: a string upserts a key, `null` (and `""` with
    `empty_deletes`) deletes it; `metadata: null` clears them all (`null_clears`) or changes nothing."""
    if "metadata" not in params.model_fields_set:
        return
    changes = cast(dict[str, str | None] | None, getattr(params, "metadata"))  # noqa: B009 -- any params model
    if changes is None:
        if null_clears:
            doc["metadata"] = {}
        return
    current = cast(dict[str, str], doc.get("metadata") or {})
    doc["metadata"] = patch_metadata(current, changes, empty_deletes=empty_deletes)
