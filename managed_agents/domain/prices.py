"""The models' public list prices: the one price table of the platform.

Budgets (api-reference §2.3 `budget`, `usage.list_cost`) price every model request with it, and the console's cost
estimate reads the same table (served as `/console/static/prices.js`, see api/console).

Source: Anthropic's public price list, https://platform.claude.com/docs/en/about-claude/pricing and the per-model
overview pages (platform.claude.com/docs/en/models/<model>/overview), read 2026-11-21. USD per million tokens.
Columns: input, 5-minute cache write, 1-hour cache write, cache read (hits and refreshes), output.
Not included: Batch API discounts, `inference_geo` surcharges, fast mode, long-prompt tiers, server tool fees.
A model that is not listed has no list price: a session that can run it cannot have a budget
(`model_not_budgetable`), and the console shows no estimate rather than a guessed one.
Keep this table the only place prices live; update the date when you change it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import ROUND_CEILING, Decimal

PRICES_AS_OF = "2026-11-21"
CURRENCY = "USD"
_MINOR_UNITS_PER_DOLLAR = 100
_TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: Decimal
    write5m: Decimal
    write1h: Decimal
    read: Decimal
    output: Decimal


def _row(input_: str, write5m: str, write1h: str, read: str, output: str) -> Price:
    return Price(Decimal(input_), Decimal(write5m), Decimal(write1h), Decimal(read), Decimal(output))


PRICES: Mapping[str, Price] = {
    "claude-opus-5": _row("5", "6.25", "10", "0.5", "25"),
    "claude-opus-4-8": _row("5", "6.25", "10", "0.5", "25"),
    "claude-opus-4-7": _row("5", "6.25", "10", "0.5", "25"),
    "claude-opus-4-6": _row("5", "6.25", "10", "0.5", "25"),
    "claude-opus-4-5": _row("5", "6.25", "10", "0.5", "25"),
    "claude-opus-4-1": _row("15", "18.75", "30", "1.5", "75"),
    "claude-opus-4-0": _row("15", "18.75", "30", "1.5", "75"),
    # Sonnet 5.5: the overview page read on the date above lists a $0.20 cache read.
    "claude-sonnet-5-5": _row("2", "2.5", "4", "0.2", "10"),
    "claude-sonnet-5": _row("2", "2.5", "4", "0.2", "10"),
    "claude-sonnet-4-6": _row("3", "3.75", "6", "0.3", "15"),
    "claude-sonnet-4-5": _row("3", "3.75", "6", "0.3", "15"),
    "claude-sonnet-4-0": _row("3", "3.75", "6", "0.3", "15"),
    "claude-haiku-4-5": _row("1", "1.25", "2", "0.1", "5"),
    "claude-3-5-haiku": _row("0.8", "1", "1.6", "0.08", "4"),
}
ALIASES: Mapping[str, str] = {"claude-opus-4": "claude-opus-4-0", "claude-sonnet-4": "claude-sonnet-4-0"}
_DATED = re.compile(r"-\d{8}$")


def price_for(model_id: str | None) -> Price | None:
    """The list price of a model id (`claude-sonnet-4-5-20250929` → claude-sonnet-4-5), or None."""
    if not model_id:
        return None
    name = _DATED.sub("", model_id.lower()).removesuffix("-latest")
    return PRICES.get(ALIASES.get(name, name))


def _tokens(usage: Mapping[str, object], key: str) -> int:
    value = usage.get(key)
    return int(value) if isinstance(value, int | float) else 0


def list_cost(model_id: str | None, usage: Mapping[str, object]) -> Decimal | None:
    """The list cost in minor units (cents, exact) of a model request's `model_usage` (cache writes priced as the
    5-minute ones the harness makes), or None when the model has no list price."""
    p = price_for(model_id)
    if p is None:
        return None
    micro_dollars = (
        _tokens(usage, "input_tokens") * p.input
        + _tokens(usage, "cache_creation_input_tokens") * p.write5m
        + _tokens(usage, "cache_read_input_tokens") * p.read
        + _tokens(usage, "output_tokens") * p.output
    )
    return micro_dollars * _MINOR_UNITS_PER_DOLLAR / _TOKENS_PER_PRICE_UNIT


def amount(minor_units: Decimal) -> str:
    """The wire `amount` of a cost: an integer decimal string of minor units, rounded up (a list cost is shown at or
    above what was spent, so a cap read from it fires at or before the charge)."""
    return str(int(minor_units.to_integral_value(rounding=ROUND_CEILING)))


def console_module() -> str:
    """The table as the ES module the console imports (`export const PRICES = {...}`)."""
    rows = {name: {k: float(v) for k, v in asdict(p).items()} for name, p in PRICES.items()}
    return (
        "// Generated from managed_agents/domain/prices.py (the platform's one price table): do not edit.\n"
        f"export const PRICES_AS_OF = {json.dumps(PRICES_AS_OF)};\n"
        f"export const PRICES = {json.dumps(rows, indent=2)};\n"
        f"export const ALIASES = {json.dumps(dict(ALIASES))};\n"
    )
