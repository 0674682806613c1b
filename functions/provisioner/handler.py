"""Provisioner Lambda: starts (ECS RunTask) and stops the per-session Fargate sandbox task.

Invoked synchronously by `LambdaSandboxProvisioner` (the ModelTurn Lambda's work service) with
`{"action": "launch", "launch": {work_id, environment_id, session_id, secret, api_url, packages, networking}}` or
`{"action": "stop", "session_id", "work_id"}`. A launch that starts no task raises, so the caller fails the work item
with a readable session.error. The request carries the work secret: it is never logged.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from managed_agents.adapters.aws.ecs_sandbox_provisioner import (
    PROVISIONER_REQUEST,
    EcsSandboxProvisioner,
    LaunchRequest,
    provisioner_from_settings,
    serve_provisioner_request,
)
from managed_agents.lambda_init import init_runs_ahead
from managed_agents.observability import logger, metrics, tracer
from managed_agents.settings import EcsSandboxSettings


@functools.cache
def provisioner() -> EcsSandboxProvisioner:
    return provisioner_from_settings(EcsSandboxSettings())  # required fields come from the environment


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    req = PROVISIONER_REQUEST.validate_python(event)
    session_id = req.launch.session_id if isinstance(req, LaunchRequest) else req.session_id
    logger.append_keys(session_id=session_id, action=req.action)
    out = serve_provisioner_request(req, provisioner())
    logger.info("sandbox request served", work_id=out["work_id"])
    metrics.add_metric(name="SandboxLaunched" if req.action == "launch" else "SandboxStopped", unit="Count", value=1)
    return out


lambda_handler = handler
if init_runs_ahead():  # SnapStart: the provisioner and its ECS client go into the snapshot
    provisioner().ecs.meta.service_model  # noqa: B018 -- touching the property creates the client
