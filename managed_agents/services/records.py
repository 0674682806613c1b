"""Read-modify-write of stored resources under optimistic concurrency (the store's revision check)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace as with_fields

from managed_agents.domain.errors import NotFound, StaleRevision
from managed_agents.ports import OutboxEntry, Record, ResourceStore

# the webhook events a change causes, from the record before and after it (Services.events): written with it
Events = Callable[[Record, Record], Sequence[OutboxEntry]]


def mutate(
    store: ResourceStore,
    rec: Record,
    change: Callable[[Record], None],
    *,
    attempts: int = 50,
    events: Events | None = None,
) -> Record:
    """Apply `change` to a fresh copy of the record and write it; on a lost race re-read and re-apply. `events`:
    the outbox entries to record in the same transaction (ResourceStore.write_all), asked again on each attempt."""
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
        outbox = events(current, draft) if events is not None else ()
        try:
            if outbox:
                store.write_all(replaces=[(draft, current.rev)], outbox=outbox)
                return with_fields(draft, rev=current.rev + 1)
            return store.replace(draft, expected_rev=current.rev)
        except StaleRevision:
            current = store.get(rec.kind, rec.workspace_id, rec.id)
    raise StaleRevision(f"{rec.kind} {rec.id}: too many concurrent writers")
