"""The AWS orchestrator: `wake(session)` starts the "session run" state machine, at most one execution per session.

The embedded orchestrator keeps one run per session and marks it dirty when a wake arrives during the run. This
adapter does the same through the session record, with the store's optimistic concurrency (`mutate`) as the lock:

* `_execution`: the name of the execution that owns the session's run, or absent;
* `_wake_pending`: a wake arrived while that execution ran;
* `_wakes`: a counter; the n-th started execution is named `{session_id}-{last_seq}-{n}` (the log position makes
  the name readable, the counter makes it unique, Step Functions keeps names for 90 days).

`wake` either claims the run (sets `_execution` to a new name, then StartExecution with that name) or, when an
execution owns it and is still RUNNING, sets `_wake_pending`. When the ModelTurn handler is about to end the
execution because the session parked, it calls `finish_run`: a pending wake clears the flag and runs another
turn, otherwise `_execution` is released. Both sides write the same record under a revision check, so either the
wake lands first (the run goes on) or the release does (the wake starts a new execution): no wake is lost and no
two executions drive one session. Duplicate wakes collapse into one pending flag: a wake that finds it set (a run's
every tool result wakes it) writes nothing, since the owner clears it only after that read.

A run that continues as a new execution (the history limit, `maxTurnsPerExecution`) hands the run over before it
ends: its last ModelTurn claims a new name for the continuation (`hand_over_run`, which also records the
predecessor in `_continued_from`) and the ContinueAsNew state starts the execution of that name, whose input names
it as the owner. The record thus always names the execution that runs, so a wake checks the right one (checking
the finished original instead started a second execution, which cancelled the continuation's model turn). Until
the continuation exists, DescribeExecution of its name finds nothing; while the predecessor still runs, that means
"about to start", not "lost".

A run parked in its ToolWait task (a task token on the record, see tool_wait.py) is woken by releasing that token:
every append of user events (tool results from the sandbox worker, confirmations) ends in `wake`, so the wait
ends as soon as something was logged and the next ModelTurn decides whether to wait again.

A claimed name whose StartExecution never happened (a crash in between) or whose execution ended without
releasing (timed out, stopped, or failed before its ReportFailure task ran) is detected by DescribeExecution on the
next wake and claimed anew; the StartExecution of a claimed name is retried idempotently (same name, same input). A
run that fails through ReportFailure releases the run there (`release_failed_run`), so a wake that comes while the
failed execution is still ending starts a new one, and a wake that came during the failed turn is run by one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from managed_agents.adapters.aws.tool_wait import TOKEN_FIELD, release_tool_wait
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken
from managed_agents.domain.errors import NotFound, ServiceUnavailable
from managed_agents.harness.threads import run_record
from managed_agents.ports import EventStore, Record, ResourceStore
from managed_agents.services.records import mutate

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.client import SFNClient

log = logging.getLogger(__name__)

EXECUTION = "_execution"
WAKE_PENDING = "_wake_pending"
WAKES = "_wakes"
CONTINUED_FROM = "_continued_from"
MAX_NAME = 80


def execution_name(session_id: str, last_seq: int, wake_no: int) -> str:
    name = f"{session_id}-{last_seq}-{wake_no}"
    if len(name) > MAX_NAME:
        raise ValueError(f"execution name {name!r} is longer than {MAX_NAME} characters")
    return name


def execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:aws:states:R:A:stateMachine:M -> arn:aws:states:R:A:execution:M:name."""
    prefix, sep, machine = state_machine_arn.rpartition(":stateMachine:")
    if not sep:
        raise ValueError(f"{state_machine_arn!r} is not a state machine ARN")
    return f"{prefix}:execution:{machine}:{name}"


def execution_input(session_id: str, name: str) -> str:
    """The input of a run: pointers only (`turns` counts ModelTurn invocations of this execution)."""
    return json.dumps({"session_id": session_id, "turns": 0, "execution": name}, separators=(",", ":"))


def finish_run(resources: ResourceStore, session_id: str, execution: str | None = None) -> bool:
    """The execution is about to end because the session parked: True when it must run another turn instead.

    `execution` is the caller's own execution name (`$$.Execution.Name`); a caller that no longer owns the run (it
    was stopped and replaced) changes nothing and ends.
    """
    rec = run_record(resources, session_id)
    if rec is None:
        return False
    again = False

    def change(r: Record) -> None:
        nonlocal again
        again = False
        owner = r.doc.get(EXECUTION)
        if execution is not None and owner not in (None, execution):
            return
        if r.doc.get(WAKE_PENDING):
            r.doc.pop(WAKE_PENDING, None)
            again = True
        else:
            r.doc.pop(EXECUTION, None)
            r.doc.pop(CONTINUED_FROM, None)

    try:
        mutate(resources, rec, change)
    except NotFound:
        return False
    return again


