"""Which attributes of stored resources are looked up by value, per kind: declared once, read by both store adapters.

`ResourceStore.find(kind, attr, values)` (any workspace) and list filters `equals={attr: value}` on these attributes
are index reads in both adapters: the DynamoDB store gives each one a lookup GSI slot (the position in the tuple is
the slot, `lookup1..4`: append new attributes, never reorder, since the slot is persisted in every item), and the
SQLite store a partial expression index on `json_extract(attrs, '$.<attr>') WHERE kind = '<kind>'`. A new resource
declares its lookups here, beside the others (style.md: "its store lookups declared where both store adapters read
them").
"""

from __future__ import annotations

from collections.abc import Mapping

LOOKUPS: Mapping[str, tuple[str, ...]] = {
    "session": ("status", "agent_id", "environment_id", "deployment_id"),  # all 4 DynamoDB slots are taken
    "agent_version": ("agent_id",),
    "api_key": ("hash",),
    "environment_key": ("hash", "environment_id"),
    # the work queue (services/work.py): a session's items, a work token's item, an environment's queue, and the
    # live items by state (the reaper's `find("work", "state", LEASED)`)
    "work": ("session_id", "token", "environment_id", "state"),
    "file": ("scope_id",),  # a session's output files (`files.list(scope_id=...)`)
    "skill": ("name",),  # a skill's name is unique in its workspace (services/skills.py)
    "skill_version": ("skill_id",),  # a skill's versions
    # memory stores (services/memory_stores.py): a store's memories and versions, a memory's versions
    "memory": ("store_id",),
    "memory_version": ("store_id", "memory_id"),
    # services/deployments.py: the embedded scheduler's scheduled deployments; a deployment's runs
    # and (AWS) the deployments whose external schedule has not followed their last write yet
    "deployment": ("agent_id", "scheduled", "schedule_sync"),
    "deployment_run": ("deployment_id", "pending"),  # a deployment's runs; the runs claimed and not finished
    # services/webhooks.py: an endpoint's delivery log, the deliverer's pending deliveries
    "webhook_delivery": ("endpoint_id", "state"),
    "memory_store_session": ("store_id",),  # the sessions that have a store
    "webhook_endpoint": ("state",),  # whether any endpoint is enabled at all (no outbox rows written when none is)
    "session_thread": ("session_id",),  # services/threads.py: a session's child threads
}
# Sparse lookups: (kind, attr) -> the only values written to the DynamoDB index. A work item leaves the state index
# when it stops, so the reaper's Query reads live items only. These are services/work.py's LIVE states (a unit test
# pins it).
SPARSE_LOOKUPS: Mapping[tuple[str, str], frozenset[str | int]] = {
    ("work", "state"): frozenset({"queued", "starting", "active", "stopping"}),
    ("deployment", "scheduled"): frozenset({"yes"}),  # active, scheduled and not archived
    ("deployment", "schedule_sync"): frozenset({"pending"}),
    ("deployment_run", "pending"): frozenset({"yes"}),
    ("webhook_delivery", "state"): frozenset({"pending"}),
}


def lookup_attributes() -> list[str]:
    """Every attribute some kind looks up, once each, in declaration order."""
    return list(dict.fromkeys(attr for attrs in LOOKUPS.values() for attr in attrs))
