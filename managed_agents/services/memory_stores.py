"""Memory stores, their memories and the memories' versions (api-reference §2.5).

Storage, on the ResourceStore port alone (both adapters, one contract suite):
* `memory_store` records: the shared CRUD shape (services/crud.py), plus cascade on delete.
* `memory` records (`mem_…`): the truth of one memory, content included; retrieved by id.
* `memory_path` records: the store's path index. Their id is `<store id>:<path key>` and they all carry the same
  `created_at` (the epoch), so a workspace's listing in (created_at, id) order is path order, a store's memories
  are one contiguous run, and a page after a path is a keyset seek: the last page of 10,000 memories costs what
  the first does. An insert of an existing id fails, which makes a path unique in its store. They hold what a
  `basic` listing shows (no content). The path key is the path itself up to PATH_KEY_BYTES of UTF-8 (DynamoDB's
  index sort keys hold 1024 bytes); a longer path's key is its first bytes and a digest, so such paths still
  list, with the ones sharing those first bytes in digest order.
* `memory_version` records (`memver_…`): one per create, change and delete, with the actor that made it
  (`api_actor` for an API key, `session_actor` for a session's work token).

A memory's writes touch its record, its path entry and a new version in one transaction
(`ResourceStore.write_all`: SQLite's, DynamoDB's TransactWriteItems), so no path entry is left without its memory;
an entry left so by data written before (whose memory is gone) is taken over by the next create of that path.
Redaction empties a version's path and content; the version a live memory currently is cannot be redacted
(change or delete the memory first), so a memory's content is never without its version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import cast

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, StaleRevision
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_id
from managed_agents.ports import ListQuery, Record, ResourceStore
from managed_agents.services.common import RecordPage, Services, check_limit, check_metadata, list_page, render
from managed_agents.services.crud import Collection, Kind, Page, assign, assign_metadata
from managed_agents.services.keys import Principal
from managed_agents.services.memory_paths import check_path, check_prefix, check_store_name, mount_slug
from managed_agents.services.records import mutate
from managed_agents.wire.memory_stores import (
    MAX_CONTENT_BYTES,
    MemoryCreateParams,
    MemoryStoreCreateParams,
    MemoryStoreUpdateParams,
    MemoryUpdateParams,
    View,
)
from managed_agents.wire.session_resources import MemoryStoreResourceParams

MEMORY_STORE = Kind(
    "memory_store", lambda: new_id("memory_store"), noun="memory store", not_found_code="memory_store_not_found"
)
MEMORY = "memory"
MEMORY_PATH = "memory_path"
MEMORY_VERSION = "memory_version"
STORE_SESSION = "memory_store_session"  # a session's use of a store: sessions.list(memory_store_id=...)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PATH_KEY_BYTES = 900
MEMORY_MOUNT_ROOT = "/mnt/memory"
FULL_VIEW_MAX = 20
# Sorts after every path that shares what precedes it: memory paths may not hold U+10FFFF (wire/memory_stores.py).
_ABOVE_ALL = "\U0010ffff"


class MemoryPreconditionFailed(Conflict):
    """409 with the reference's error type: the memory's content is not the one the request expected."""

    error_type = "memory_precondition_failed_error"


class MemoryPathConflict(Conflict):
    error_type = "memory_path_conflict_error"


def sha256_hex(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def path_key(path: str) -> str:
    raw = path.encode("utf-8")
    if len(raw) <= PATH_KEY_BYTES:
        return path
    head = raw[: PATH_KEY_BYTES - 40].decode("utf-8", "ignore")
    return f"{head}\U0010ffff#{hashlib.sha256(raw).hexdigest()[:32]}"


def path_id(store_id: str, path: str) -> str:
    return f"{store_id}:{path_key(path)}"


def actor(p: Principal) -> JsonObject:
    if p.kind == "work" and p.session_id:
        return {"type": "session_actor", "session_id": p.session_id}
    return {"type": "api_actor", "api_key_id": p.key_id}


def _content(content: str | None) -> str:
    text = content or ""
    size = len(text.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        raise InvalidRequest(f"content: at most {MAX_CONTENT_BYTES} bytes of UTF-8, got {size}")
    return text


def _page_token(position: str) -> str:
    raw = json.dumps(["mem", position], ensure_ascii=False).encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _page_position(page: str | None) -> str | None:
    if not page:
        return None
    try:
        if not page.startswith("page_"):
            raise ValueError
        raw = page[5:]
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not (isinstance(values, list) and len(values) == 2 and values[0] == "mem" and isinstance(values[1], str)):
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"page: {page[:100]!r} is not a page cursor returned by this endpoint") from exc
    return str(values[1])


@dataclass(frozen=True)
class VersionFilter:
    memory_id: str | None = None
    session_id: str | None = None
    api_key_id: str | None = None
    service_account_id: str | None = None
    operation: str | None = None


class MemoryStoreService:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.stores = Collection(svc, MEMORY_STORE)

    # -- stores ---------------------------------------------------------------------------------------------------

    def create(self, ws: str, params: MemoryStoreCreateParams) -> JsonObject:
        fields: JsonObject = {
            "name": check_store_name(params.name),
            "description": params.description or "",
            "metadata": check_metadata(dict(params.metadata)),
        }
        return self.stores.create(ws, fields)

    def get(self, ws: str, store_id: str) -> JsonObject:
        return self.stores.get(ws, store_id)

    def update(self, ws: str, store_id: str, params: MemoryStoreUpdateParams) -> JsonObject:
        if params.name is not None:
            check_store_name(params.name)

        def edit(doc: JsonObject) -> None:
            assign(doc, params, ("name",), required=("name",))
            if "description" in params.model_fields_set:
                doc["description"] = params.description or ""
            assign_metadata(doc, params)

        return self.stores.update(ws, store_id, edit)

    def list_stores(self, ws: str, query: ListQuery) -> Page:
        return self.stores.list(ws, query)

    def archive(self, ws: str, store_id: str) -> JsonObject:
        return self.stores.archive(ws, store_id)

    def delete(self, ws: str, store_id: str) -> JsonObject:
        """The store, its memories, their path entries and versions (sessions keep their resource, as a record)."""
        self.stores.record(ws, store_id)
        res = self.svc.resources
        for kind in (MEMORY_VERSION, MEMORY, MEMORY_PATH, STORE_SESSION):
            for rec in list(self._store_rows(ws, kind, store_id)):
                res.delete(kind, ws, rec.id)
        return self.stores.delete(ws, store_id)

    def _store_rows(self, ws: str, kind: str, store_id: str) -> Iterator[Record]:
        if kind == MEMORY_PATH:
            yield from self._paths(ws, store_id, "/", None)
            return
        cursor: tuple[str, str] | None = None
        while True:
            q = ListQuery(limit=100, order="asc", cursor=cursor, include_archived=True, equals={"store_id": store_id})
            rows, more = self.svc.resources.list_records(kind, ws, q)
            yield from rows
            if not more or not rows:
                return
            cursor = (rfc3339(rows[-1].created_at), rows[-1].id)

    def store(self, ws: str, store_id: str, *, writing: bool = False) -> Record:
        rec = self.stores.record(ws, store_id)
        if writing:
            self.stores.check_live(rec, doing="written")
        return rec

    # -- memories -------------------------------------------------------------------------------------------------

    def _memory(self, ws: str, store_id: str, memory_id: str) -> Record:
        rec = self.svc.resources.get(MEMORY, ws, memory_id)
        if rec is None or rec.attrs.get("store_id") != store_id:
            raise NotFound(f"memory {memory_id!r} not found in memory store {store_id!r}")
        return rec

    @staticmethod
    def _render_memory(doc: JsonObject, view: View) -> JsonObject:
        out = render(doc)
        if view == "basic":
            out["content"] = None
        return out

    def _claim_path(
        self,
        ws: str,
        store_id: str,
        path: str,
        memory: JsonObject,
        *,
        inserts: Sequence[Record] = (),
        replaces: Sequence[tuple[Record, int]] = (),
        deletes: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        """Insert the path entry of `memory` together with the other writes of its change, in one transaction; 409
        when a live memory of the store has that path (an entry whose memory is gone is taken over)."""
        entry = Record(
            MEMORY_PATH, ws, path_id(store_id, path), self._entry_doc(memory), EPOCH, attrs={"store_id": store_id}
        )
        for _ in range(2):
            try:
                self.svc.resources.write_all(inserts=[entry, *inserts], replaces=replaces, deletes=deletes)
                return
            except Conflict:
                held = self.svc.resources.get(MEMORY_PATH, ws, entry.id)
                owner = None if held is None else self.svc.resources.get(MEMORY, ws, str(held.doc["id"]))
                if owner is not None and owner.doc.get("path") == path:
                    raise MemoryPathConflict(
                        f"path: memory {owner.id!r} of this store already has the path {path[:200]!r}",
                        error_code="memory_path_conflict",
                    ) from None
                if held is not None:  # left behind by data written before writes were transactions: take it over
                    self.svc.resources.delete(MEMORY_PATH, ws, entry.id)
        raise MemoryPathConflict(f"path: {path[:200]!r} is being written by another request; retry")

    @staticmethod
    def _entry_doc(memory: JsonObject) -> JsonObject:
        return {k: v for k, v in memory.items() if k != "content"}

    def _version(
        self, ws: str, store_id: str, memory: JsonObject, operation: str, by: JsonObject, when: datetime, vid: str
    ) -> Record:
        deleted = operation == "deleted"
        doc: JsonObject = {
            "type": "memory_version",
            "id": vid,
            "memory_id": memory["id"],
            "memory_store_id": store_id,
            "operation": operation,
            "path": memory["path"],
            "content": None if deleted else memory["content"],
            "content_sha256": None if deleted else memory["content_sha256"],
            "content_size_bytes": None if deleted else memory["content_size_bytes"],
            "created_at": rfc3339(when),
            "created_by": by,
            "redacted_at": None,
            "redacted_by": None,
        }
        attrs: dict[str, str | int | None] = {
            "store_id": store_id,
            "memory_id": str(memory["id"]),
            "operation": operation,
            "session_id": cast(str | None, by.get("session_id")),
            "api_key_id": cast(str | None, by.get("api_key_id")),
            "service_account_id": cast(str | None, by.get("service_account_id")),
        }
        return Record(MEMORY_VERSION, ws, vid, doc, when, attrs=attrs)

    def create_memory(self, p: Principal, store_id: str, params: MemoryCreateParams, view: View) -> JsonObject:
        ws = p.workspace_id
        self.store(ws, store_id, writing=True)
        path = check_path(params.path)
        content = _content(params.content)
        now = self.svc.clock.now()
        mid = new_id("memory")
        vid = new_id("memory_version")
        doc: JsonObject = {
            "type": "memory",
            "id": mid,
            "memory_store_id": store_id,
            "path": path,
            "content": content,
            "content_sha256": sha256_hex(content),
            "content_size_bytes": len(content.encode("utf-8")),
            "memory_version_id": vid,
            "created_at": rfc3339(now),
            "updated_at": rfc3339(now),
        }
        memory = Record(MEMORY, ws, mid, doc, now, attrs={"store_id": store_id})
        version = self._version(ws, store_id, doc, "created", actor(p), now, vid)
        self._claim_path(ws, store_id, path, doc, inserts=[memory, version])
        return self._render_memory(self._memory(ws, store_id, mid).doc, view)

    def get_memory(self, ws: str, store_id: str, memory_id: str, view: View) -> JsonObject:
        self.store(ws, store_id)
        return self._render_memory(self._memory(ws, store_id, memory_id).doc, view)

    def update_memory(
        self, p: Principal, store_id: str, memory_id: str, params: MemoryUpdateParams, view: View
    ) -> JsonObject:
        ws = p.workspace_id
        self.store(ws, store_id, writing=True)
        fields = params.model_fields_set
        new_path = check_path(params.path) if "path" in fields and params.path is not None else None
        new_content = _content(params.content) if "content" in fields and params.content is not None else None
        expected = params.precondition.content_sha256 if params.precondition is not None else None
        rec = self._memory(ws, store_id, memory_id)
        for _ in range(50):
            if expected is not None and str(rec.doc["content_sha256"]) != expected.lower():
                raise MemoryPreconditionFailed(
                    f"precondition: memory {memory_id!r} has content_sha256 {rec.doc['content_sha256']}, not"
                    f" {expected}",
                    error_code="memory_precondition_failed",
                )
            old = dict(rec.doc)
            doc = dict(rec.doc)
            if new_content is not None:
                doc.update(
                    content=new_content,
                    content_sha256=sha256_hex(new_content),
                    content_size_bytes=len(new_content.encode("utf-8")),
                )
            if new_path is not None:
                doc["path"] = new_path
            if doc == old:
                return self._render_memory(old, view)  # nothing changes: no new version
            now = self.svc.clock.now()
            vid = new_id("memory_version")
            doc.update(memory_version_id=vid, updated_at=rfc3339(now))
            moved = doc["path"] != old["path"]
            version = self._version(ws, store_id, doc, "modified", actor(p), now, vid)
            new = replace_doc(rec, doc)
            # the memory, its path entry (moved: the new one claimed, the old one removed) and its version: together
            entry = self.svc.resources.get(MEMORY_PATH, ws, path_id(store_id, str(old["path"])))
            owned = entry is not None and entry.doc.get("id") == memory_id
            try:
                if moved:
                    gone = [(MEMORY_PATH, ws, entry.id)] if entry is not None and owned else []
                    self._claim_path(
                        ws, store_id, str(doc["path"]), doc, inserts=[version], replaces=[(new, rec.rev)], deletes=gone
                    )
                else:
                    writes: list[tuple[Record, int]] = [(new, rec.rev)]
                    if entry is not None and owned:
                        writes.append((replace_doc(entry, self._entry_doc(doc)), entry.rev))
                    self.svc.resources.write_all(inserts=[version], replaces=writes)
            except StaleRevision:
                rec = self._memory(ws, store_id, memory_id)
                continue
            return self._render_memory(self._memory(ws, store_id, memory_id).doc, view)
        raise Conflict(f"memory {memory_id!r}: too many concurrent writers; retry")

    def delete_memory(self, p: Principal, store_id: str, memory_id: str, expected_sha: str | None) -> JsonObject:
        ws = p.workspace_id
        self.store(ws, store_id, writing=True)
        rec = self._memory(ws, store_id, memory_id)
        if expected_sha is not None and str(rec.doc["content_sha256"]) != expected_sha.lower():
            raise MemoryPreconditionFailed(
                f"expected_content_sha256: memory {memory_id!r} has content_sha256 {rec.doc['content_sha256']}",
                error_code="memory_precondition_failed",
            )
        eid = path_id(store_id, str(rec.doc["path"]))
        entry = self.svc.resources.get(MEMORY_PATH, ws, eid)
        deletes = [(MEMORY, ws, memory_id)]
        if entry is not None and entry.doc.get("id") == memory_id:
            deletes.append((MEMORY_PATH, ws, eid))
        version = self._version(
            ws, store_id, rec.doc, "deleted", actor(p), self.svc.clock.now(), new_id("memory_version")
        )
        try:  # the memory, its path entry and its `deleted` version: together
            self.svc.resources.write_all(inserts=[version], deletes=deletes)
        except StaleRevision:
            raise NotFound(f"memory {memory_id!r} not found (deleted meanwhile)") from None
        return {"id": memory_id, "type": "memory_deleted"}

    # -- listing by path ------------------------------------------------------------------------------------------

    def _paths(self, ws: str, store_id: str, prefix: str, after: str | None, batch: int = 100) -> Iterator[Record]:
        """The store's path entries under `prefix` in path order, after the path key `after` (exclusive)."""
        head = f"{store_id}:"
        # start after the key `after`, or after every key that sorts before the prefix's folder
        start = head + (after if after is not None else prefix[:-1] + "." + _ABOVE_ALL)
        epoch = rfc3339(EPOCH)
        while True:
            q = ListQuery(limit=batch, order="asc", cursor=(epoch, start), include_archived=True)
            rows, more = self.svc.resources.list_records(MEMORY_PATH, ws, q)
            for row in rows:
                if not row.id.startswith(head + prefix):
                    return
                yield row
            if not more or not rows:
                return
            start = rows[-1].id

    def list_memories(
        self,
        ws: str,
        store_id: str,
        *,
        path_prefix: str | None,
        depth: int | None,
        view: View,
        limit: int | None,
        page: str | None,
    ) -> Page:
        self.store(ws, store_id)
        prefix = check_prefix(path_prefix) if path_prefix is not None else "/"
        if depth is not None and depth < 0:
            raise InvalidRequest(f"depth: must be 0 or more, got {depth}")
        size = check_limit(limit, maximum=FULL_VIEW_MAX if view == "full" else 100)
        after = _page_position(page)
        base = prefix.count("/")
        items: list[JsonObject] = []
        last: str | None = None
        more = False
        while True:
            rows = self._paths(ws, store_id, prefix, after, batch=size + 1)
            jumped = False
            for row in rows:
                if len(items) == size:
                    more = True
                    break
                path = str(row.doc["path"])
                if not path.startswith(prefix):
                    continue  # a long path whose key shares the prefix's first bytes only
                if depth and path.count("/") - base >= depth:
                    folder = "/".join(path.split("/")[: base + depth]) + "/"
                    items.append({"type": "memory_prefix", "path": folder})
                    # skip the whole folder: continue after every key inside it
                    last = after = folder + _ABOVE_ALL
                    jumped = True
                    break
                items.append(self._entry_item(ws, row, view))
                last = after = row.id.split(":", 1)[1]
            if not jumped:
                break
        return items, (_page_token(last) if more and last is not None else None)

    def _entry_item(self, ws: str, row: Record, view: View) -> JsonObject:
        if view == "basic":
            return {**render(row.doc), "content": None}
        rec = self.svc.resources.get(MEMORY, ws, str(row.doc["id"]))
        return render(rec.doc if rec is not None else {**row.doc, "content": None})

    # -- versions -------------------------------------------------------------------------------------------------

    def _version_record(self, ws: str, store_id: str, version_id: str) -> Record:
        rec = self.svc.resources.get(MEMORY_VERSION, ws, version_id)
        if rec is None or rec.attrs.get("store_id") != store_id:
            raise NotFound(f"memory version {version_id!r} not found in memory store {store_id!r}")
        return rec

    @staticmethod
    def _render_version(doc: JsonObject, view: View) -> JsonObject:
        out = render(doc)
        if view == "basic":
            out["content"] = None
        return out

    def list_versions(self, ws: str, store_id: str, query: ListQuery, flt: VersionFilter, view: View) -> Page:
        self.store(ws, store_id)
        equals: dict[str, str | int] = {"store_id": store_id}
        if flt.memory_id is not None:
            equals = {"memory_id": flt.memory_id, "store_id": store_id}
        for name in ("session_id", "api_key_id", "service_account_id", "operation"):
            value = getattr(flt, name)
            if value is not None:
                equals[name] = value
        if flt.operation is not None and flt.operation not in ("created", "modified", "deleted"):
            raise InvalidRequest(f"operation: must be created, modified or deleted, got {flt.operation[:64]!r}")
        page = list_page(self.svc.resources, MEMORY_VERSION, ws, replace(query, equals=equals, include_archived=True))
        return [self._render_version(r.doc, view) for r in page.rows], page.next_page

    def get_version(self, ws: str, store_id: str, version_id: str, view: View) -> JsonObject:
        self.store(ws, store_id)
        return self._render_version(self._version_record(ws, store_id, version_id).doc, view)

    def redact_version(self, p: Principal, store_id: str, version_id: str) -> JsonObject:
        ws = p.workspace_id
        self.store(ws, store_id)
        rec = self._version_record(ws, store_id, version_id)
        live = self.svc.resources.get(MEMORY, ws, str(rec.doc["memory_id"]))
        if live is not None and live.doc.get("memory_version_id") == rec.id:
            raise InvalidRequest(
                f"version {version_id!r} is the current version of memory {live.id!r}; change or delete the memory"
                " before redacting it"
            )
        if rec.doc.get("redacted_at"):
            return self._render_version(rec.doc, "full")

        def redact(r: Record) -> None:
            r.doc.update(
                path=None,
                content=None,
                content_sha256=None,
                content_size_bytes=None,
                redacted_at=rfc3339(self.svc.clock.now()),
                redacted_by=actor(p),
            )

        return self._render_version(mutate(self.svc.resources, rec, redact).doc, "full")

    # -- sessions -------------------------------------------------------------------------------------------------

    def attach(self, ws: str, params: MemoryStoreResourceParams) -> JsonObject:
        """A `memory_store` session resource (api-reference §2.3.2): the store must exist in the workspace and be
        live; it mounts at `/mnt/memory/<slug of its name>`, read-only when `access` says so."""
        rec = self.stores.record(ws, params.memory_store_id)
        if rec.archived:
            raise InvalidRequest(
                f"memory_store_id: memory store {rec.id!r} is archived and cannot be attached to a session",
                error_code="memory_store_archived",
            )
        return {
            "type": "memory_store",
            "memory_store_id": rec.id,
            "access": params.access or "read_write",
            "description": rec.doc.get("description") or "",
            "instructions": params.instructions or "",
            "mount_path": f"{MEMORY_MOUNT_ROOT}/{mount_slug(str(rec.doc['name']))}",
            "name": rec.doc["name"],
        }

    # -- who may use a store --------------------------------------------------------------------------------------

    def check_work_access(self, session: Record, store_id: str, *, write: bool) -> None:
        """A work token uses exactly the stores attached to its session, and writes only the read_write ones."""
        attached = [
            r
            for r in cast(list[JsonObject], session.doc.get("resources") or [])
            if r.get("type") == "memory_store" and r.get("memory_store_id") == store_id
        ]
        if not attached:
            raise NotFound(f"memory store {store_id!r} not found", error_code="memory_store_not_found")
        if write and all(r.get("access") == "read_only" for r in attached):
            raise PermissionDenied(f"memory store {store_id!r} is attached to this session read-only")


