"""The fold of a compacted log: what the summary replaces is reset, on replay exactly as live.

Before the fix the fold kept the last request's context size and the pending input after
`agent.thread_context_compacted`, so a replayed (or live) state asked to compact again at once, forever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from managed_agents.domain.events import JsonObject, StoredEvent
from managed_agents.domain.session_state import fold

Entry = tuple[str, JsonObject, JsonObject | None]


def _log(*events: Entry) -> list[StoredEvent]:
    now = datetime.now(UTC)
    return [
        StoredEvent("sesn_a", i + 1, f"sevt_{i + 1}", t, now, p, internal) for i, (t, p, internal) in enumerate(events)
    ]


def _text(text: str) -> JsonObject:
    return {"type": "text", "text": text}


def _user(text: str) -> Entry:
    return ("user.message", {"content": [_text(text)]}, None)


def _end(start: str, tokens: int, content: list[Any] | None) -> Entry:
    usage: JsonObject = {"input_tokens": tokens, "output_tokens": 0}
    internal: JsonObject | None = {"content": content} if content is not None else None
    return (
        "span.model_request_end",
        {"model_request_start_id": start, "is_error": False, "model_usage": usage},
        internal,
    )


START: Entry = ("span.model_request_start", {}, None)
COMPACTION_START: Entry = ("span.model_request_start", {}, {"compaction": True})
IDLE: Entry = ("session.status_idle", {"stop_reason": {"type": "end_turn"}}, None)


def _compacted(keeps_pending: bool = True) -> Entry:
    internal: JsonObject = {"summary": "SUMMARY"}
    if keeps_pending:
        internal["keeps_pending"] = True
    return ("agent.thread_context_compacted", {}, internal)


def test_a_compaction_resets_the_context_and_puts_its_summary_before_the_waiting_input() -> None:
    # Given a turn over the threshold, then a new message, then a compaction (its span and the compacted event)
    log = _log(
        _user("first"),
        START,
        _end("sevt_2", 5000, [_text("first answer")]),
        IDLE,
        _user("second"),
        COMPACTION_START,
        _end("sevt_6", 5100, None),
        _compacted(),
    )
    # When the log is folded
    st = fold(log)
    # Then the history and its measured size are gone, and the summary leads the input that waits for the next request
    assert st.transcript == [] and st.calls == []
    assert st.last_request_input_tokens == 0
    assert st.pending == [_text("SUMMARY"), _text("second")]
    assert st.compactions_in_turn == 1 and st.measuring_compaction and st.compacted_context_tokens is None
    # And the compaction's usage is counted, its request no longer in flight
    assert st.inflight is None and st.usage.input_tokens == 10_100
    assert st.requests_started == 2


def test_the_request_after_a_compaction_starts_from_the_summary_and_measures_it() -> None:
    # Given a compacted log and the request that continued from it
    log = _log(
        _user("first"),
        START,
        _end("sevt_2", 5000, [_text("first answer")]),
        IDLE,
        _user("second"),
        COMPACTION_START,
        _end("sevt_6", 5100, None),
        _compacted(),
        START,
        _end("sevt_9", 300, [_text("second answer")]),
    )
    # When it is folded
    st = fold(log)
    # Then the continuation saw the summary and the new input as one user turn, and measured the compacted context
    assert st.transcript == [
        {"role": "user", "content": [_text("SUMMARY"), _text("second")]},
        {"role": "assistant", "content": [_text("second answer")]},
    ]
    assert st.pending == [] and st.last_request_input_tokens == 300
    assert st.compacted_context_tokens == 300 and not st.measuring_compaction


def test_a_compaction_logged_before_kept_input_existed_covered_the_input() -> None:
    # Given a compacted event without keeps_pending (an older harness summarized the waiting input too)
    st = fold(_log(_user("first"), START, _end("sevt_2", 5000, [_text("a")]), IDLE, _user("second"), _compacted(False)))
    # Then the input is not sent a second time after the summary
    assert st.pending == [_text("SUMMARY")]


def test_the_compaction_counters_start_over_with_each_turn() -> None:
    # Given a compaction, its measured continuation, and the turn's end
    log = _log(
        _user("first"),
        START,
        _end("sevt_2", 5000, [_text("a")]),
        IDLE,
        _user("second"),
        COMPACTION_START,
        _end("sevt_6", 10, None),
        _compacted(),
        START,
        _end("sevt_9", 4000, [_text("b")]),
        IDLE,
    )
    # When it is folded
    st = fold(log)
    # Then the next turn may compact again
    assert st.compactions_in_turn == 0 and st.compacted_context_tokens is None and not st.measuring_compaction
