"""Session resources (`resources` on session create, `client.beta.sessions.resources`; api-reference §2.3.2).

A session's resources live in its own document: `resources` holds their wire forms (what `sessions.retrieve` and
`resources.list` show), and the internal `_resource_tokens` maps a `github_repository` resource's id to its
authorization token, which no response, event or sandbox ever carries (render() drops `_` keys; the platform clones
outside the sandbox). A token is replaced by `resources.update` (rotation) and dropped with its resource.

Types (the SDK's three):
- `file`: a Files API file of the workspace (404 when missing or expired), mounted read-only at `mount_path`
  (default `/mnt/session/uploads/<file_id>`);
- `github_repository`: an `http(s)` git URL (any host: a self-hosted platform clones from where the operator points
  it), `authorization_token` (for private repositories), `checkout` branch or commit, `mount_path` (default
  `/workspace/<repo name>`);
- `memory_store`: served by `memory_stores` when one is wired (issue 15), else a 400 "not supported yet":
  `_memory_store` below is the one place that decides.
Limits (the reference gives none for sessions): at most MAX_RESOURCES per session, a deployment's maximum; mount
paths absolute, normalized, unique per session, and outside `/mnt/session/outputs` (where the session's outputs are
collected).
"""

from __future__ import annotations

import base64
import binascii
import logging
import posixpath
from collections.abc import Callable, Sequence
from typing import Protocol, cast
from urllib.parse import urlsplit

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.errors import InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_id
from managed_agents.ports import Record
from managed_agents.services.common import Services
from managed_agents.services.files import FileService
from managed_agents.services.records import mutate
from managed_agents.wire.session_resources import (
    FileResourceParams,
    GitHubRepositoryResourceParams,
    MemoryStoreResourceParams,
    ResourceParams,
)
from managed_agents.wire.sessions import MAX_SESSION_RESOURCES

log = logging.getLogger("managed_agents.session_resources")
MAX_RESOURCES = MAX_SESSION_RESOURCES  # a deployment's maximum (wire/sessions.py)
MAX_LIST_LIMIT = 1000
OUTPUTS_DIR = "/mnt/session/outputs"
UPLOADS_DIR = "/mnt/session/uploads"
WORKSPACE_DIR = "/workspace"
TOKENS = "_resource_tokens"  # session doc key: resource id -> authorization token


class MemoryStoreResources(Protocol):
    """What attaches a memory store to a session (the memory stores service, when wired)."""

    def attach(self, ws: str, params: MemoryStoreResourceParams) -> JsonObject:
        """The resource's wire form (`BetaManagedAgentsMemoryStoreResource`), after checking the store exists."""
        ...


def resources_of(doc: JsonObject) -> list[JsonObject]:
    return [dict(r) for r in cast(list[JsonObject], doc.get("resources") or [])]


def repository_token(session_doc: JsonObject, resource_id: str) -> str | None:
    """The platform's read of a repository resource's token (materialization only; never rendered)."""
    tokens = cast(dict[str, str], session_doc.get(TOKENS) or {})
    return tokens.get(resource_id)


