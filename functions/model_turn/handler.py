"""ModelTurn task of the "session run" state machine: `advance()`s of the harness until the session parks, waits or
backs off (steps that run again chain within the invocation's time; see `session_run.model_turn`).

Input `{"session_id", "turns", "execution"?}` (`execution` = `$$.Execution.Name`, so a stopped execution's
late invocation cannot release a run it no longer owns); output `{"session_id", "turns": turns + 1, "outcome":
"run_again" | "retry_after" | "wait_for_tools" | "parked", "wait_seconds", "reason"}`. Pointers only, never payloads.
`report_failure` is the ReportFailure task of the same state machine.

Custom metrics (each metric name is billed per month while it is published): only `ModelTurn_retry_after` (a model
error backed off) and `SessionRunFailed`. The normal outcomes go to the "model turn done" log line (`outcome`, for
Logs Insights), and the invocation count is Lambda's own `Invocations` metric.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from managed_agents.adapters.aws.session_run import ModelTurnInput, ReportFailureInput, model_turn
from managed_agents.adapters.aws.session_run import report_failure as report_run_failure
from managed_agents.aws_runtime import lambda_deps, prime_lambda_deps
from managed_agents.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    req = ModelTurnInput.model_validate(event)
    logger.append_keys(session_id=req.session_id, turn=req.turns)
    out = model_turn(req, lambda_deps(), seconds_left=lambda: context.get_remaining_time_in_millis() / 1000)
    logger.info("model turn done", outcome=out.outcome, wait_seconds=out.wait_seconds, reason=out.reason)
    if out.outcome == "retry_after":  # model errors; the outcomes of the normal flow are in the log line above
        metrics.add_metric(name="ModelTurn_retry_after", unit="Count", value=1)
    return out.model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def report_failure(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ReportFailure task: the run failed; append session.error + idle (input `{"session_id", "error"}`)."""
    req = ReportFailureInput.model_validate(event)
    logger.append_keys(session_id=req.session_id)
    appended = report_run_failure(req, lambda_deps())
    logger.warning("session run failed", error=req.error.error, reported=appended)
    metrics.add_metric(name="SessionRunFailed", unit="Count", value=1)
    return {"session_id": req.session_id, "reported": appended}


lambda_handler = handler
# SnapStart: the deps, their DynamoDB client and the model SDK go into the snapshot (no-op on an on-demand init).
prime_lambda_deps(model_sdk=True)
