"""API keys and workspaces. Keys are stored as SHA-256 hashes; each belongs to exactly one workspace."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import cast

from managed_agents.domain.clock import Clock, rfc3339
from managed_agents.domain.errors import AuthenticationFailed, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_id
from managed_agents.ports import ListQuery, Record, ResourceStore
from managed_agents.services.common import render
from managed_agents.services.records import mutate

KEY_PREFIX = "sk-ma-"
SYSTEM = "_system"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    workspace_id: str
    key_id: str


class KeyService:
    def __init__(self, resources: ResourceStore, clock: Clock) -> None:
        self.resources = resources
        self.clock = clock

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

        return render(mutate(self.resources, rec, change).doc)

    def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise AuthenticationFailed("missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'")
        found = [r for r in self.resources.find("api_key", "hash", [hash_key(secret)]) if not r.archived]
        if not found:
            raise AuthenticationFailed("invalid API key")
        doc = found[0].doc
        return Principal(workspace_id=cast(str, doc["workspace_id"]), key_id=found[0].id)
