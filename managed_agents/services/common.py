"""Shared rules of the resource API: metadata limits and patches, cursors, list pages, rendering."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import cast

from managed_agents.domain.clock import Clock, rfc3339
from managed_agents.domain.errors import InvalidRequest
from managed_agents.domain.events import JsonObject
from managed_agents.ports import ListQuery, Orchestrator, Record, ResourceStore
from managed_agents.services.records import mutate

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


@dataclass
class Services:
    """What the resource services need; built once by wiring.py."""

    resources: ResourceStore
    clock: Clock
    orchestrator: Orchestrator | None = None


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


def encode_cursor(rec: Record) -> str:
    raw = json.dumps([rfc3339(rec.created_at), rec.id], separators=(",", ":")).encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(page: str | None) -> tuple[str, str] | None:
    if not page:
        return None
    try:
        if not page.startswith("page_"):
            raise ValueError
        raw = page[5:]
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not (isinstance(values, list) and len(values) == 2 and all(isinstance(v, str) for v in values)):
            raise ValueError
        return (values[0], values[1])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"page: {page[:100]!r} is not a page cursor returned by this endpoint") from exc


def check_limit(limit: int | None, *, default: int = 20, maximum: int = 100) -> int:
    if limit is None:
        return default
    if limit < 1 or limit > maximum:
        raise InvalidRequest(f"limit: must be between 1 and {maximum}, got {limit}")
    return limit


def list_page(store: ResourceStore, kind: str, workspace_id: str, query: ListQuery) -> tuple[list[Record], str | None]:
    rows, more = store.list_records(kind, workspace_id, query)
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


def render(doc: JsonObject) -> JsonObject:
    """The wire form of a stored document: internal keys (leading underscore) never leave."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def as_list(value: object) -> list[JsonObject]:
    return cast(list[JsonObject], value or [])


def archive_record(store: ResourceStore, clock: Clock, rec: Record) -> Record:
    """Soft-archive: set `archived_at` once; archiving again returns the record as it is."""
    if rec.archived:
        return rec

    def change(r: Record) -> None:
        if not r.archived:
            now = rfc3339(clock.now())
            r.archived = True
            r.doc["archived_at"] = now
            r.doc["updated_at"] = now

    return mutate(store, rec, change)
