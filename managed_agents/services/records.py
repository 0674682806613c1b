"""Read-modify-write of stored resources under optimistic concurrency (the store's revision check)."""

from __future__ import annotations

from collections.abc import Callable

from managed_agents.domain.errors import NotFound, StaleRevision
from managed_agents.ports import Record, ResourceStore


def mutate(store: ResourceStore, rec: Record, change: Callable[[Record], None], *, attempts: int = 50) -> Record:
    """Apply `change` to a fresh copy of the record and write it; on a lost race re-read and re-apply."""
    current: Record | None = rec
    for _ in range(attempts):
        if current is None:
            raise NotFound(f"{rec.kind} {rec.id} no longer exists")
        draft = Record(
            current.kind,
            current.workspace_id,
            current.id,
            dict(current.doc),
            current.created_at,
            current.rev,
            current.archived,
            dict(current.attrs),
            current.expires_at,
        )
        change(draft)
        try:
            return store.replace(draft, expected_rev=current.rev)
        except StaleRevision:
            current = store.get(rec.kind, rec.workspace_id, rec.id)
    raise StaleRevision(f"{rec.kind} {rec.id}: too many concurrent writers")