class SessionResourceService:
    def __init__(self, svc: Services, files: FileService | None) -> None:
        self.svc = svc
        self.files = files
        self.memory_stores: MemoryStoreResources | None = None  # set by wiring once memory stores exist
        # called with (session id, resource) after resources.add: a running sandbox gets the file at once
        self.added_hooks: list[Callable[[str, JsonObject], object]] = []

    # -- building resources (create and add) ---------------------------------------------------------------

    def prepare(
        self, ws: str, params: Sequence[ResourceParams], existing: Sequence[JsonObject] = (), *, at: str | None = None
    ) -> tuple[list[JsonObject], dict[str, str]]:
        """The wire forms of new resources and the tokens of the repositories among them, checked against each
        other and the `existing` ones (mount paths unique, the count within MAX_RESOURCES). `at`: what messages call
        the resource (default `resources[i]`)."""
        if len(existing) + len(params) > MAX_RESOURCES:
            raise InvalidRequest(f"resources: a session has at most {MAX_RESOURCES} resources")
        now = rfc3339(self.svc.clock.now())
        taken = {str(r["mount_path"]): str(r.get("id") or r.get("memory_store_id")) for r in existing}
        out: list[JsonObject] = []
        tokens: dict[str, str] = {}
        for i, p in enumerate(params):
            where = at or f"resources[{i}]"
            if isinstance(p, MemoryStoreResourceParams):
                doc = self._memory_store(ws, p, where)
            else:
                doc = {"id": new_id("session_resource"), "type": p.type}
                if isinstance(p, FileResourceParams):
                    doc.update(self._file(ws, p, where))
                else:
                    doc.update(_repository(p, where))
                    if p.authorization_token is not None:
                        tokens[str(doc["id"])] = p.authorization_token
                doc.update({"created_at": now, "updated_at": now})
            mount = str(doc.get("mount_path") or "")
            if mount in taken:
                raise InvalidRequest(f"{where}.mount_path: {mount!r} is already used by resource {taken[mount]!r}")
            for other in taken:
                if mount.startswith(other + "/") or other.startswith(mount + "/"):
                    raise InvalidRequest(f"{where}.mount_path: {mount!r} overlaps {other!r} (resource {taken[other]})")
            taken[mount] = str(doc.get("id") or doc.get("memory_store_id"))
            out.append(doc)
        return out, tokens

    def _file(self, ws: str, p: FileResourceParams, where: str) -> JsonObject:
        if self.files is None:
            raise InvalidRequest(f"{where}: file resources need the Files API, which this deployment does not have")
        self.files.record(ws, p.file_id)  # 404 file_not_found / file_expired
        mount = mount_path(p.mount_path, f"{UPLOADS_DIR}/{p.file_id}", f"{where}.mount_path")
        return {"file_id": p.file_id, "mount_path": mount}

    def _memory_store(self, ws: str, p: MemoryStoreResourceParams, where: str) -> JsonObject:
        """The hook for memory stores (issue 15): wire `memory_stores` and they are served."""
        if self.memory_stores is None:
            raise InvalidRequest(f"{where}: memory_store resources are not supported by this server yet")
        return self.memory_stores.attach(ws, p)

    # -- the API --------------------------------------------------------------------------------------------

    def _session(self, ws: str, sid: str) -> Record:
        rec = self.svc.resources.get("session", ws, sid)
        if rec is None or rec.doc.get("_deleted"):
            raise NotFound(f"session {sid!r} not found")
        return rec

    def _live_session(self, ws: str, sid: str) -> Record:
        rec = self._session(ws, sid)
        if rec.archived:
            raise InvalidRequest(f"session {sid!r} is archived; its resources cannot be changed")
        return rec

    def add(self, ws: str, sid: str, params: ResourceParams) -> JsonObject:
        if not isinstance(params, FileResourceParams):
            raise InvalidRequest(
                f"type: resources.add takes file resources; a {params.type} resource is given when the session is"
                " created"
            )
        rec = self._live_session(ws, sid)
        added: list[JsonObject] = []

        def change(r: Record) -> None:
            added.clear()
            new, _ = self.prepare(ws, [params], resources_of(r.doc), at="resource")
            added.extend(new)
            r.doc["resources"] = [*resources_of(r.doc), *new]
            r.doc["updated_at"] = new[0]["created_at"]

        mutate(self.svc.resources, rec, change)
        for hook in self.added_hooks:
            try:
                hook(sid, added[0])
            except Exception:  # the resource is added; the next sandbox mounts it whatever happened here
                log.exception("a session resource hook failed", extra={"session_id": sid})
        return added[0]

    def list(self, ws: str, sid: str, limit: int | None, page: str | None) -> tuple[list[JsonObject], str | None]:
        """All resources (`limit` omitted), else a page of at most `limit` (1 to 1000) after the `page` cursor."""
        items = resources_of(self._session(ws, sid).doc)
        if limit is not None and not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidRequest(f"limit: must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        start = _decode(page, items) if page else 0
        end = len(items) if limit is None else start + limit
        nxt = _encode(items[end - 1]) if end < len(items) else None
        return items[start:end], nxt

    def get(self, ws: str, sid: str, rid: str) -> JsonObject:
        return _find(resources_of(self._session(ws, sid).doc), sid, rid)

    def update(self, ws: str, sid: str, rid: str, token: str) -> JsonObject:
        rec = self._live_session(ws, sid)
        found = _find(resources_of(rec.doc), sid, rid)
        if found["type"] != "github_repository":
            raise InvalidRequest(
                f"authorization_token: only github_repository resources have a token; {rid!r} is a {found['type']}"
            )
        updated: list[JsonObject] = []

        def change(r: Record) -> None:
            now = rfc3339(self.svc.clock.now())
            items = resources_of(r.doc)
            item = _find(items, sid, rid)
            item["updated_at"] = now
            r.doc["resources"] = items
            r.doc[TOKENS] = {**cast(dict[str, str], r.doc.get(TOKENS) or {}), rid: token}
            r.doc["updated_at"] = now
            updated[:] = [item]

        mutate(self.svc.resources, rec, change)
        return updated[0]

    def delete(self, ws: str, sid: str, rid: str) -> JsonObject:
        rec = self._session(ws, sid)
        _find(resources_of(rec.doc), sid, rid)

        def change(r: Record) -> None:
            items = resources_of(r.doc)
            _find(items, sid, rid)
            r.doc["resources"] = [x for x in items if x.get("id") != rid]
            r.doc[TOKENS] = {k: v for k, v in cast(dict[str, str], r.doc.get(TOKENS) or {}).items() if k != rid}
            r.doc["updated_at"] = rfc3339(self.svc.clock.now())

        mutate(self.svc.resources, rec, change)
        return {"id": rid, "type": "session_resource_deleted"}


def mount_path(value: str | None, default: str, where: str) -> str:
    """An absolute, normalized path that is not `/` and not under the outputs directory."""
    raw = default if value is None else value
    if not raw.startswith("/"):
        raise InvalidRequest(f"{where}: {raw[:200]!r} must be an absolute path")
    if "\x00" in raw or any(part == ".." for part in raw.split("/")):
        raise InvalidRequest(f"{where}: {raw[:200]!r} must not contain '..' or NUL")
    path = posixpath.normpath(raw)
    if path == "/":
        raise InvalidRequest(f"{where}: cannot mount at '/'")
    if path == OUTPUTS_DIR or path.startswith(OUTPUTS_DIR + "/"):
        raise InvalidRequest(f"{where}: {path!r} is inside {OUTPUTS_DIR}, where the session's outputs are collected")
    return path


def _repository(p: GitHubRepositoryResourceParams, where: str) -> JsonObject:
    parts = urlsplit(p.url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest(f"{where}.url: {p.url[:200]!r} is not an http(s) URL of a git repository")
    if parts.username or parts.password:
        raise InvalidRequest(f"{where}.url: give credentials as authorization_token, not in the URL")
    name = parts.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    if not name or name in (".", ".."):
        raise InvalidRequest(f"{where}.url: {p.url[:200]!r} does not name a repository")
    checkout = p.checkout.model_dump() if p.checkout is not None else None
    return {
        "url": p.url,
        "mount_path": mount_path(p.mount_path, f"{WORKSPACE_DIR}/{name}", f"{where}.mount_path"),
        "checkout": checkout,
    }


def _find(items: list[JsonObject], sid: str, rid: str) -> JsonObject:
    for item in items:
        if item.get("id") == rid:
            return item
    raise NotFound(f"resource {rid!r} not found in session {sid!r}")


def _encode(item: JsonObject) -> str:
    return "page_" + base64.urlsafe_b64encode(str(item.get("id")).encode()).decode().rstrip("=")


def _decode(page: str, items: list[JsonObject]) -> int:
    """The index after the resource a cursor names (a resource deleted since: the same position is lost: 400)."""
    try:
        if not page.startswith("page_"):
            raise ValueError
        raw = page[5:]
        rid = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"page: {page[:100]!r} is not a page cursor returned by this endpoint") from exc
    for i, item in enumerate(items):
        if item.get("id") == rid:
            return i + 1
    raise InvalidRequest(
        f"page: {page[:100]!r} is not a cursor of this session's resources (or its resource was deleted)"
    )
