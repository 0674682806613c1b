"""Session budgets (api-reference §2.3 `budget`, §3.3 Budget): a hard ceiling on a session's list cost.

The rules of create and update live here; the harness enforces the ceiling (harness/budget.py) and prices each model
request with the one price table (domain/prices.py). What the record keeps beside the wire `budget`:
`_budget_created` (the session was created with one: only such a session may change it) and `_budget_removed` (it
was removed: it cannot come back). The consumed list cost is the harness's exact sum (`_list_cost`, minor units).
"""

from __future__ import annotations

from decimal import Decimal
from typing import cast

from managed_agents.domain import prices
from managed_agents.domain.errors import InvalidRequest
from managed_agents.domain.events import JsonObject
from managed_agents.wire.sessions import BudgetLimitParams


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


def on_update(doc: JsonObject, budget: BudgetLimitParams | None) -> JsonObject | None:
    """The session's new `budget` (None: removed), or a 400 saying which rule refuses it."""
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
    spent = consumed(doc)
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
