"""The pure part of the harness: given the folded session state, what happens next.

No I/O, no SDK, no clock except the `now` passed in (style: `step()` is pure so both orchestrators, the
in-process loop and Step Functions, drive the same decisions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from managed_agents.domain.session_state import SessionState, ToolCall


@dataclass(frozen=True)
class RunModel:
    request_no: int
    rerun: bool = False  # a request whose start is logged but whose end is not (crash recovery)


@dataclass(frozen=True)
class Evaluate:
    """The grader judges the active outcome (harness/outcomes.py)."""

    rerun: bool = False  # an evaluation whose start is logged but whose end is not (crash recovery)


@dataclass(frozen=True)
class HandleInterrupt:
    close_request: bool  # a model request was in flight when the interrupt came


@dataclass(frozen=True)
class GoIdle:
    stop_reason: dict[str, object]


@dataclass(frozen=True)
class TimeOutTools:
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class RunPlatformTools:
    """Calls the platform runs once cleared: MCP tools (through the MCP proxy) and web_fetch."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class WaitForTools:
    deadline: datetime


@dataclass(frozen=True)
class StartThreads:
    """Delegation calls whose child threads are not created yet (harness/threads.py)."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class WaitForThreads:
    """Every open call is a delegation whose thread runs: the session waits for their answers."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class Park:
    reason: str


Action = (
    RunModel
    | Evaluate
    | HandleInterrupt
    | GoIdle
    | RunPlatformTools
    | TimeOutTools
    | WaitForTools
    | StartThreads
    | WaitForThreads
    | Park
)


def decide(st: SessionState, *, now: datetime, tool_timeout: timedelta) -> Action:
    if st.status == "terminated":
        return Park("terminated")
    if st.inflight is not None:
        if st.interrupt_seq is not None and st.interrupt_seq > st.inflight.seq:
            return HandleInterrupt(close_request=True)
        return RunModel(st.requests_started, rerun=True)
    if st.evaluation_inflight is not None:
        if st.interrupt_seq is not None and st.interrupt_seq > st.evaluation_inflight.seq:
            return HandleInterrupt(close_request=False)
        return Evaluate(rerun=True)
    if st.interrupt_seq is not None:
        return HandleInterrupt(close_request=False)
    if st.consecutive_errors and st.last_error_retry == "retrying":
        return RunModel(st.requests_started + 1)
    unresolved = st.unresolved
    if unresolved:
        unstarted = tuple(c for c in unresolved if c.kind == "thread" and not c.started)
        if unstarted:
            return StartThreads(unstarted)
        platform = tuple(c for c in unresolved if c.kind in ("mcp", "server") and c.runnable)
        if platform:
            return RunPlatformTools(platform)
        needs_user = tuple(c.event_id for c in unresolved if c.needs_user)
        if needs_user:
            if st.status == "idle" and st.idle_requires_action == needs_user:
                return Park("requires_action")
            return GoIdle({"type": "requires_action", "event_ids": list(needs_user)})
        others = tuple(c for c in unresolved if c.kind != "thread")
        expired = tuple(c for c in others if now - c.logged_at >= tool_timeout)
        if expired:
            return TimeOutTools(expired)
        if not others:
            needs = tuple(i for i, (_, needs_user) in st.thread_requests.items() if needs_user)
            if needs:  # a child thread waits on the user (a confirmation, a custom tool result): so does the session
                if st.status == "idle" and st.idle_requires_action == needs:
                    return Park("requires_action")
                return GoIdle({"type": "requires_action", "event_ids": list(needs)})
            if any(c.thread_id in st.threads_at_budget for c in unresolved):  # a child stopped at the budget
                if st.status == "idle" and st.last_stop == "budget_reached":
                    return Park("budget_reached")  # (raising the budget wakes the children: SessionService.update)
                return GoIdle({"type": "budget_reached"})
            return WaitForThreads(tuple(unresolved))
        return WaitForTools(min(c.logged_at for c in others) + tool_timeout)
    if st.calls or st.has_unsent_input:
        return RunModel(st.requests_started + 1)
    if st.needs_evaluation:
        return Evaluate()
    if st.budget_stop_seq is not None:
        # a session stopped at its budget resumes its turn (the harness parks it again while still over budget)
        return RunModel(st.requests_started + 1)
    if st.status != "idle":
        return GoIdle({"type": "end_turn"})
    return Park("idle")
