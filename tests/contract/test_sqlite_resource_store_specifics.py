"""What the SQLite resource store does beyond the contract: looked-up attributes are index reads, not row scans;
expired records are purged; databases made before records could expire open."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
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


NOW = datetime.now(UTC)


def _expiring(id_: str, expires: datetime) -> Record:
    rec = Record("idempotency_key", "wrkspc_1", id_, {"id": id_}, NOW)
    rec.expires_at = expires
    return rec


def test_writing_an_expiring_record_purges_the_expired_ones(tmp_path: Path) -> None:
    # Given an expired record, a live one and one that never expires
    store = SqliteResourceStore(SqliteDatabase(tmp_path / "r.db"))
    store.insert(_expiring("old", NOW - timedelta(seconds=1)))
    store.insert(_expiring("live", NOW + timedelta(hours=1)))
    store.insert(Record("agent", "wrkspc_1", "agent_1", {"id": "agent_1"}, NOW))
    # When another expiring record is written
    store.insert(_expiring("new", NOW + timedelta(hours=1)))
    # Then the expired one is gone and the others stay
    assert store.get("idempotency_key", "wrkspc_1", "old") is None
    assert store.get("idempotency_key", "wrkspc_1", "live") is not None
    assert store.get("agent", "wrkspc_1", "agent_1") is not None


def test_a_database_made_before_records_could_expire_opens_and_gains_the_column(tmp_path: Path) -> None:
    # Given a resources table without the expires_at column, holding a record
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE resources (kind TEXT NOT NULL, id TEXT NOT NULL, workspace_id TEXT NOT NULL, created_at TEXT"
        " NOT NULL, rev INTEGER NOT NULL, archived INTEGER NOT NULL DEFAULT 0, attrs TEXT NOT NULL, doc TEXT NOT NULL,"
        " PRIMARY KEY (kind, id))"
    )
    conn.execute(
        "INSERT INTO resources VALUES ('agent', 'agent_1', 'wrkspc_1', '2026-01-01T00:00:00.000000Z', 1, 0, '{}',"
        ' \'{"id": "agent_1"}\')'
    )
    conn.commit()
    conn.close()
    # When the store opens it
    store = SqliteResourceStore(SqliteDatabase(path))
    # Then the old record reads back and expiring records can be written
    got = store.get("agent", "wrkspc_1", "agent_1")
    assert got is not None and got.expires_at is None
    store.insert(_expiring("idem_1", NOW + timedelta(hours=1)))
    assert (store.get("idempotency_key", "wrkspc_1", "idem_1") or got).expires_at is not None
