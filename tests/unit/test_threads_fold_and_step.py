"""Delegations in the fold and in `step.decide` (harness/threads.py): a delegation is a call that starts a child
thread once, waits for the child's answer, and is answered by it; a child's own status events set its status, their
copies on the session's log do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from managed_agents.domain.events import JsonObject, StoredEvent
from managed_agents.domain.session_state import fold
from managed_agents.harness import step, threads

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
