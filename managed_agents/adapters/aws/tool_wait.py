"""The built-in tool wait of the "session run" state machine: a `.waitForTaskToken` task released by the API.

The ToolWait Lambda stores the task token on the session record (`_tool_wait_token`); the API, having logged
tool results (a sandbox worker's post, logged as `agent.tool_result` on cloud and `user.tool_result` on
self_hosted), calls `release_tool_wait`, which takes the token off the record under the revision check and sends
SendTaskSuccess. Because taking the token is a conditional write, exactly one caller sends it, however many result
batches race. The holder re-checks the log after storing the token, so results logged before the token was stored
release it too (no lost wake-up). The task's own timeout
(the ModelTurn's `wait_seconds`) covers a sandbox that never answers: the next ModelTurn then logs the timeout
error result.

The task output is `{"session_id": ..., "released": true}`: pointers only; the state machine keeps its own
state with `ResultPath: null`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from managed_agents.domain.errors import NotFound, ServiceUnavailable
from managed_agents.domain.session_state import fold
from managed_agents.domain.threads import answer_id, is_thread_id
from managed_agents.harness import step
from managed_agents.harness.threads import awaited, run_record
from managed_agents.harness.turn import HarnessDeps
from managed_agents.ports import Record, ResourceStore, iter_all
from managed_agents.services.records import mutate

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.client import SFNClient

TOKEN_FIELD = "_tool_wait_token"
# The token is no longer waited on: the task timed out, the execution ended, or it was already released.
SPENT_TOKEN_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


def still_waiting_for_tools(deps: HarnessDeps, session_id: str) -> bool:
    """Whether the harness's next step for the session is still to wait for built-in tool results."""
    st = fold(iter_all(deps.events, session_id))
    action = step.decide(st, now=deps.clock.now(), tool_timeout=timedelta(seconds=deps.settings.tool_timeout_seconds))
    if not isinstance(action, step.WaitForTools):
        return False
    if is_thread_id(session_id):  # a child's results are logged on its session's log first (threads.pull_answers)
        rec = run_record(deps.resources, session_id)
        sid = str(rec.doc["session_id"]) if rec is not None else ""
        return not any(deps.events.get(sid, answer_id(sid, call, type_)) for call, type_ in awaited(st))
    return True


def hold_tool_wait(deps: HarnessDeps, sfn_client: SFNClient, session_id: str, task_token: str) -> bool:
    """Park the task token on the session record; True when it was released at once (nothing left to wait for)."""
    rec = run_record(deps.resources, session_id)
    if rec is None or rec.doc.get("_deleted"):
        return _send(sfn_client, session_id, task_token)  # the next ModelTurn parks the deleted session

    def change(r: Record) -> None:
        r.doc[TOKEN_FIELD] = task_token

    try:
        mutate(deps.resources, rec, change)
    except NotFound:
        return _send(sfn_client, session_id, task_token)
    if still_waiting_for_tools(deps, session_id):
        return False
    return release_tool_wait(deps.resources, sfn_client, session_id)


def release_tool_wait(resources: ResourceStore, sfn_client: SFNClient, session_id: str) -> bool:
    """Take the session's tool-wait token, if any, and send SendTaskSuccess; True when this call released it.

    Called by the API after it logged tool results. A token that is already spent (timed out, execution gone) is
    dropped quietly; any other Step Functions failure is ServiceUnavailable and the token is gone from the record
    (the task's timeout still ends the wait).
    """
    rec = run_record(resources, session_id)
    if rec is None or not rec.doc.get(TOKEN_FIELD):
        return False
    token: str | None = None

    def change(r: Record) -> None:
        nonlocal token
        value = r.doc.pop(TOKEN_FIELD, None)
        token = value if isinstance(value, str) and value else None

    try:
        mutate(resources, rec, change)
    except NotFound:
        return False
    if token is None:
        return False
    return _send(sfn_client, session_id, token)


def _send(sfn_client: SFNClient, session_id: str, token: str) -> bool:
    output = json.dumps({"session_id": session_id, "released": True}, separators=(",", ":"))
    try:
        sfn_client.send_task_success(taskToken=token, output=output)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in SPENT_TOKEN_ERRORS:
            return False
        raise ServiceUnavailable(f"could not release the tool wait of session {session_id}: {exc}") from exc
    return True
