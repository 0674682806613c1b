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


PAIRS = [(kind, attr) for kind, attrs in LOOKUPS.items() for attr in attrs]


def _captured(db: SqliteDatabase) -> list[tuple[str, list[object]]]:
    """The SQL and parameters of every query the database runs from now on."""
    captured: list[tuple[str, list[object]]] = []
    original = db.query

    def spy(sql: str, params: object = ()) -> object:
        captured.append((sql, list(params)))  # type: ignore[call-overload]
        return original(sql, params)  # type: ignore[arg-type]

    db.query = spy  # type: ignore[method-assign]
    return captured


@pytest.mark.parametrize(("kind", "attr"), PAIRS, ids=[f"{k}.{a}" for k, a in PAIRS])
def test_each_looked_up_attribute_has_an_index_that_find_uses(tmp_path: Path, kind: str, attr: str) -> None:
    # Given a store with records of the kind, and of another kind with the same attribute values
    db = SqliteDatabase(tmp_path / "r.db")
    store = SqliteResourceStore(db)
    now = datetime.now(UTC)
    for i in range(50):
        store.insert(Record(kind, "ws", f"id{i}", {"n": i}, now, attrs={attr: f"v{i}"}))
        store.insert(Record("other_kind", "ws", f"other{i}", {"n": i}, now, attrs={attr: f"v{i}"}))
    captured = _captured(db)
    # When find runs (its plan read through the SQL it executed), and a list filtered on the attribute
    found = store.find(kind, attr, ["v7"])
    ((sql, params),) = captured
    q = ListQuery(limit=10, order="asc")
    q.equals[attr] = "v8"
    listed, _ = store.list_records(kind, "ws", q)
    # Then find read the kind's index of the attribute, and each found its record, of its kind only
    assert f"resources_find_{kind}_{attr}" in _plan(db, sql, params)
    assert [r.id for r in found] == ["id7"]
    assert [r.id for r in listed] == ["id8"]


def test_a_database_with_the_indexes_of_before_opens_with_the_per_kind_ones_instead(tmp_path: Path) -> None:
    # Given a database with the former lookup indexes, one per attribute led by the kind
    path = tmp_path / "old.db"
    SqliteDatabase(path)
    conn = sqlite3.connect(path)
    for attr in lookup_attributes():
        conn.execute(f"CREATE INDEX resources_lookup_{attr} ON resources (kind, json_extract(attrs, '$.{attr}'))")
    conn.commit()
    conn.close()
    # When the store opens it
    db = SqliteDatabase(path)
    # Then only the per-kind indexes are left (a write of a record's attrs maintains its kind's alone)
    names = {str(r[0]) for r in db.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not {n for n in names if n.startswith("resources_lookup_")}
    assert {f"resources_find_{kind}_{attr}" for kind, attr in PAIRS} <= names


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
