"""ToolWait task of the "session run" state machine, invoked with `.waitForTaskToken`.

Input `{"session_id", "task_token"}`: parks the token on the session record until the API logs the tool results
and releases it (`managed_agents.adapters.aws.tool_wait.release_tool_wait`). Returns nothing.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from managed_agents.adapters.aws.session_run import ToolWaitInput, tool_wait
from managed_agents.aws_runtime import lambda_deps, prime_lambda_deps
from managed_agents.observability import logger, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    req = ToolWaitInput.model_validate(event)
    logger.append_keys(session_id=req.session_id)
    released = tool_wait(req, lambda_deps())
    # No custom metric (billed per metric-month): the invocations are Lambda's `Invocations`, the split this line.
    logger.info("tool wait parked", released_at_once=released)


lambda_handler = handler
# SnapStart: the deps and their DynamoDB and Step Functions clients go into the snapshot (no-op on an on-demand init).
prime_lambda_deps(task_tokens=True)
