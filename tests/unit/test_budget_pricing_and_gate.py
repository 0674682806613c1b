"""The price table and the budget gate (domain/prices.py, harness/budget.py), without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from managed_agents.domain import prices
from managed_agents.domain.session_state import SessionState
from managed_agents.harness import budget

USAGE = {"input_tokens": 1000, "output_tokens": 1000, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def _budget(cents: str) -> dict[str, object]:
    return {"type": "limit", "max_list_cost": {"amount": cents, "currency": "USD"}}


def test_dated_and_aliased_model_ids_find_their_price() -> None:
    assert prices.price_for("claude-sonnet-4-5-20250929") == prices.PRICES["claude-sonnet-4-5"]
    assert prices.price_for("claude-sonnet-4") == prices.PRICES["claude-sonnet-4-0"]
    assert prices.price_for("claude-haiku-4-5-latest") == prices.PRICES["claude-haiku-4-5"]
    assert prices.price_for("claude-scripted") is None


def test_list_cost_is_exact_and_shown_rounded_up() -> None:
    cost = prices.list_cost(
        "claude-sonnet-4-6", {**USAGE, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 10}
    )
    # 1000 x $3 + 1000 x $15 + 10 x $0.30 + 10 x $3.75 per million tokens, in cents
    assert cost == Decimal("1.80405")
    assert prices.amount(cost) == "2"
    assert prices.amount(Decimal(0)) == "0"
    assert prices.list_cost("claude-scripted", USAGE) is None


def test_gate_projects_the_next_request_from_the_last() -> None:
    st = SessionState(status="running", list_cost=Decimal("1.8"), last_request_cost=Decimal("1.8"))
    assert budget.gate(st, None) == "go"
    assert budget.gate(st, _budget("4")) == "go"  # 3.6 <= 4
    assert budget.gate(st, _budget("3")) == "stop"  # 3.6 > 3
    st.unpriced_requests = 1
    assert budget.gate(st, _budget("400")) == "stop"  # a request the budget could not measure


def test_a_stopped_session_stays_stopped_until_new_input() -> None:
    st = SessionState(status="idle", list_cost=Decimal(5), budget_stop_seq=10, last_input_seq=7)
    assert budget.gate(st, _budget("5")) == "stay_stopped"
    st.last_input_seq = 11
    assert budget.gate(st, _budget("5")) == "stop"


def test_usage_snapshots_every_request_when_budgeted_else_periodically() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    end = ("span.model_request_end", {"model_request_start_id": "x", "model_usage": USAGE}, None)
    st = SessionState(last_usage_at=now - timedelta(seconds=5))
    budgeted = budget.price(budget.Ledger("claude-sonnet-4-6", _budget("9"), 60), st, [end], now)
    assert [t for t, _, _ in budgeted] == ["span.model_request_end", "session.usage"]
    assert budgeted[0][2] == {"list_cost": "1.80"}
    plain = budget.Ledger("claude-sonnet-4-6", None, 60)
    assert [t for t, _, _ in budget.price(plain, st, [end], now)] == ["span.model_request_end"]
    st.last_usage_at = now - timedelta(seconds=61)
    assert [t for t, _, _ in budget.price(plain, st, [end], now)] == ["span.model_request_end", "session.usage"]
    unpriced = budget.price(budget.Ledger("claude-scripted", None, 60), st, [end], now)
    assert unpriced[0][2] == {"unpriced": True} and "list_cost" not in unpriced[1][1]["usage"]  # type: ignore[operator]
