"""The task functions of the "session run" state machine, behind the thin Lambda handlers in functions/.

The wire shapes here are a contract with the state machine definition (stacks/): field names and outcome strings
are persisted names, change them only together with the ASL.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from managed_agents.adapters.aws.step_functions_orchestrator import (
    finish_run,
    hand_over_run,
    ownership_watch,
    release_failed_run,
)
from managed_agents.adapters.aws.tool_wait import hold_tool_wait
from managed_agents.aws_runtime import AwsDeps
from managed_agents.harness.failures import failure_message, report_session_failure
from managed_agents.harness.turn import Parked, RetryAfter, RunAgain, WaitForTools, advance
from managed_agents.ports import CancelToken, EventStore

TurnOutcome = Literal["run_again", "retry_after", "wait_for_tools", "parked"]


class ModelTurnInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    turns: int = Field(0, ge=0, description="ModelTurn invocations so far in this execution")
    execution: str | None = Field(None, description="$$.Execution.Name; fences a stopped execution's late call")
    turns_per_execution: int | None = Field(
        None,
        ge=1,
        description="the definition's maxTurnsPerExecution: a turn that runs again at this count hands the run over to"
        " a continuation (`continue_as`); absent (an older definition): never",
    )


class ModelTurnOutput(BaseModel):
    session_id: str
    turns: int
    outcome: TurnOutcome
    wait_seconds: int = Field(ge=0, description="retry delay, or seconds to the tool deadline; else 0")
    reason: str = ""
    continue_as: str | None = Field(
        None, description="run_again in a new execution of this name (ContinueAsNew); it owns the run already"
    )


class RunError(BaseModel):
    """A Step Functions error as a Catch stores it (`ResultPath: $.error`)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    error: str = Field("States.Unknown", alias="Error")
    cause: str | None = Field(None, alias="Cause")


class ReportFailureInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    error: RunError = Field(default_factory=RunError)
    execution: str | None = Field(None, description="$$.Execution.Input.execution: the run owner that failed")


class ToolWaitInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str = Field(min_length=1)
    task_token: str = Field(min_length=1)


CHAIN_MARGIN_SECONDS = 30.0
INLINE_POLL_SECONDS = 0.2  # how often an inline tool wait looks at the end of the log


