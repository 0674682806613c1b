"""Credentials: API keys, environment keys and work tokens. All are stored as SHA-256 hashes.

* API keys (`sk-ma-…`) belong to one workspace and can call every endpoint of it.
* Environment keys (`ek-ma-…`) belong to one `self_hosted` environment. A worker polls, acknowledges and lists
  that environment's work queue with one, and may read the sessions of that environment. Issued, listed and
  revoked with an API key (`/v1/environments/{id}/keys`) or the CLI (`managed-agents env-keys`).
* Work tokens (`wt-ma-…`) are the `sessions_token` inside a work item's `secret`: short-lived (they die with
  the item's lease) and scoped to that one item and its session. They are the only credential that may post
  `user.tool_result`.
* Every key is looked up by the SHA-256 of its secret (`ResourceStore.find(kind, "hash", ...)`), which both store
  adapters answer consistently: a key works on the request right after the one that created it (the DynamoDB
  adapter reads an item addressed by the hash, not its eventually consistent index).
* The bootstrap key (`ensure_bootstrap_key`) is an API key whose secret the deployment generated, not this
  service: on AWS, Secrets Manager's random string (no `sk-ma-` prefix; any secret of at least
  `BOOTSTRAP_MIN_LENGTH` URL-safe characters is accepted). Its workspace and key ids derive from fixed parts and
  the secret's hash, so any number of API containers can register it at once and exactly one record results.
* API keys and environment keys that authenticated are cached for `CACHE_SECONDS` (by the secret's hash) where the
  deployment has a `RevocationMarker` (embedded: a file in the data dir): a request with a cached key needs no
  store read, and no thread (api/edge.py checks the cache on the event loop). A revocation, by this process or any
  other on the same data dir, marks it, and every entry cached before the mark is dropped on its next use: a revoked
  key fails on the next request, as without the cache. Work tokens are never cached (they die with their lease).
  Without a marker (AWS: containers share no file) nothing is cached.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import cast

from managed_agents.domain.clock import Clock, rfc3339
from managed_agents.domain.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import deterministic_id, new_id
from managed_agents.ports import ListQuery, Record, ResourceStore, RevocationMarker
from managed_agents.services.common import render
from managed_agents.services.records import mutate

KEY_PREFIX = "sk-ma-"
ENV_KEY_PREFIX = "ek-ma-"
WORK_TOKEN_PREFIX = "wt-ma-"
SYSTEM = "_system"
BOOTSTRAP_MIN_LENGTH = 32
BOOTSTRAP_KEY_NAME = "admin (bootstrap)"
CACHE_SECONDS = 60.0  # longer than an event stream's credential re-check (sse_ping_seconds)
CACHE_MAX_ENTRIES = 10_000
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    workspace_id: str
    key_id: str
    kind: str = "api_key"  # api_key | environment_key | work
    environment_id: str | None = None  # environment keys and work tokens
    session_id: str | None = None  # work tokens
    work_id: str | None = None  # work tokens

    def describe(self) -> str:
        if self.kind == "environment_key":
            return f"an environment key of {self.environment_id!r}"
        if self.kind == "work":
            return f"the work token of {self.work_id!r} (session {self.session_id!r})"
        return "an API key"


@dataclass(frozen=True)
class _Cached:
    principal: Principal
    version: int  # the revocation marker's version read before the key was looked up
    until: float  # time.monotonic()


class KeyService:
    def __init__(self, resources: ResourceStore, clock: Clock, *, revocations: RevocationMarker | None = None) -> None:
        self.resources = resources
        self.clock = clock
        self.revocations = revocations
        self._cache: dict[str, _Cached] = {}
        self._cache_lock = threading.Lock()

    def cached(self, secret: str | None) -> Principal | None:
        """The principal of a key that authenticated within CACHE_SECONDS with no revocation since, else None
        (the caller then runs `authenticate`). No store read: one `stat` of the revocation marker."""
        if self.revocations is None or not secret:
            return None
        digest = hash_key(secret)
        hit = self._cache.get(digest)
        if hit is None:
            return None
        if hit.until < time.monotonic() or hit.version != self.revocations.version():
            with self._cache_lock:
                self._cache.pop(digest, None)
            return None
        return hit.principal

    def _remember(self, digest: str, p: Principal, version: int) -> None:
        with self._cache_lock:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[digest] = _Cached(p, version, time.monotonic() + CACHE_SECONDS)

    def _revoked(self, key_id: str) -> None:
        """After a revocation is stored: drop this process's entries of the key and tell the other processes."""
        with self._cache_lock:
            for digest in [d for d, c in self._cache.items() if c.principal.key_id == key_id]:
                del self._cache[digest]
        if self.revocations is not None:
            self.revocations.mark()

    def create_workspace(self, name: str = "default") -> str:
        now = self.clock.now()
        ws = new_id("workspace")
        doc: JsonObject = {"id": ws, "type": "workspace", "name": name, "created_at": rfc3339(now)}
        self.resources.insert(Record("workspace", SYSTEM, ws, doc, now))
        return ws

    def workspaces(self) -> list[JsonObject]:
        rows, _ = self.resources.list_records("workspace", SYSTEM, ListQuery(limit=1000, order="asc"))
        return [r.doc for r in rows]

    def create_key(self, workspace_id: str, name: str = "") -> tuple[JsonObject, str]:
        if self.resources.get("workspace", SYSTEM, workspace_id) is None:
            raise NotFound(f"workspace {workspace_id!r} not found")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        doc: JsonObject = {
            "id": new_id("api_key"),
            "type": "api_key",
            "name": name,
            "workspace_id": workspace_id,
            "hint": secret[:10] + "…" + secret[-4:],
            "created_at": rfc3339(now),
            "revoked_at": None,
        }
        self.resources.insert(Record("api_key", SYSTEM, str(doc["id"]), doc, now, attrs={"hash": hash_key(secret)}))
        return render(doc), secret

    def ensure_bootstrap_key(self, secret: str, *, workspace_name: str = "default") -> tuple[str, str, bool]:
        """Register a deployment-generated admin key: idempotent and safe to race (deterministic ids, conditional
        inserts). Returns (workspace id, key id, whether this call created the key).

        A key created here for a new secret (the deployment rotated it) revokes the earlier bootstrap keys; a
        bootstrap key that exists, revoked or not, is left as it is (a revoked one stays revoked).
        """
        if len(secret) < BOOTSTRAP_MIN_LENGTH or not set(secret) <= _URL_SAFE:
            raise ValueError(
                f"the bootstrap API key must be at least {BOOTSTRAP_MIN_LENGTH} characters of A-Z a-z 0-9 - _"
                f" (got {len(secret)} characters)"
            )
        if secret.startswith((ENV_KEY_PREFIX, WORK_TOKEN_PREFIX)):
            raise ValueError(f"the bootstrap API key must not start with {ENV_KEY_PREFIX!r} or {WORK_TOKEN_PREFIX!r}")
        now = self.clock.now()
        ws = deterministic_id("workspace", "bootstrap")
        ws_doc: JsonObject = {"id": ws, "type": "workspace", "name": workspace_name, "created_at": rfc3339(now)}
        try:
            self.resources.insert(Record("workspace", SYSTEM, ws, ws_doc, now))
        except Conflict:
            pass
        digest = hash_key(secret)
        key_id = deterministic_id("api_key", "bootstrap", digest)
        doc: JsonObject = {
            "id": key_id,
            "type": "api_key",
            "name": BOOTSTRAP_KEY_NAME,
            "workspace_id": ws,
            "hint": secret[:4] + "…" + secret[-4:],
            "created_at": rfc3339(now),
            "revoked_at": None,
            "bootstrap": True,
        }
        try:
            self.resources.insert(Record("api_key", SYSTEM, key_id, doc, now, attrs={"hash": digest}))
        except Conflict:
            return ws, key_id, False
        for old in self.list_keys():
            if old.get("bootstrap") and old["id"] != key_id and not old.get("revoked_at"):
                try:
                    self.revoke(str(old["id"]))
                except NotFound:  # deleted meanwhile
                    continue
        return ws, key_id, True

    def list_keys(self) -> list[JsonObject]:
        rows, _ = self.resources.list_records(
            "api_key", SYSTEM, ListQuery(limit=1000, order="asc", include_archived=True)
        )
        return [render(r.doc) for r in rows]

    def revoke(self, key_id: str) -> JsonObject:
        rec = self.resources.get("api_key", SYSTEM, key_id)
        if rec is None:
            raise NotFound(f"api key {key_id!r} not found")

        def change(r: Record) -> None:
            r.archived = True
            r.doc["revoked_at"] = r.doc.get("revoked_at") or rfc3339(self.clock.now())

        doc = render(mutate(self.resources, rec, change).doc)
        self._revoked(key_id)
        return doc

    # -- environment keys --------------------------------------------------------------------------------------

    def create_environment_key(self, workspace_id: str, environment_id: str, name: str = "") -> tuple[JsonObject, str]:
        env = self.resources.get("environment", workspace_id, environment_id)
        if env is None:
            raise NotFound(f"environment {environment_id!r} not found")
        config = cast(JsonObject, env.doc.get("config") or {})
        if config.get("type") != "self_hosted":
            raise InvalidRequest(
                f"environment {environment_id!r} is a {config.get('type')} environment: its sandboxes are provisioned"
                " by the platform; environment keys are for self_hosted environments"
            )
        if env.archived:
            raise InvalidRequest(f"environment {environment_id!r} is archived")
        secret = ENV_KEY_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        key_id = new_id("environment_key")
        doc: JsonObject = {
            "id": key_id,
            "type": "environment_key",
            "environment_id": environment_id,
            "name": name,
            "hint": secret[:10] + "…" + secret[-4:],
            "created_at": rfc3339(now),
            "revoked_at": None,
        }
        attrs: dict[str, str | int | None] = {"hash": hash_key(secret), "environment_id": environment_id}
        self.resources.insert(Record("environment_key", workspace_id, key_id, doc, now, attrs=attrs))
        return render(doc), secret

    def list_environment_keys(self, workspace_id: str, environment_id: str) -> list[JsonObject]:
        if self.resources.get("environment", workspace_id, environment_id) is None:
            raise NotFound(f"environment {environment_id!r} not found")
        query = ListQuery(limit=1000, order="asc", include_archived=True, equals={"environment_id": environment_id})
        rows, _ = self.resources.list_records("environment_key", workspace_id, query)
        return [render(r.doc) for r in rows]

    def revoke_environment_key(self, workspace_id: str, environment_id: str, key_id: str) -> JsonObject:
        rec = self.resources.get("environment_key", workspace_id, key_id)
        if rec is None or rec.attrs.get("environment_id") != environment_id:
            raise NotFound(f"environment key {key_id!r} of environment {environment_id!r} not found")

        def change(r: Record) -> None:
            r.archived = True
            r.doc["revoked_at"] = r.doc.get("revoked_at") or rfc3339(self.clock.now())

        doc = render(mutate(self.resources, rec, change).doc)
        self._revoked(key_id)
        return doc

    # -- authentication -----------------------------------------------------------------------------------------

    def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise AuthenticationFailed("missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'")
        if secret.startswith(WORK_TOKEN_PREFIX):
            return self._work_token(secret)
        # the marker's version before the lookup: a revocation stored while it runs makes the entry stale at once
        version = self.revocations.version() if self.revocations is not None else 0
        digest = hash_key(secret)
        p = self._environment_key(digest) if secret.startswith(ENV_KEY_PREFIX) else self._api_key(digest)
        if self.revocations is not None:
            self._remember(digest, p, version)
        return p

    def _api_key(self, digest: str) -> Principal:
        found = [r for r in self.resources.find("api_key", "hash", [digest]) if not r.archived]
        if not found:
            raise AuthenticationFailed("invalid API key")
        doc = found[0].doc
        return Principal(workspace_id=cast(str, doc["workspace_id"]), key_id=found[0].id)

    def _environment_key(self, digest: str) -> Principal:
        found = [r for r in self.resources.find("environment_key", "hash", [digest]) if not r.archived]
        if not found:
            raise AuthenticationFailed("invalid or revoked environment key")
        rec = found[0]
        return Principal(
            rec.workspace_id, rec.id, kind="environment_key", environment_id=str(rec.attrs["environment_id"])
        )

    def _work_token(self, secret: str) -> Principal:
        found = self.resources.find("work", "token", [hash_key(secret)])
        if not found:
            raise AuthenticationFailed("invalid or expired work token")
        rec = found[0]
        return Principal(
            rec.workspace_id,
            rec.id,
            kind="work",
            environment_id=str(rec.attrs["environment_id"]),
            session_id=str(rec.attrs["session_id"]),
            work_id=rec.id,
        )
