"""What the SQLite resource store does beyond the contract: looked-up attributes are index reads, not row scans."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteResourceStore
from managed_agents.domain.lookups import LOOKUPS, lookup_attributes
from managed_agents.ports import ListQuery, Record


def _plan(db: SqliteDatabase, sql: str, params: list[object]) -> str:
    return " | ".join(str(row[-1]) for row in db.query("EXPLAIN QUERY PLAN " + sql, params))


@pytest.mark.parametrize("attr", lookup_attributes())
def test_each_looked_up_attribute_has_an_index_that_find_uses(tmp_path: Path, attr: str) -> None:
    # Given a store with records of every kind that looks the attribute up
    db = SqliteDatabase(tmp_path / "r.db")
    store = SqliteResourceStore(db)
    kinds = [kind for kind, attrs in LOOKUPS.items() if attr in attrs]
    now = datetime.now(UTC)
    for i in range(50):
        store.insert(Record(kinds[0], "ws", f"id{i}", {"n": i}, now, attrs={attr: f"v{i}"}))
    # When find runs, its plan is read through the same SQL it executes
    captured: list[tuple[str, list[object]]] = []
    original = db.query

    def spy(sql: str, params: object = ()) -> object:
        captured.append((sql, list(params)))  # type: ignore[call-overload]
        return original(sql, params)  # type: ignore[arg-type]

    db.query = spy  # type: ignore[method-assign]
    found = store.find(kinds[0], attr, ["v7"])
    db.query = original  # type: ignore[method-assign]
    # Then it found the record through the attribute's expression index
    assert [r.id for r in found] == ["id7"]
    sql, params = captured[-1]
    assert f"resources_lookup_{attr}" in _plan(db, sql, params)


def test_an_equals_filter_on_a_looked_up_attribute_still_filters_exactly(tmp_path: Path) -> None:
    # Given sessions of two statuses in two workspaces
    store = SqliteResourceStore(SqliteDatabase(tmp_path / "r.db"))
    now = datetime.now(UTC)
    for i, (ws, status) in enumerate([("a", "idle"), ("a", "running"), ("b", "idle"), ("a", "idle")]):
        store.insert(Record("session", ws, f"s{i}", {}, now, attrs={"status": status}))
    # When one workspace lists its idle sessions
    q = ListQuery(limit=10, order="asc")
    q.equals["status"] = "idle"
    rows, more = store.list_records("session", "a", q)
    # Then exactly those come back
    assert sorted(r.id for r in rows) == ["s0", "s3"] and not more
