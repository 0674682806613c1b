"""Delegations in the fold and in `step.decide` (harness/threads.py): a delegation is a call that starts a child
thread once, waits for the child's answer, and is answered by it; a child's own status events set its status, their
copies on the session's log do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.domain.events import JsonObject, NewEvent, StoredEvent
from managed_agents.domain.session_state import fold
from managed_agents.harness import step, threads
from managed_agents.ports import iter_all

Entry = tuple[str, JsonObject, JsonObject | None]
NOW = datetime.now(UTC)
ROSTER: JsonObject = {
    "name": "lead",
    "model": {"id": "claude-sonnet-4-6"},
    "tools": [],
    "multiagent": {
        "type": "coordinator",
        "agents": [{"type": "agent", "id": "agent_1", "name": "flights", "version": 1, "model": {"id": "m"}}],
    },
}


def _log(*events: Entry) -> list[StoredEvent]:
    return [StoredEvent("sesn_a", i + 1, f"sevt_{i + 1}", t, NOW, p, x) for i, (t, p, x) in enumerate(events)]


def _decide(*events: Entry) -> step.Action:
    return step.decide(fold(_log(*events)), now=NOW, tool_timeout=timedelta(seconds=60))


USER: Entry = ("user.message", {"content": [{"type": "text", "text": "go"}]}, None)
RUNNING: Entry = ("session.status_running", {}, None)
START: Entry = ("span.model_request_start", {}, None)
USE = {"type": "tool_use", "id": "toolu_1", "name": "delegate_to_flights", "input": {"message": "find"}}
END: Entry = (
    "span.model_request_end",
    {"model_request_start_id": "sevt_3", "is_error": False, "model_usage": {}},
    {"content": [USE], "stop_reason": "tool_use"},
)
SENT: Entry = threads.sent_event("sesn_a", ROSTER, "delegate_to_flights", {"message": "find"}, "toolu_1", "sevt_4")
CREATED: Entry = (
    "session.thread_created",
    {"session_thread_id": "sthr_x", "agent_name": "flights"},
    {"call": "sevt_4"},
)
ANSWER: Entry = (
    "agent.thread_message_received",
    {"from_session_thread_id": "sthr_x", "content": [{"type": "text", "text": "AB123"}]},
    {"call": "sevt_4", "is_error": False},
)


def test_the_delegation_tool_names_its_agent_and_the_call_is_logged_as_a_message_sent() -> None:
    assert [d["name"] for d in threads.definitions(ROSTER)] == ["delegate_to_flights"]
    assert SENT[1]["to_agent_name"] == "flights" and SENT[1]["content"] == [{"type": "text", "text": "find"}]
    assert threads.definitions({**ROSTER, "multiagent": None}) == []


def test_a_delegation_starts_its_thread_once_then_waits_then_runs_the_model_with_the_answer() -> None:
    # Given a turn that delegated: its thread is started
    action = _decide(USER, RUNNING, START, SENT, END)
    assert isinstance(action, step.StartThreads) and [c.event_id for c in action.calls] == ["sevt_4"]
    # When the thread was created: the session waits for it (no timeout applies to a delegation)
    later = step.decide(
        fold(_log(USER, RUNNING, START, SENT, END, CREATED)), now=NOW + timedelta(days=1), tool_timeout=timedelta(1)
    )
    assert isinstance(later, step.WaitForThreads)
    # Then its answer is the tool result of the next request
    st = fold(_log(USER, RUNNING, START, SENT, END, CREATED, ANSWER))
    assert isinstance(step.decide(st, now=NOW, tool_timeout=timedelta(seconds=60)), step.RunModel)
    fold(_log(USER, RUNNING, START, SENT, END, CREATED, ANSWER, START)[-1:], st)
    assert st.transcript[-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "AB123"}]}],
    }


def test_a_childs_own_status_events_set_its_status_and_their_copies_do_not() -> None:
    own: Entry = ("session.thread_status_running", {"session_thread_id": "sthr_x"}, {"own": True})
    copy: Entry = ("session.thread_status_running", {"session_thread_id": "sthr_x"}, None)
    assert fold(_log(own)).status == "running"
    assert fold(_log(copy)).status == "idle"
    # and the message that opens a child's log is its input
    opening: Entry = ("agent.thread_message_received", {"content": [{"type": "text", "text": "find"}]}, None)
    assert isinstance(_decide(opening), step.RunModel)


def test_a_child_stopped_at_the_budget_stops_the_session_until_it_runs_again() -> None:
    budget_stop: Entry = (
        "session.thread_status_idle",
        {"session_thread_id": "sthr_x", "stop_reason": {"type": "budget_reached"}},
        None,
    )
    resumed: Entry = ("session.thread_status_running", {"session_thread_id": "sthr_x"}, None)
    stopped: Entry = ("session.status_idle", {"stop_reason": {"type": "budget_reached"}}, None)
    waiting = (USER, RUNNING, START, SENT, END, CREATED)
    # Given a session waiting on its child, When the child's copied status says it stopped at the budget
    action = _decide(*waiting, budget_stop)
    # Then the session stops there too, once
    assert action == step.GoIdle({"type": "budget_reached"})
    assert _decide(*waiting, budget_stop, stopped) == step.Park("budget_reached")
    # And when the child runs again (the budget was raised), the session waits on it again
    assert isinstance(_decide(*waiting, budget_stop, stopped, resumed), step.WaitForThreads)
    # And the stop of a thread this call does not wait on does not stop the session
    other = ("session.thread_created", {"session_thread_id": "sthr_y", "agent_name": "flights"}, {"call": "sevt_4"})
    assert isinstance(_decide(USER, RUNNING, START, SENT, END, other, budget_stop), step.WaitForThreads)


def test_a_childs_copies_lost_after_its_write_are_made_again_in_order_and_only_the_last_is_read(
    tmp_path: Path,
) -> None:
    # Given a child's log: its opening message, its own status changes and a custom tool call (copied to its session)
    store = SqliteEventStore(SqliteDatabase(tmp_path / "db"))
    own = {"own": True}
    child = store.append(
        "sthr_x",
        [
            NewEvent("sevt_1", "agent.thread_message_received", {"content": []}, None),
            NewEvent("sevt_2", "session.thread_status_running", {"session_thread_id": "sthr_x"}, own),
            NewEvent("sevt_3", "agent.custom_tool_use", {"name": "ticket", "input": {}}, {"kind": "custom"}),
            NewEvent("sevt_4", "agent.message", {"content": []}, None),
            NewEvent("sevt_5", "session.thread_status_idle", {"session_thread_id": "sthr_x"}, own),
        ],
    )
    st = fold(child)
    assert [e.id for e in st.uncopied] == ["sevt_2", "sevt_3", "sevt_5"]
    # And the session's log got the first copy only (a crash came before the others)
    store.append("sesn_a", threads.copies("sesn_a", "sthr_x", child[1:2]))
    reads: list[str] = []
    get = store.get

    def counted(session_id: str, event_id: str) -> StoredEvent | None:
        reads.append(event_id)
        return get(session_id, event_id)

    store.get = counted  # type: ignore[method-assign]
    # When the child's next step makes sure of its copies
    assert threads.copy_to_session(store, "sesn_a", "sthr_x", st)
    # Then the missing ones are made, in the child's order, after reading back to the first one found
    logged = list(iter_all(store, "sesn_a"))
    assert [e.type for e in logged] == [
        "session.thread_status_running",
        "agent.custom_tool_use",
        "session.thread_status_idle",
    ]
    assert logged[1].id == "sevt_3" and logged[1].payload["session_thread_id"] == "sthr_x"
    assert len(reads) == 3 and st.uncopied == []
    # And once they are there, a fold from the start reads the last copy only and writes nothing
    reads.clear()
    again = fold(child)
    assert not threads.copy_to_session(store, "sesn_a", "sthr_x", again) and len(reads) == 1
    assert len(list(iter_all(store, "sesn_a"))) == 3
    # And a session's own log collects nothing to copy
    assert fold(logged).uncopied == []