def hand_over_run(resources: ResourceStore, session_id: str, execution: str, last_seq: int) -> str | None:
    """The execution is about to continue as a new one: claim the run for the continuation's name and return it.

    The name is claimed the way a wake claims one (`{session_id}-{last_seq}-{n}`), so the record names the execution
    that will run before it runs; the state machine's ContinueAsNew state starts exactly that name (a retried start
    of the same name and input is the same execution). None when `execution` no longer owns the run (it was stopped
    and replaced): it then ends without continuing. A pending wake stays pending for the continuation.
    """
    rec = run_record(resources, session_id)
    if rec is None or rec.doc.get("_deleted"):
        return None
    claimed: str | None = None

    def change(r: Record) -> None:
        nonlocal claimed
        claimed = None
        if r.doc.get(EXECUTION) != execution:
            return
        wakes = int(r.doc.get(WAKES) or 0) + 1  # type: ignore[call-overload]
        claimed = execution_name(session_id, last_seq, wakes)
        r.doc[WAKES] = wakes
        r.doc[EXECUTION] = claimed
        r.doc[CONTINUED_FROM] = execution

    try:
        mutate(resources, rec, change)
    except NotFound:
        return None
    return claimed


def release_failed_run(resources: ResourceStore, session_id: str, execution: str | None) -> bool:
    """The execution is about to fail (ReportFailure): release the run so the next wake starts a new execution.

    Returns True when a wake arrived while the failing execution owned the run (`_wake_pending`): nothing will run
    it in this execution, so the caller wakes the session again. An `execution` that no longer owns the run (stopped
    and replaced) changes nothing; without one (an old definition's input) the current owner is released. An
    execution that handed the run over and then failed to start its continuation (`_continued_from`) releases the
    continuation's claim: nothing else would start it.
    """
    rec = run_record(resources, session_id)
    if rec is None:
        return False
    pending = False

    def change(r: Record) -> None:
        nonlocal pending
        pending = False
        owner = r.doc.get(EXECUTION)
        handed_over = execution is not None and r.doc.get(CONTINUED_FROM) == execution
        if owner is None or (execution is not None and owner != execution and not handed_over):
            return
        pending = bool(r.doc.pop(WAKE_PENDING, None))
        r.doc.pop(EXECUTION, None)
        r.doc.pop(CONTINUED_FROM, None)
        r.doc.pop(TOKEN_FIELD, None)  # a tool-wait token of the failing execution is spent with it

    try:
        mutate(resources, rec, change)
    except NotFound:
        return False
    return pending


