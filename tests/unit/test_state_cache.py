"""The harness's folded-state cache: the same state as a fold of the whole log, for the cost of the new events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.domain.session_state import fold
from managed_agents.harness.state_cache import StateCache
from managed_agents.ports import iter_all


class CountingStore(SqliteEventStore):
    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
        self.rows_read = 0

    def read(self, session_id: str, **kw: Any) -> Any:
        rows = super().read(session_id, **kw)
        self.rows_read += len(rows)
        return rows


def _turn(store: SqliteEventStore, sid: str, text: str) -> None:
    store.append(sid, [NewEvent(new_id("event"), "user.message", {"content": [{"type": "text", "text": text}]})])
    store.append(
        sid,
        [
            NewEvent(new_id("event"), "session.status_running"),
            NewEvent(new_id("event"), "span.model_request_start"),
        ],
    )
    store.append(
        sid,
        [
            NewEvent(new_id("event"), "agent.message", {"content": [{"type": "text", "text": f"re: {text}"}]}),
            NewEvent(new_id("event"), "session.status_idle", {"stop_reason": {"type": "end_turn"}}),
        ],
    )


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(SqliteDatabase(tmp_path / "db.sqlite"))


def test_a_cached_state_is_the_fold_of_the_whole_log_and_reads_only_new_events(store: CountingStore) -> None:
    cache = StateCache()
    sid = "sesn_1"
    for i in range(20):
        _turn(store, sid, f"t{i}")
        before = store.rows_read
        state = cache.take(store, sid)
        # Then only this turn's 5 events were read, and the state equals a fold from event 1
        assert store.rows_read - before == (5 * (i + 1) if i == 0 else 5)
        assert state == fold(iter_all(store, sid))
        cache.put(sid, state)
    # And a state taken twice without a put is folded afresh (a step that failed leaves nothing behind)
    taken = cache.take(store, sid)
    before = store.rows_read
    assert cache.take(store, sid) == taken and store.rows_read - before == 100


def test_the_cache_keeps_the_most_recently_used_sessions_only() -> None:
    cache = StateCache(max_sessions=2)
    for sid in ("a", "b", "c"):
        cache.put(sid, fold([]))
    assert len(cache) == 2
    cache.forget("c")
    assert len(cache) == 1
    with pytest.raises(ValueError, match="max_sessions"):
        StateCache(max_sessions=0)
