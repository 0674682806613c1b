"""Webhook delivery on AWS (managed_agents/adapters/aws/webhook_queue.py has the design).

* `relay`: the events table's DynamoDB stream (filtered to the event types that cause webhooks) -> one delivery
  record per subscribed endpoint, each queued on the delivery queue;
* `deliver`: the delivery queue -> a signed POST per due delivery, its attempt in the delivery log, and its next
  attempt queued with the backoff's delay; answers SQS with the messages that failed (ReportBatchItemFailures).

Both run the embedded deliverer's code (services/webhooks.py `WebhookDeliverer`), so payloads, signatures, retries,
the delivery log, auto-disabling and the target policy are the same on both.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from managed_agents.adapters.aws import webhook_queue
from managed_agents.aws_runtime import lambda_deps, prime_lambda_deps
from managed_agents.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def relay(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    deliverer, queue = lambda_deps().webhooks
    queued = webhook_queue.relay(deliverer, queue, event.get("Records") or [])
    if queued:
        metrics.add_metric(name="WebhookDeliveriesQueued", unit="Count", value=queued)
    return {"queued": queued}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def deliver(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    deliverer, queue = lambda_deps().webhooks
    failed = webhook_queue.deliver(deliverer, queue, event.get("Records") or [])
    if failed:
        logger.warning("webhook delivery messages failed", failed=len(failed))
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


# SnapStart is off for these (no model SDK to import); an ahead-of-time init still builds the deps.
prime_lambda_deps()