class StepFunctionsOrchestrator:
    def __init__(
        self,
        *,
        state_machine_arn: str,
        resources: ResourceStore,
        events: EventStore,
        sfn_client: SFNClient | None = None,
    ) -> None:
        execution_arn(state_machine_arn, "x")  # validates the ARN
        self.state_machine_arn = state_machine_arn
        self.resources = resources
        self.events = events
        self._sfn = sfn_client

    @property
    def sfn(self) -> SFNClient:
        if self._sfn is None:
            import boto3

            self._sfn = boto3.client("stepfunctions")
        return self._sfn

    # -- the port ------------------------------------------------------------------------------------------------

    def wake(self, session_id: str) -> None:
        self._wake(session_id)

    def _wake(self, session_id: str, *, stopped: str | None = None) -> None:
        """`stopped`: an execution this call just stopped; it no longer owns the run, whatever DescribeExecution
        says (a stopped execution can read RUNNING for a moment, until its current state returns)."""
        rec = run_record(self.resources, session_id)
        if rec is None or rec.doc.get("_deleted"):
            return
        if rec.doc.get(TOKEN_FIELD) and release_tool_wait(self.resources, self.sfn, session_id):
            # The run waits in its ToolWait task: released, its next ModelTurn reads what was just logged.
            return
        owner = rec.doc.get(EXECUTION)
        predecessor = rec.doc.get(CONTINUED_FROM)
        owner_running = (
            isinstance(owner, str)
            and owner != stopped
            and self._running(owner, predecessor=predecessor if isinstance(predecessor, str) else None)
        )
        if owner_running and rec.doc.get(WAKE_PENDING):
            # Already marked (every tool result of a run wakes it): the owner takes that mark after this read, so its
            # next step reads what was logged before the wake (or, failing, ReportFailure wakes anew). No write.
            return
        last_seq = self.events.last_seq(session_id)
        claimed: str | None = None

        def change(r: Record) -> None:
            nonlocal claimed
            claimed = None
            current = r.doc.get(EXECUTION)
            if isinstance(current, str) and (current != owner or owner_running):
                r.doc[WAKE_PENDING] = True  # a live run (or one claimed meanwhile) will see the new events
                return
            wakes = int(r.doc.get(WAKES) or 0) + 1  # type: ignore[call-overload]
            claimed = execution_name(session_id, last_seq, wakes)
            r.doc[WAKES] = wakes
            r.doc[EXECUTION] = claimed
            r.doc.pop(WAKE_PENDING, None)
            r.doc.pop(CONTINUED_FROM, None)

        try:
            mutate(self.resources, rec, change)
        except NotFound:
            return
        if claimed is not None:
            self._start(session_id, claimed)

    def interrupt(self, session_id: str) -> None:
        """Stop the running execution (a model request in flight ends with the Lambda), then wake a fresh one."""
        stopped = self._stop(session_id, cause="user.interrupt")
        self._wake(session_id, stopped=stopped)

    def forget(self, session_id: str) -> None:
        self._stop(session_id, cause="session deleted")

    # -- internals -----------------------------------------------------------------------------------------------

    def _start(self, session_id: str, name: str) -> None:
        try:
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=execution_input(session_id, name)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return  # a retried wake of the same claim: the execution exists
            raise ServiceUnavailable(f"could not start the session run: {exc}") from exc

    def _running(self, name: str, *, predecessor: str | None = None) -> bool:
        """Whether execution `name` runs, or is about to: a continuation not started yet while the execution that
        handed the run over to it (`predecessor`) still runs its ContinueAsNew state."""
        status = self._status(name)
        if status is None and predecessor is not None:
            status = self._status(predecessor)
        return status in ("RUNNING", "PENDING_REDRIVE")

    def _status(self, name: str) -> str | None:
        """The execution's status; None when it does not exist."""
        try:
            out = self.sfn.describe_execution(executionArn=execution_arn(self.state_machine_arn, name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise ServiceUnavailable(f"could not describe the session run: {exc}") from exc
        return str(out["status"])

    def _stop(self, session_id: str, *, cause: str) -> str | None:
        """StopExecution of the run's owner; returns the name of the execution stopped (or already gone)."""
        rec = run_record(self.resources, session_id)
        owner = rec.doc.get(EXECUTION) if rec is not None else None
        if not isinstance(owner, str):
            return None
        predecessor = rec.doc.get(CONTINUED_FROM) if rec is not None else None
        if not self._stop_execution(owner, cause) and isinstance(predecessor, str):
            # A continuation not started yet: stop the execution about to start it. Best effort: a continuation
            # that starts anyway finds the run claimed by the wake that follows and ends (ownership_watch).
            try:
                self._stop_execution(predecessor, cause)
            except ServiceUnavailable:
                log.warning("could not stop the execution handing over the run", extra={"session_id": session_id})
        return owner

    def _stop_execution(self, name: str, cause: str) -> bool:
        """StopExecution; False when there is no such execution."""
        try:
            self.sfn.stop_execution(executionArn=execution_arn(self.state_machine_arn, name), cause=cause)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return False
            raise ServiceUnavailable(f"could not stop the session run: {exc}") from exc
        return True


@contextmanager
def ownership_watch(
    resources: ResourceStore, session_id: str, execution: str | None, *, poll_seconds: float = 1.0
) -> Iterator[ThreadCancelToken]:
    """A cancel token for one ModelTurn invocation: cancelled when its execution no longer owns the session's run.

    StopExecution (an interrupt, a delete) does not stop a Lambda that is already running, so the invocation
    polls the session record and closes its model request as soon as another execution took over, as the
    embedded orchestrator's cancel token does. Without an execution name nothing is watched.
    """
    token = ThreadCancelToken()
    if execution is None:
        yield token
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_seconds):
            try:
                rec = run_record(resources, session_id)
            except Exception:  # a failed poll is not a lost run; try again
                continue
            if rec is None or rec.doc.get("_deleted") or rec.doc.get(EXECUTION) != execution:
                token.cancel()
                return

    thread = threading.Thread(target=watch, name="run-ownership", daemon=True)
    thread.start()
    try:
        yield token
    finally:
        done.set()
        thread.join(poll_seconds + 1)
