"""Work reaper: an EventBridge rule invokes this every minute to stop work items whose lease ran out.

`WorkService.reap()` (managed_agents/services/work.py) finds the live items through the resources table's sparse
work-state index (a Query, never a Scan), stops the expired ones, answers their sessions' pending sandbox calls with
error tool results, appends a retrying session.error and wakes the session, so the next tool call gets a fresh
sandbox. The embedded runtime runs the same call on a thread (`Runtime.start_reaper`). Every step is conditional on
the item's revision, so overlapping invocations reap an item once. The scheduled event's content is not used.
Each run also syncs the deployment schedules a write left unsynced (`DeploymentService.reconcile_schedules`) and
finishes the deployment runs whose fire was cut off after its claim (`DeploymentService.finish_pending_runs`: the
embedded server does it when it starts again; on AWS no process restarts, so this periodic run is where it happens).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from managed_agents.aws_runtime import lambda_deps
from managed_agents.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    work = lambda_deps().runtime.work
    if work is None:  # build_aws_runtime always builds one; a runtime without it cannot reap
        raise RuntimeError("the AWS runtime has no work service to reap")
    reaped = work.reap()
    if reaped:  # (a metric published every minute, zero or not, would bill a custom metric all month)
        logger.warning("expired work items stopped", reaped=reaped)
        metrics.add_metric(name="WorkReaped", unit="Count", value=reaped)
    deployments = lambda_deps().runtime.deployments
    synced = deployments.reconcile_schedules()
    if synced:
        logger.warning("deployment schedules synced after a failed sync", synced=synced)
    finished = deployments.finish_pending_runs()  # (claimed more than deployment_run_grace_seconds ago)
    if finished:
        logger.warning("deployment runs cut off after their claim finished", finished=finished)
    return {
        "reaped": reaped,
        **({"schedules_synced": synced} if synced else {}),
        **({"runs_finished": finished} if finished else {}),
    }


lambda_handler = handler
