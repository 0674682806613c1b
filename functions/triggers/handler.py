"""Target of the EventBridge trigger rule and of EventBridge Scheduler schedules: start a session or fire a
deployment per trigger.

See managed_agents/services/triggers.py for the event shapes and the idempotency key. A malformed trigger raises
with a message saying what is wrong; the rule and Scheduler invoke asynchronously, so Lambda retries it and then
sends it to the trigger dead-letter queue (the alias's on-failure destination, stacks/constructs/triggers.py).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from managed_agents.aws_runtime import lambda_deps, prime_lambda_deps
from managed_agents.observability import logger, metrics, tracer
from managed_agents.services.triggers import handle_trigger


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = lambda_deps().runtime
    result = handle_trigger(runtime.sessions, runtime.deployments, event)
    logger.info(
        "trigger handled", session_id=result["session_id"], session_created=result["created"], run=result.get("run_id")
    )
    metrics.add_metric(name="SessionsTriggered" if result["created"] else "TriggerRedelivered", unit="Count", value=1)
    return result


lambda_handler = handler
# SnapStart: the deps and their DynamoDB client go into the snapshot (no-op on an on-demand init).
prime_lambda_deps()
