"""An interrupt that arrives before any request took the message it follows stops that turn: the session idles and
stays idle (the message is not answered by a turn of its own), and the message goes with the next user turn.

Before the fix the idle that answered such an interrupt left the message pending, so the next step started the turn
anyway (seen on both legs: user.message, user.interrupt, idle, then status_running and a model request for it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from managed_agents.domain.events import JsonObject, StoredEvent
from managed_agents.domain.session_state import fold
from managed_agents.harness import step

Entry = tuple[str, JsonObject, JsonObject | None]
NOW = datetime.now(UTC)


def _log(*events: Entry) -> list[StoredEvent]:
    return [
        StoredEvent("sesn_a", i + 1, f"sevt_{i + 1}", t, NOW, p, internal) for i, (t, p, internal) in enumerate(events)
    ]


def _user(text: str) -> Entry:
    return ("user.message", {"content": [{"type": "text", "text": text}]}, None)


INTERRUPT: Entry = ("user.interrupt", {}, None)
IDLE: Entry = ("session.status_idle", {"stop_reason": {"type": "end_turn"}}, None)
START: Entry = ("span.model_request_start", {}, None)


def _decide(events: list[StoredEvent]) -> step.Action:
    return step.decide(fold(events), now=NOW, tool_timeout=timedelta(seconds=600))


def test_a_message_interrupted_before_its_request_started_gets_no_turn_and_goes_with_the_next_one() -> None:
    # Given a message, then an interrupt before any request took it
    log = _log(_user("early"), INTERRUPT)
    # Then the harness handles the interrupt (an idle, no request to close)
    assert _decide(log) == step.HandleInterrupt(close_request=False)
    # And once that idle is logged the session stays idle: no turn for the interrupted message
    log = _log(_user("early"), INTERRUPT, IDLE)
    assert _decide(log) == step.Park("idle")
    # When the user writes again, a turn runs, and its request sees both messages as one user turn
    log = _log(_user("early"), INTERRUPT, IDLE, _user("later"))
    assert isinstance(_decide(log), step.RunModel)
    st = fold(_log(_user("early"), INTERRUPT, IDLE, _user("later"), START))
    assert st.transcript == [
        {"role": "user", "content": [{"type": "text", "text": "early"}, {"type": "text", "text": "later"}]}
    ]


def test_a_message_sent_with_or_after_the_interrupt_still_runs_its_turn() -> None:
    # Given a message, an interrupt, and a message after it (before the interrupt's idle)
    log = _log(_user("early"), INTERRUPT, _user("instead"), IDLE)
    # Then the message after the interrupt runs a turn, with the interrupted one before it in the same user turn
    assert isinstance(_decide(log), step.RunModel)
    st = fold(_log(_user("early"), INTERRUPT, _user("instead"), IDLE, START))
    assert st.transcript == [
        {"role": "user", "content": [{"type": "text", "text": "early"}, {"type": "text", "text": "instead"}]}
    ]
