"""Webhook delivery on AWS: the event log's DynamoDB stream is the outbox, an SQS queue carries the deliveries.

The embedded server writes an outbox row in the transaction of the event that causes a webhook and a background
deliverer drains it (services/webhooks.py). On AWS the same role is played by the events table's stream: an event
item *is* its own outbox record, written by the append's transaction, and the stream keeps it 24 hours whatever
happens to the function that appended it. A resource's own events (`agent.created`, ...) are webhook items the
resource store writes in the same table, in the transaction of the write that causes them (dynamodb_event_store.py:
"webhook items"; TTL removes them after a week). Then, with the embedded deliverer's own code (`WebhookDeliverer`):

* **relay** (functions/webhooks `relay`, the stream's consumer; the event source mapping's two filters pass only
  inserted event items of the types in `OUTBOX_SOURCE_TYPES` and inserted webhook items of the types in
  `RESOURCE_EVENT_TYPES`): `fan_out_entries` writes one delivery record per subscribed endpoint (ids derived from
  event and endpoint, so a retried batch adds nothing) and queues one message per pending delivery, also for records
  an earlier, failed run of the batch wrote (it may have failed before queueing them). A failing
  batch is retried by Lambda, halved, and at last sent to the webhook dead-letter queue.
* **deliver** (functions/webhooks `deliver`, the queue's consumer): for each message, the delivery record decides:
  not pending (delivered, failed, dropped, gone): nothing; not due yet: queued again with the remaining delay; due:
  `WebhookDeliverer.attempt` (signed POST, the attempt in the delivery log, the backoff, the endpoint disabled when a
  delivery runs out of attempts), then, while still pending, queued again for its next attempt. SQS delays a message
  by at most 15 minutes, so a longer backoff takes several hops, each a read of the record. A message whose handling
  raised is reported as a batch item failure: SQS hands it out again after the visibility timeout (the record is the
  truth, so a second look does no harm), and to the dead-letter queue after `maxReceiveCount`.

A stream record of an event whose payload was spilled to S3 carries no payload: its webhooks are derived from the
type alone (an idle without its stop reason gives `session.status_idled` only). Status events are a few hundred
bytes, far below the spill threshold; the relay is not granted the spill bucket.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from managed_agents.adapters.aws.dynamodb_event_store import PK, SK, webhook_entry
from managed_agents.domain.clock import parse_rfc3339
from managed_agents.domain.events import JsonObject, StoredEvent
from managed_agents.ports import OutboxEntry
from managed_agents.services.webhooks import WebhookDeliverer, outbox_events

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds cap
log = logging.getLogger("managed_agents.webhooks")


def stream_entries(records: Sequence[Mapping[str, Any]]) -> list[OutboxEntry]:
    """The outbox entries of a batch of DynamoDB stream records of the events table: inserted event items (the
    session events that cause webhooks) and webhook items (a resource's own events, written by the resource store
    with the write that causes them: dynamodb_event_store.webhook_item)."""
    out: list[OutboxEntry] = []
    for record in records:
        image = cast(Mapping[str, Any], (record.get("dynamodb") or {}).get("NewImage") or {})
        if record.get("eventName") != "INSERT":
            continue  # (the mapping's filters pass nothing else)
        resource_event = webhook_entry(image)
        if resource_event is not None:
            out.append(resource_event)
            continue
        if "type" not in image or "id" not in image:
            continue  # (guard items carry no type)
        payload: JsonObject = json.loads(image["payload"]["S"]) if "payload" in image else {}
        event = StoredEvent(
            session_id=image[PK]["S"],
            seq=int(image[SK]["N"]),
            id=image["id"]["S"],
            type=image["type"]["S"],
            processed_at=parse_rfc3339(image["processed_at"]["S"]),
            payload=payload,
        )
        for type_, data in outbox_events(event):
            key = f"{event.session_id}/{event.seq}/{type_}"
            out.append(OutboxEntry(key, event.session_id, event.id, type_, event.processed_at, data=data))
    return out


class SqsWebhookQueue:
    """The queue of webhook deliveries: a message `{"workspace_id", "delivery_id"}` per delivery to look at."""

    def __init__(self, *, queue_url: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send(self, workspace_id: str, delivery_id: str, delay_seconds: float = 0) -> None:
        delay = min(max(math.ceil(delay_seconds), 0), MAX_DELAY_SECONDS)
        body = json.dumps({"workspace_id": workspace_id, "delivery_id": delivery_id}, separators=(",", ":"))
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=delay)


def relay(deliverer: WebhookDeliverer, queue: SqsWebhookQueue, records: Sequence[Mapping[str, Any]]) -> int:
    """Fan a stream batch out into deliveries and queue each pending one; the number queued."""
    pending = deliverer.fan_out_entries(stream_entries(records))
    for rec in pending:
        queue.send(rec.workspace_id, rec.id)
    return len(pending)


def deliver(deliverer: WebhookDeliverer, queue: SqsWebhookQueue, messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Handle a batch of queue messages; the ids of those that failed (SQS hands them out again)."""
    failed: list[str] = []
    for message in messages:
        try:
            body = json.loads(message["body"])
            delay = deliver_one(deliverer, str(body["workspace_id"]), str(body["delivery_id"]))
            if delay is not None:
                queue.send(str(body["workspace_id"]), str(body["delivery_id"]), delay)
        except Exception:
            log.exception("webhook delivery message failed", extra={"message_id": message.get("messageId")})
            failed.append(str(message.get("messageId")))
    return failed


def deliver_one(deliverer: WebhookDeliverer, workspace_id: str, delivery_id: str) -> float | None:
    """Attempt the delivery if it is due; the delay after which to look at it again (None: never, it ended)."""
    found = deliverer.pending(workspace_id, delivery_id)
    if found is None:
        return None
    rec, wait = found
    if wait > 0:
        return wait
    deliverer.attempt(rec)
    found = deliverer.pending(workspace_id, delivery_id)
    return None if found is None else found[1]
