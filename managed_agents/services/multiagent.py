"""An agent's `multiagent` configuration: validated, merged on update and resolved (api-reference §4.5).

Two shapes, as the SDK defines them:

* `multiagent_20261001`: three levels, `advisor` (default disabled), `subagents` and `workflows` (default enabled,
  inline agents enabled, no predefined agents). On update it merges into a stored `multiagent_20261001` level by
  level: an omitted key keeps its stored value, a key sent as null takes its default, an object sent with another
  `type` replaces the stored one (its omitted keys take their defaults), a `predefined_agents` list replaces the
  stored list. With inline agents disabled, `predefined_agents` must name at least one agent.
* `coordinator` (legacy): a roster of 1-20 entries, each an agent id, `{type: "agent", id, version?}`, `{type:
  "self"}` (at most one) or `{type: "advisor", model}` (at most one); entries must name distinct agents.

Every agent reference resolves to `{type: "agent", id, version}` (the latest version when none is given; `self` is
the agent that owns the configuration, at its own version, and follows it as the agent changes). Referenced agents
must exist in the workspace and not be archived, and must not themselves have `multiagent` set (depth limit 1: the
SDK states it for the roster; [inferred] for predefined agents as well, since a delegated thread runs one agent).

Sessions copy the configuration with the full definition of every referenced agent (`session_multiagent`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from pydantic import BaseModel

from managed_agents.domain.errors import InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.domain.threads import THREAD_AGENT_FIELDS
from managed_agents.wire.agents import (
    AdvisorEnabled,
    AdvisorEntry,
    AgentRef,
    CoordinatorParams,
    DelegationEnabled,
    Multiagent20261001Params,
    PredefinedAgent,
    SelfRef,
)

# (agent id, version or None for the latest) -> the stored document of that version; raises NotFound
Snapshot = Callable[[str, int | None], JsonObject]

MAX_PREDEFINED = 20
LEVELS = ("advisor", "subagents", "workflows")


def _default(level: str) -> JsonObject:
    if level == "advisor":
        return {"type": "disabled"}
    return {"type": "enabled", "inline_agents": {"type": "enabled"}, "predefined_agents": []}


class _Resolver:
    def __init__(self, owner_id: str, owner_version: int, snapshot: Snapshot) -> None:
        self.owner_id = owner_id
        self.owner_version = owner_version
        self.snapshot = snapshot

    def ref(self, entry: str | AgentRef | SelfRef, where: str) -> JsonObject:
        if isinstance(entry, SelfRef):
            return {"type": "agent", "id": self.owner_id, "version": self.owner_version}
        agent_id, version = (entry, None) if isinstance(entry, str) else (entry.id, entry.version)
        if agent_id == self.owner_id:  # the owner by its id: the same as `self`
            return {"type": "agent", "id": self.owner_id, "version": self.owner_version}
        try:
            doc = self.snapshot(agent_id, version)
        except NotFound as exc:  # of the agent or of its version: the request names it, so it is the request's fault
            raise InvalidRequest(f"{where}: {exc.message}") from exc
        if doc.get("archived_at"):
            raise InvalidRequest(f"{where}: agent {agent_id!r} is archived")
        if doc.get("multiagent"):
            raise InvalidRequest(
                f"{where}: agent {agent_id!r} has its own multiagent configuration; referenced agents must not"
                " (depth limit 1)"
            )
        return {"type": "agent", "id": agent_id, "version": int(cast(int, doc["version"]))}

    def refs(self, entries: list[PredefinedAgent], where: str) -> list[JsonObject]:
        out = [self.ref(e, f"{where}[{i}]") for i, e in enumerate(entries)]
        _distinct(out, where)
        return out


def _distinct(refs: list[JsonObject], where: str) -> None:
    ids = [r["id"] for r in refs if r["type"] == "agent"]
    if len(set(ids)) != len(ids):
        raise InvalidRequest(f"{where}: entries must reference distinct agents (after resolving `self` and ids)")


def _sent(model: BaseModel | None, key: str) -> bool:
    return model is not None and key in model.model_fields_set


def _level(level: str, sent: BaseModel | None, stored: JsonObject | None, resolver: _Resolver) -> JsonObject:
    """One level of a `multiagent_20261001`: the sent object merged into the stored one of the same type."""
    if sent is None:
        return dict(stored) if stored is not None else _default(level)
    if isinstance(sent, AdvisorEnabled):
        return {"type": "enabled", "model": sent.model}
    if not isinstance(sent, DelegationEnabled):
        return {"type": "disabled"}
    base = dict(stored) if stored is not None and stored.get("type") == "enabled" else _default(level)
    if _sent(sent, "inline_agents"):
        base["inline_agents"] = (
            sent.inline_agents.model_dump(mode="json") if sent.inline_agents else {"type": "enabled"}
        )
    if _sent(sent, "predefined_agents"):
        base["predefined_agents"] = resolver.refs(
            list(sent.predefined_agents or []), f"multiagent.{level}.predefined_agents"
        )
    if base["inline_agents"] == {"type": "disabled"} and not base["predefined_agents"]:
        raise InvalidRequest(
            f"multiagent.{level}: with inline_agents disabled, predefined_agents must name at least one agent"
        )
    return base


def resolve_multiagent(
    params: CoordinatorParams | Multiagent20261001Params,
    stored: JsonObject | None,
    *,
    owner_id: str,
    owner_version: int,
    snapshot: Snapshot,
) -> JsonObject:
    """The stored (response) form of a create's or an update's `multiagent` (`stored`: the current one)."""
    resolver = _Resolver(owner_id, owner_version, snapshot)
    if isinstance(params, CoordinatorParams):
        roster: list[JsonObject] = []
        selves = advisors = 0
        for i, entry in enumerate(params.agents):
            where = f"multiagent.agents[{i}]"
            if isinstance(entry, AdvisorEntry):
                advisors += 1
                roster.append({"type": "advisor", "model": entry.model})
                continue
            selves += isinstance(entry, SelfRef)
            roster.append(resolver.ref(entry, where))
        if selves > 1:
            raise InvalidRequest("multiagent.agents: at most one `self` entry is allowed")
        if advisors > 1:
            raise InvalidRequest("multiagent.agents: at most one `advisor` entry is allowed")
        _distinct(roster, "multiagent.agents")
        return {"type": "coordinator", "agents": roster}
    merge = stored if stored is not None and stored.get("type") == "multiagent_20261001" else None
    out: JsonObject = {"type": "multiagent_20261001"}
    for level in LEVELS:
        previous = cast(JsonObject | None, merge.get(level)) if merge is not None else None
        if _sent(params, level):
            out[level] = _level(
                level, getattr(params, level), None if getattr(params, level) is None else previous, resolver
            )
        else:
            out[level] = dict(previous) if previous is not None else _level(level, None, None, resolver)
    return out


def follow_owner(multiagent: JsonObject | None, owner_id: str, version: int) -> JsonObject | None:
    """The configuration with the owner's own references (`self`) moved to its new version."""
    if not multiagent:
        return multiagent

    def moved(ref: JsonObject) -> JsonObject:
        return {**ref, "version": version} if ref.get("type") == "agent" and ref.get("id") == owner_id else ref

    out = dict(multiagent)
    if out["type"] == "coordinator":
        out["agents"] = [moved(r) for r in cast(list[JsonObject], out["agents"])]
        return out
    for level in ("subagents", "workflows"):
        lv = dict(cast(JsonObject, out[level]))
        if lv.get("type") == "enabled":
            lv["predefined_agents"] = [moved(r) for r in cast(list[JsonObject], lv["predefined_agents"])]
        out[level] = lv
    return out


def session_multiagent(multiagent: JsonObject | None, owner: JsonObject, snapshot: Snapshot) -> JsonObject | None:
    """What a session copies at creation: every agent reference replaced by that version's full definition."""
    if not multiagent:
        return None

    def full(ref: JsonObject) -> JsonObject:
        if ref.get("type") != "agent":
            return dict(ref)
        doc = owner if ref["id"] == owner["id"] else snapshot(str(ref["id"]), int(cast(int, ref["version"])))
        return {k: doc.get(k) for k in THREAD_AGENT_FIELDS}

    out = dict(multiagent)
    if out["type"] == "coordinator":
        out["agents"] = [full(r) for r in cast(list[JsonObject], out["agents"])]
        return out
    for level in ("subagents", "workflows"):
        lv = dict(cast(JsonObject, out[level]))
        if lv.get("type") == "enabled":
            lv["predefined_agents"] = [full(r) for r in cast(list[JsonObject], lv["predefined_agents"])]
        out[level] = lv
    return out
