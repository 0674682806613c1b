"""Budgets in the harness (api-reference §2.3 `budget`, §3.2 `session.usage`, §3.3 Budget).

Every model request is priced where its end is logged, with the one price table (domain/prices.py) and the model it
ran: the exact cost (minor units) goes in the end's `internal` part, so the fold sums it and a later price change
never rewrites history. A budgeted session gets a `session.usage` snapshot after every request; any other session
one after a request when its last snapshot (or its first request) is older than `usage_event_seconds` (the
periodic snapshot).

A session's figures include its child threads' (harness/threads.py): each thread prices its own requests on its own
log, and what the other threads of its session consumed (`Ledger.others`: their records' caches, services/budgets.py)
is added to the snapshot and to the gate. A child thread gates against its session's budget; its snapshots go to
its session's log (the thread's own log has none).

The gate runs before a model request starts. The next request is projected to cost what the previous one did (its
context is that one's plus a little); the session goes idle with `budget_reached` when the list cost has reached the
ceiling, when the projection would cross it, or when a request ran on a model with no list price (which the budget
cannot measure). A session stopped there resumes its turn when the budget is raised (SessionService.update wakes it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, cast

from managed_agents.domain import prices
from managed_agents.domain.events import JsonObject
from managed_agents.domain.session_state import SessionState, Usage
from managed_agents.harness.event_batches import Entry
from managed_agents.services import budgets


def _nothing() -> budgets.Spend | None:
    return None


@dataclass(frozen=True)
class Ledger:
    """What a batch needs to price its requests: the session's model, budget and the state before the batch;
    `others`: what the session's other threads consumed (None: it has none), looked up when needed."""

    model: str
    budget: JsonObject | None
    usage_every_seconds: float
    others: Callable[[], budgets.Spend | None] = field(default=_nothing)


Gate = Literal["go", "stop", "stay_stopped"]
# the events that close a model request, and where their usage is: the agent's requests and the outcome grader's
PRICED = {"span.model_request_end": "model_usage", "span.outcome_evaluation_end": "usage"}


def gate(st: SessionState, budget: object, others: Callable[[], budgets.Spend | None] = _nothing) -> Gate:
    ceiling = budgets.limit(budget)
    if ceiling is None:
        return "go"
    rest = others()
    spent = st.list_cost + (rest.list_cost if rest is not None else 0)
    unpriced = st.unpriced_requests > 0 or (rest is not None and rest.untracked)
    over = unpriced or spent >= ceiling or spent + st.last_request_cost > ceiling
    if not over:
        return "go"
    if st.status == "idle" and st.budget_stop_seq is not None and st.last_input_seq < st.budget_stop_seq:
        return "stay_stopped"  # already stopped, and nothing new asked for a turn since: say nothing again
    return "stop"


def stop_events(st: SessionState, ledger: Ledger, now: datetime) -> list[Entry]:
    return [
        usage_event(st, Usage(), None, ledger, now),
        ("session.status_idle", {"stop_reason": {"type": "budget_reached"}}, None),
    ]


def price(ledger: Ledger, st: SessionState, entries: Sequence[Entry], now: datetime) -> list[Entry]:
    """The batch with each request end priced, and a `session.usage` snapshot after it when one is due."""
    out: list[Entry] = []
    for type_, payload, internal in entries:
        if type_ not in PRICED:
            out.append((type_, payload, internal))
            continue
        usage = cast(JsonObject, payload.get(PRICED[type_]) or {})
        cost = prices.list_cost(ledger.model, usage)
        extra: JsonObject = {}
        if cost is not None:
            extra["list_cost"] = str(cost)
        elif any(usage.values()):
            extra["unpriced"] = True
        out.append((type_, payload, {**(internal or {}), **extra}))
        due = ledger.budget is not None or (
            st.last_usage_at is not None and (now - st.last_usage_at).total_seconds() >= ledger.usage_every_seconds
        )
        if due and any(usage.values()):
            request = Usage()
            request.add(usage)
            out.append(usage_event(st, request, cost if cost is not None else None, ledger, now))
    return out


def usage_event(st: SessionState, request: Usage, request_cost: Decimal | None, ledger: Ledger, now: datetime) -> Entry:
    """`session.usage`: the session's cumulative usage including `request` (not folded yet) and the other threads'
    (`ledger.others`), and its budget."""
    rest = ledger.others() or budgets.Spend()
    active = st.active_seconds
    if st.running_since is not None:
        active += max(0.0, (now - st.running_since).total_seconds())
    if rest.session_active is not None:  # a child thread's snapshot: the session's time (its own is within it)
        active = rest.session_active
    total = Usage()
    for part in (st.usage, request, rest.usage):
        total.add(part.__dict__)
    usage: JsonObject = {**budgets.usage_json(total), "active_seconds": round(active, 3)}
    unpriced = (
        st.unpriced_requests > 0
        or rest.untracked
        or (request_cost is None and bool(request.input_tokens + request.output_tokens))
    )
    if not unpriced:
        spent = st.list_cost + (request_cost or Decimal(0)) + rest.list_cost
        usage["list_cost"] = {"amount": prices.amount(spent), "currency": prices.CURRENCY}
    budget = ledger.budget
    return ("session.usage", {"usage": usage, "budget": budget if isinstance(budget, dict) else None}, None)