def model_turn(
    req: ModelTurnInput, deps: AwsDeps, *, seconds_left: Callable[[], float] | None = None
) -> ModelTurnOutput:
    """`advance()` until the session parks, waits for tools or backs off: steps that run again chain in this
    invocation (up to `steps_per_model_turn`, and only while one more model request fits in `seconds_left`, the
    invocation's remaining time), as the embedded orchestrator loops them in its thread. A wait for the sandbox's
    tool results is first waited out here, for up to `tool_wait_inline_seconds`: most built-in tools answer in a
    second or two, and a wait handed to the state machine's ToolWait task costs two transitions and an invocation.
    A park first settles the run's ownership: a wake that came meanwhile (every posted event wakes) runs again, in
    this invocation while the limits allow."""
    harness = deps.harness
    settings = deps.settings
    limit = settings.steps_per_model_turn
    reserve = settings.model_timeout_seconds + CHAIN_MARGIN_SECONDS

    def more_time() -> bool:
        return seconds_left is None or seconds_left() > reserve

    def reply(outcome: TurnOutcome, reason: str = "", wait_seconds: int = 0) -> ModelTurnOutput:
        return ModelTurnOutput(
            session_id=req.session_id, turns=req.turns + 1, outcome=outcome, wait_seconds=wait_seconds, reason=reason
        )

    def run_again(reason: str = "") -> ModelTurnOutput:
        """Another turn, in this execution or, at the turn limit, in the continuation this one hands the run to."""
        limit_reached = req.turns_per_execution is not None and req.turns + 1 >= req.turns_per_execution
        if not limit_reached or req.execution is None:
            return reply("run_again", reason)
        successor = hand_over_run(
            harness.resources, req.session_id, req.execution, harness.events.last_seq(req.session_id)
        )
        if successor is None:
            return reply("parked", "interrupted")  # another execution owns the run now
        return reply("run_again", reason).model_copy(update={"continue_as": successor})

    with ownership_watch(harness.resources, req.session_id, req.execution) as cancel:
        outcome = advance(req.session_id, harness, cancel)
        steps = 1
        while not cancel.cancelled and steps < limit and more_time():
            if isinstance(outcome, WaitForTools):
                if not logged_after(
                    harness.events, req.session_id, outcome.seen_seq, cancel, settings.tool_wait_inline_seconds
                ):
                    break
            elif isinstance(outcome, RunAgain):
                steps += 1  # the limit counts steps that ran again, not the looks at what an inline wait saw
            elif isinstance(outcome, Parked):
                if not finish_run(harness.resources, req.session_id, req.execution):
                    return reply("parked", outcome.reason)
                steps += 1  # woken: something was posted during the run (a tool result's wake, a message)
            else:
                break
            outcome = advance(req.session_id, harness, cancel)
    if isinstance(outcome, RunAgain):
        # cancelled: another execution owns the run now, so this one ends
        return reply("parked", "interrupted") if cancel.cancelled else run_again()
    if isinstance(outcome, RetryAfter):
        return reply("retry_after", "model_error", math.ceil(outcome.seconds))
    if isinstance(outcome, WaitForTools):
        left = (outcome.deadline - harness.clock.now()).total_seconds()
        return reply("wait_for_tools", "tool_results", max(0, math.ceil(left)))
    assert isinstance(outcome, Parked)
    if finish_run(harness.resources, req.session_id, req.execution):
        return run_again("woken")
    return reply("parked", outcome.reason)


def logged_after(events: EventStore, session_id: str, seq: int, cancel: CancelToken, seconds: float) -> bool:
    """Whether anything is logged after `seq` within `seconds` (a tool result, an interrupt, a message): the next
    step then decides again in this invocation. False on timeout or when the run is lost (`cancel`). Each look is a
    tail read where the store has one (DynamoDB: eventually consistent, half the units; a lag costs one poll)."""
    tail = getattr(events, "read_tail", None)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if cancel.wait(min(INLINE_POLL_SECONDS, left)):
            return False
        if tail(session_id, after_seq=seq, limit=1) if tail is not None else events.last_seq(session_id) > seq:
            return True
    return False


def report_failure(req: ReportFailureInput, deps: AwsDeps) -> bool:
    """The run failed where the harness could not say so itself: session.error + idle, as the embedded runtime;
    then the failed execution gives up the session's run (see `release_failed_run`).

    A Lambda's own error arrives as a JSON `Cause` (`{"errorType", "errorMessage", ...}`); its type and message
    make the user-readable text. True when the events were appended.
    """
    kind, detail = req.error.error, req.error.cause or "no details"
    try:
        cause = json.loads(detail)
    except ValueError:
        cause = None
    if isinstance(cause, dict) and cause.get("errorMessage"):
        kind = str(cause.get("errorType") or kind)
        detail = str(cause["errorMessage"])
    rt = deps.runtime
    orchestrator = rt.sessions.svc.orchestrator
    wake = orchestrator.wake if orchestrator is not None else None  # (a failed child thread's session reads its answer)
    message = failure_message(kind, detail)
    appended = report_session_failure(rt.events, rt.resources, rt.clock, req.session_id, message, wake)
    # Release the run before the execution fails: a wake that arrived during the failed turn starts a new execution.
    if release_failed_run(rt.resources, req.session_id, req.execution) and orchestrator is not None:
        orchestrator.wake(req.session_id)
    return appended


def tool_wait(req: ToolWaitInput, deps: AwsDeps) -> bool:
    """Park the task token on the session; True when it was released at once (the results were already logged)."""
    return hold_tool_wait(deps.harness, deps.clients.sfn(), req.session_id, req.task_token)