# -- the sessions of a store ----------------------------------------------------------------------------------


def index_session(resources: ResourceStore, session: Record) -> None:
    """Record, before the session itself, which memory stores a new session has (`sessions.list(memory_store_id)`
    reads these entries in the session's (created_at, id) order; one left by a create that failed lists nothing)."""
    for res in cast(list[JsonObject], session.doc.get("resources") or []):
        if res.get("type") == "memory_store":
            store_id = str(res["memory_store_id"])
            entry = Record(
                STORE_SESSION,
                session.workspace_id,
                f"{store_id}:{session.id}",
                {"session_id": session.id},
                session.created_at,
                attrs={"store_id": store_id},
            )
            resources.insert(entry)


def sessions_of_store(resources: ResourceStore, ws: str, store_id: str, query: ListQuery) -> RecordPage:
    """One page of the sessions that have the store, with the query's other filters applied to them (a page may
    then hold fewer than `limit` sessions; its tokens still lead on)."""
    page = list_page(resources, STORE_SESSION, ws, replace(query, equals={"store_id": store_id}, any_of={}))
    out: list[Record] = []
    for entry in page.rows:
        rec = resources.get("session", ws, str(entry.doc["session_id"]))
        if rec is None or rec.doc.get("_deleted") or (rec.archived and not query.include_archived):
            continue
        if any(rec.attrs.get(k) != v for k, v in query.equals.items()):
            continue
        if any(rec.attrs.get(k) not in vs for k, vs in query.any_of.items()):
            continue
        out.append(rec)
    return RecordPage(out, page.next_page, page.prev_page)


def replace_doc(rec: Record, doc: JsonObject) -> Record:
    """`rec` with another document (the same revision: the store's replace bumps it)."""
    return Record(
        rec.kind, rec.workspace_id, rec.id, doc, rec.created_at, rec.rev, rec.archived, rec.attrs, rec.expires_at
    )
