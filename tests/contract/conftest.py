"""Adapters under contract. Every port suite here runs once per adapter (style: tests/contract)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore, SqliteResourceStore
from managed_agents.ports import EventStore

EVENT_STORES = ["sqlite"]


@pytest.fixture(params=EVENT_STORES)
def event_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    if request.param == "sqlite":
        db = SqliteDatabase(tmp_path_factory.mktemp("sqlite") / "events.db")
        yield SqliteEventStore(db)
    else:  # pragma: no cover - new adapters register here
        raise AssertionError(request.param)


@pytest.fixture
def resource_store(tmp_path: object) -> SqliteResourceStore:
    from pathlib import Path

    return SqliteResourceStore(SqliteDatabase(Path(str(tmp_path)) / "resources.db"))
