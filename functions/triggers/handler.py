"""Target of the EventBridge trigger rule and of EventBridge Scheduler schedules: start a session per event.

See managed_agents/services/triggers.py for the event shape and the idempotency on the event id. A malformed
event raises (EventBridge then retries and dead-letters it); the message says what is wrong.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from managed_agents.aws_runtime import lambda_deps, prime_lambda_deps
from managed_agents.observability import logger, metrics, tracer
from managed_agents.services.triggers import start_session_from_event


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = start_session_from_event(lambda_deps().runtime.sessions, event)
    logger.info("trigger handled", session_id=result["session_id"], session_created=result["created"])
    metrics.add_metric(name="SessionsTriggered" if result["created"] else "TriggerRedelivered", unit="Count", value=1)
    return result


lambda_handler = handler
# SnapStart: the deps and their DynamoDB client go into the snapshot (no-op on an on-demand init).
prime_lambda_deps()
