"""Session budgets (api-reference §2.3 `budget`, §3.3 Budget): a hard ceiling on a session's list cost.

The rules of create and update live here; the harness enforces the ceiling (harness/budget.py) and prices each model
request with the one price table (domain/prices.py). What the record keeps beside the wire `budget`:
`_budget_created` (the session was created with one: only such a session may change it) and `_budget_removed` (it
was removed: it cannot come back). The consumed list cost is the harness's exact sum (`_list_cost`, minor units).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import cast

from managed_agents.domain import prices
from managed_agents.domain.errors import InvalidRequest
from managed_agents.domain.events import JsonObject
from managed_agents.domain.session_state import Usage
from managed_agents.domain.threads import KIND as THREAD_KIND
from managed_agents.ports import ListQuery, Record, ResourceStore
from managed_agents.wire.sessions import BudgetLimitParams

MAX_THREADS = 1000  # the child threads a session's spend sums (services/threads.py lists as many)


@dataclass
class Spend:
    """What some threads of a session consumed, summed from their records' caches (each written from its own log by
    the harness): a session's usage and list cost are its primary thread's plus its children's (api-reference §2.3
    `usage`: "the session figure is authoritative and is what a budget is enforced against")."""

    usage: Usage = field(default_factory=Usage)
    list_cost: Decimal = Decimal(0)
    untracked: bool = False  # a thread ran requests whose list cost is unknown (no list price)
    active_seconds: float = 0.0
    # a child thread's view: the session's own active time (what its `session.usage` snapshots report)
    session_active: float | None = None

    def add(self, doc: JsonObject) -> None:
        usage = cast(JsonObject, doc.get("usage") or {})
        if not usage:
            return
        cache = cast(JsonObject, usage.get("cache_creation") or {})
        self.usage.add({**usage, "cache_creation_input_tokens": cache.get("ephemeral_5m_input_tokens") or 0})
        if doc.get("_list_cost") is not None:
            self.list_cost += Decimal(str(doc["_list_cost"]))
        elif any(usage.get(k) for k in ("input_tokens", "output_tokens")):
            self.untracked = True
        self.active_seconds += float(cast(float, doc.get("_active_seconds") or 0.0))

    def usage_json(self, own: JsonObject | None = None) -> JsonObject:
        """The summed usage as a record caches it, plus `own` (a record's cached `usage`)."""
        total = Usage()
        total.add(self.usage.__dict__)
        if own:
            cache = cast(JsonObject, own.get("cache_creation") or {})
            total.add({**own, "cache_creation_input_tokens": cache.get("ephemeral_5m_input_tokens") or 0})
        return usage_json(total)


def usage_json(total: Usage) -> JsonObject:
    """Usage as the wire shows it (a session's `usage`, a `session.usage` snapshot), without `active_seconds`."""
    return {
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "cache_read_input_tokens": total.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": total.cache_creation_input_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "server_tool_use": server_tool_use(total),
    }


def server_tool_use(total: Usage) -> JsonObject:
    return {"web_search_requests": total.web_search_requests, "web_fetch_requests": total.web_fetch_requests}


def child_records(resources: ResourceStore, workspace_id: str, session_id: str) -> list[Record]:
    """A session's child threads (harness/threads.py), oldest first."""
    query = ListQuery(limit=MAX_THREADS, order="asc", include_archived=True, equals={"session_id": session_id})
    rows, _ = resources.list_records(THREAD_KIND, workspace_id, query)
    return rows


def spend_of(docs: Iterable[JsonObject]) -> Spend:
    out = Spend()
    for doc in docs:
        out.add(doc)
    return out


def children_spend(resources: ResourceStore, session: Record, exclude: str | None = None) -> Spend | None:
    """What a session's child threads consumed (None: it never started one), less the thread `exclude`."""
    if not session.doc.get("_has_threads"):
        return None
    return spend_of(r.doc for r in child_records(resources, session.workspace_id, session.id) if r.id != exclude)


def consumed_total(resources: ResourceStore, session: Record) -> Decimal:
    """The session's list cost with its child threads' (what its budget is enforced against)."""
    children = children_spend(resources, session)
    return consumed(session.doc) + (children.list_cost if children is not None else Decimal(0))


def session_models(agent: object) -> set[str]:
    """Every model a session's agent snapshot can run: its own, its advisor's and its multiagent roster's."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            model = node.get("model")
            if isinstance(model, dict) and isinstance(model.get("id"), str):
                found.add(cast(str, model["id"]))
            elif isinstance(model, str):
                found.add(model)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(agent)
    return found


def check_budgetable(agent: JsonObject) -> None:
    unpriced = sorted(m for m in session_models(agent) if prices.price_for(m) is None)
    if unpriced:
        raise InvalidRequest(
            f"budget: the session can run {', '.join(repr(m) for m in unpriced)}, which has no public list price,"
            " so a budget cannot measure it",
            error_code="model_not_budgetable",
        )


def consumed(doc: JsonObject) -> Decimal:
    """The session's list cost so far, exact, in minor units."""
    return Decimal(str(doc.get("_list_cost") or "0"))


def on_create(agent: JsonObject, budget: BudgetLimitParams | None) -> JsonObject | None:
    if budget is None:
        return None
    check_budgetable(agent)
    return cast(JsonObject, budget.model_dump(mode="json"))


def on_update(doc: JsonObject, budget: BudgetLimitParams | None, spent: Decimal | None = None) -> JsonObject | None:
    """The session's new `budget` (None: removed), or a 400 saying which rule refuses it. `spent`: the session's list
    cost with its child threads' (consumed_total; default: the record's own)."""
    if doc.get("status") == "terminated":
        raise InvalidRequest("budget: the session is terminated; its budget can no longer change")
    if not doc.get("_budget_created"):
        raise InvalidRequest(
            "budget: this session was created without a budget; a budget can only be set when a session is created",
            error_code="budget_create_only",
        )
    if budget is None:
        return None
    if doc.get("_budget_removed"):
        raise InvalidRequest(
            "budget: this session's budget was removed and cannot be added again", error_code="budget_create_only"
        )
    check_budgetable(cast(JsonObject, doc["agent"]))
    spent = consumed(doc) if spent is None else spent
    if Decimal(budget.max_list_cost.amount) <= spent:
        raise InvalidRequest(
            f"budget.max_list_cost.amount: {budget.max_list_cost.amount} is at or below the session's consumed list"
            f" cost ({prices.amount(spent)} {prices.CURRENCY} minor units); raise it above that to continue",
            error_code="budget_not_raised",
        )
    return cast(JsonObject, budget.model_dump(mode="json"))


def limit(budget: object) -> Decimal | None:
    """The ceiling of a stored `budget`, in minor units (None: no budget)."""
    if not isinstance(budget, dict):
        return None
    cost = cast(JsonObject, budget.get("max_list_cost") or {})
    return Decimal(str(cost.get("amount") or "0"))
