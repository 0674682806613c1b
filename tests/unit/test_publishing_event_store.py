"""Every append notifies: the runtime's event store publishes each append, and nothing publishes by hand.

A writer that appended to the bare adapter and forgot to publish (the harness failure report) reached open streams
only at their next ping. The store the composition root hands out now publishes, and a guard keeps hand-made
publishes (the sign of a writer holding an unwrapped store) from coming back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.adapters.publishing_event_store import PublishingEventStore
from managed_agents.domain.errors import DuplicateEvent
from managed_agents.domain.events import JsonObject, NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.ports import Subscription, read_wire
from managed_agents.settings import ServerSettings
from managed_agents.wiring import build_local_runtime

PACKAGE = Path(__file__).resolve().parents[2] / "managed_agents"


class RecordingNotifier:
    def __init__(self) -> None:
        self.published: list[tuple[str, int]] = []

    def publish(self, session_id: str, seq: int) -> None:
        self.published.append((session_id, seq))

    def publish_deleted(self, session_id: str) -> None:
        raise AssertionError("not used")

    def subscribe(self, session_id: str, previews: frozenset[str] = frozenset()) -> Subscription:
        raise AssertionError("not used")

    def wants_previews(self, session_id: str) -> frozenset[str]:
        return frozenset()

    def publish_preview(self, session_id: str, preview: JsonObject) -> None:
        raise AssertionError("not used")


def _event(type_: str = "session.status_running") -> NewEvent:
    return NewEvent(new_id("event"), type_)


def test_an_append_publishes_its_last_sequence_number(tmp_path: Path) -> None:
    # Given a publishing store over SQLite
    notifier = RecordingNotifier()
    store = PublishingEventStore(SqliteEventStore(SqliteDatabase(tmp_path / "db")), notifier)
    # When two batches are appended
    store.append("sesn_a", [_event(), _event()])
    store.append("sesn_a", [_event("session.status_idle")])
    # Then each was published once, with the sequence number of its last event
    assert notifier.published == [("sesn_a", 2), ("sesn_a", 3)]


def test_a_refused_append_publishes_nothing(tmp_path: Path) -> None:
    # Given a store holding one event
    notifier = RecordingNotifier()
    store = PublishingEventStore(SqliteEventStore(SqliteDatabase(tmp_path / "db")), notifier)
    first = _event()
    store.append("sesn_a", [first])
    # When the same event id is appended again (a re-run step)
    with pytest.raises(DuplicateEvent):
        store.append("sesn_a", [first])
    # Then only the first append was published
    assert notifier.published == [("sesn_a", 1)]


def test_reads_and_the_adapters_fast_path_go_to_the_adapter(tmp_path: Path) -> None:
    # Given a publishing store over SQLite, whose adapter has the read_wire_json fast path
    inner = SqliteEventStore(SqliteDatabase(tmp_path / "db"))
    store = PublishingEventStore(inner, RecordingNotifier())
    stored = store.append("sesn_a", [_event()])
    # When the log is read through the wrapper
    # Then it reads what the adapter holds, the wire text spliced by the adapter's own fast path
    assert store.read("sesn_a") == inner.read("sesn_a") == stored
    assert store.get("sesn_a", stored[0].id) == stored[0]
    assert store.last_seq("sesn_a") == 1
    assert store.read_wire_json == inner.read_wire_json
    assert read_wire(store, "sesn_a") == read_wire(inner, "sesn_a")


def test_the_embedded_runtime_hands_out_only_the_publishing_store(tmp_path: Path) -> None:
    # Given the embedded composition root
    rt = build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)
    try:
        # Then the runtime's store, and the one the services write through, publish every append
        assert isinstance(rt.events, PublishingEventStore) and rt.events.notifier is rt.notifier
        assert rt.sessions.events is rt.events
        assert rt.work is not None and rt.work.events is rt.events
    finally:
        rt.close()


def test_no_module_publishes_by_hand() -> None:
    # Given every module of the package but the publishing store
    offenders: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "publishing_event_store.py":
            continue
        # When its calls are read
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "publish":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    # Then none calls notifier.publish itself: appends publish through the runtime's store
    assert offenders == []
