"""Webhooks: endpoints, an outbox, signed delivery with retries (api-reference §2.11; architecture: "Running
without a client").

**Endpoints** are served at `/v1/webhooks` (ours) and `/v1/organizations/webhooks` (where the SDK's
`client.beta.organization.webhooks` calls: create, retrieve, update, list, delete, regenerate_signing_secret), in the
shape of the SDK's organization endpoints, scoped to the caller's workspace ([inferred]: hosted configures workspace
webhooks in its console and has no API for them; api/routes/webhooks.py says why two paths). `enabled_events` takes
the reference's session, agent, environment, deployment, vault... event types as well as the SDK's organization ones.
The signing secret (`whsec_...`) is returned by create and regenerate only (their idempotent replays read it again:
the replay record keeps no secret, api/edge.py `SECRET_FIELD`). Our addition: `GET .../{id}/deliveries`, the
delivery log (each delivery's attempts, status codes and latency).

**Payloads** are the reference's thin events, signed with Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`), so `client.beta.webhooks.unwrap(body, headers=..., key=secret)` verifies them. The payload
`id` is the same for every endpoint and every retry of one event (receivers deduplicate on it); `organization_id`
is this server's fixed `ORGANIZATION_ID` (it has no organizations). Signing secrets are kept in a secret store, the
record holding their name: embedded, the encrypted file store; on AWS, Secrets Manager under the webhook prefix
(stacks/constructs/secrets.py; not the vault key, which only the MCP proxy may use).

**Which events** (today): the session status changes of the log, as they are appended: `session.status_run_started`,
`session.status_idled` (and `session.requires_action` or `session.budget_reached` when the idle's stop reason is
that), `session.status_rescheduled`, `session.status_terminated`, `session.updated`, and
`session.outcome_evaluation_ended` at each `span.outcome_evaluation_end`; and the resource events of
`RESOURCE_EVENT_TYPES`, each recorded by the resource store in the transaction of the write that causes it
(ResourceStore.write_all's `outbox`: SQLite's outbox; on AWS, a webhook item in the events table).

**Delivery never blocks the session loop and survives restarts**: the event store writes an outbox row in the same
transaction as the event (embedded: SQLite `outbox`); a background deliverer fans each row out into one delivery
record per subscribed endpoint (ids derived from event and endpoint: a fan-out redone after a crash adds nothing),
then removes the row. A delivery is attempted until the receiver answers 2xx (at least once: a crash after the POST
and before its record sends it again), with exponential backoff (`webhook_retry_base_seconds` doubling, capped at
`webhook_retry_max_seconds`, `webhook_max_attempts` attempts: about six hours by default). A delivery that runs out
of attempts disables its endpoint (`state: disabled`, `disabled_reason`); pending deliveries of a disabled or
deleted endpoint are dropped (the SDK: "events that happen while the endpoint is disabled are never delivered").
On AWS the events table's stream is the outbox and this deliverer's fan-out and attempts run in two functions, the
delivery queue's delays standing in for the background loop (adapters/aws/webhook_queue.py).

**Targets**: http(s) only. Addresses are checked when the endpoint is saved and again at each attempt (DNS can
change): loopback is allowed when `webhook_allow_loopback` (the embedded default, for local development), other
non-public addresses (private, link-local, reserved) only when `webhook_allow_private`. Redirects are not followed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

import httpx2
from standardwebhooks.webhooks import Webhook

from managed_agents.domain.clock import Clock, parse_rfc3339, rfc3339
from managed_agents.domain.errors import Conflict, InvalidRequest
from managed_agents.domain.events import JsonObject, StoredEvent
from managed_agents.domain.ids import PREFIXES, new_ulid
from managed_agents.harness.web import FetchRefused, resolve_addresses
from managed_agents.ports import (
    ListQuery,
    Outbox,
    OutboxEntry,
    Record,
    ResourceStore,
    RevocationMarker,
    SecretStore,
    SecretStoreError,
)
from managed_agents.services.common import Services
from managed_agents.services.crud import Collection, Kind
from managed_agents.services.records import mutate
from managed_agents.wire.webhooks import WebhookEndpointCreateParams, WebhookEndpointUpdateParams

ENDPOINT = Kind("webhook_endpoint", lambda: "whep_01" + new_ulid(), noun="webhook endpoint")
DELIVERY = Kind("webhook_delivery", lambda: "whdl_01" + new_ulid(), noun="webhook delivery")
ORGANIZATION_ID = "org_self_hosted"
PENDING = "pending"
MAX_ENDPOINTS = 32
SECRET_KEY = "_signing_secret"  # the signing secret in the record (no secret store, and records from before)
SECRET_NAME_KEY = "_signing_secret_name"  # where the secret store keeps it (embedded: the encrypted file store)
_RESOURCE_EVENTS = {
    "agent": ("created", "updated", "archived", "deleted"),
    "environment": ("created", "updated", "archived", "deleted"),
    "session": (
        "created",
        "updated",
        "archived",
        "deleted",
        "pending",
        "running",
        "idled",
        "requires_action",
        "budget_reached",
        "outcome_evaluation_ended",
        "status_idled",
        "status_rescheduled",
        "status_run_started",
        "status_terminated",
        "thread_created",
        "thread_idled",
        "thread_terminated",
    ),
    "deployment": ("created", "updated", "archived", "deleted", "paused", "unpaused"),
    "deployment_run": ("started", "succeeded", "failed"),
    "memory_store": ("created", "archived", "deleted"),
    "vault": ("created", "archived", "deleted"),
    "vault_credential": ("created", "archived", "deleted", "refresh_failed"),
    "external_key": ("failed", "recovered"),
    "external_storage": ("failed", "recovered"),
    "user_profile": ("enforcement_action_opened", "enforcement_action_resolved", "program_status_updated"),
}
EVENT_TYPES = frozenset(f"{kind}.{name}" for kind, names in _RESOURCE_EVENTS.items() for name in names)
# Recorded by the services' writes, in their transactions (`WebhookService.entries`, Services.events): the agent,
# environment, deployment, deployment run, memory store, vault and vault credential events (refresh_failed: by the
# MCP proxy, mcp_proxy/credentials.py), and a session's created, archived and deleted. Not emitted: agent.deleted
# (agents are archived, never deleted), session.pending/running/idled (no session status is "pending"; the status
# events are session.status_*), and the organization-level external_key.*, external_storage.* and user_profile.*.
RESOURCE_EVENT_TYPES = frozenset(
    t
    for t in EVENT_TYPES
    if t.split(".")[0] in ("agent", "environment", "deployment", "deployment_run", "memory_store", "vault")
    or t.startswith("vault_credential.")
    or t in ("session.created", "session.archived", "session.deleted")
)
log = logging.getLogger("managed_agents.webhooks")


@dataclass(frozen=True)
class WebhookSettings:
    allow_loopback: bool = True
    allow_private: bool = False
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    max_attempts: int = 16
    timeout_seconds: float = 10.0
    concurrency: int = 16


# The session events that cause webhooks (`outbox_events`) and what each causes, besides session.status_idle's
_CAUSED = {
    "session.status_running": ["session.status_run_started"],
    "session.status_rescheduled": ["session.status_rescheduled"],
    "session.status_terminated": ["session.status_terminated"],
    "session.updated": ["session.updated"],
    "span.outcome_evaluation_end": ["session.outcome_evaluation_ended"],
}
# A child thread's creation and status changes, as cross-posted to its session's log (services/threads.py); the
# payload's `data` names the thread (`session_thread_id`)
_THREAD_CAUSED = {
    "session.thread_created": "session.thread_created",
    "session.thread_status_idle": "session.thread_idled",
    "session.thread_status_terminated": "session.thread_terminated",
}
OUTBOX_SOURCE_TYPES = ("session.status_idle", *_CAUSED, *_THREAD_CAUSED)
THREAD_ID_PREFIX = PREFIXES["session_thread"]


def outbox_events(event: StoredEvent) -> list[tuple[str, dict[str, str] | None]]:
    """The webhook events a session event causes (written to the outbox with it): (type, extra payload data)."""
    payload = event.payload
    thread = payload.get("session_thread_id")
    if event.type in _THREAD_CAUSED:
        if not thread or event.session_id.startswith(THREAD_ID_PREFIX):
            return []  # (the copy in the child thread's own log: its session's copy is the one delivered)
        return [(_THREAD_CAUSED[event.type], {"session_thread_id": str(thread)})]
    if thread:
        return []  # a status event cross-posted from a child thread: the session.thread_* events above say it
    if event.type == "session.status_idle":
        stop = cast(JsonObject, payload.get("stop_reason") or {})
        also = {"requires_action": "session.requires_action", "budget_reached": "session.budget_reached"}
        extra = also.get(str(stop.get("type")))
        return [("session.status_idled", None), *([(extra, None)] if extra else [])]
    return [(t, None) for t in _CAUSED.get(event.type, [])]


def outbox_types(event: StoredEvent) -> list[str]:
    """The types of the webhook events a session event causes (`outbox_events`)."""
    return [t for t, _ in outbox_events(event)]


def webhook_event_id(event_id: str, type_: str) -> str:
    digest = hashlib.sha256(f"{event_id}\x00{type_}".encode()).hexdigest()[:26]
    return f"wevt_{digest}"


def check_target(url: str, settings: WebhookSettings, *, field: str = "url") -> None:
    """InvalidRequest unless `url` is http(s) on an address the policy allows (module docstring, "Targets")."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{field}: must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidRequest(f"{field}: must not carry user info or a fragment")
    try:
        addresses = resolve_addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except FetchRefused as exc:
        raise InvalidRequest(f"{field}: {exc}") from exc
    for address in addresses:
        if address.is_loopback and settings.allow_loopback:
            continue
        if not address.is_global and not (settings.allow_private and not address.is_loopback):
            raise InvalidRequest(
                f"{field}: {parts.hostname} resolves to a non-public address ({address}), which this server does not"
                " deliver to (MANAGED_AGENTS_WEBHOOK_ALLOW_PRIVATE / _ALLOW_LOOPBACK)"
            )


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _endpoint_view(doc: JsonObject) -> JsonObject:
    doc.pop("archived_at", None)
    return doc


class WebhookService:
    def __init__(
        self,
        svc: Services,
        settings: WebhookSettings | None = None,
        *,
        secrets: SecretStore | None = None,
        enabled_marker: RevocationMarker | None = None,
    ) -> None:
        """`secrets`: where signing secrets are kept (as vault credentials' are); None: in the endpoint record.
        `enabled_marker`: marked before any process enables an endpoint (`any_enabled`)."""
        self.svc = svc
        self.enabled_marker = enabled_marker
        self._store_read = False  # `any_enabled` read the store once (a database made before the marker)
        self.settings = settings or WebhookSettings()
        self.secrets = secrets
        self.endpoints = Collection(svc, ENDPOINT, view=_endpoint_view)
        self.deliveries = Collection(svc, DELIVERY)
        self._any_enabled: bool | None = None
        # False: every resource event is recorded, whether or not an endpoint is enabled (AWS, where a function's
        # container cannot know of an endpoint another one created: `any_enabled` is a per-process cache)
        self.check_endpoints = True

    def record_resource_events(self, *, stream_outbox: bool) -> None:
        """Have the services' writes record their resource webhook events (agent.created, ...) through `entries`.
        `stream_outbox`: the outbox is a table's stream read by other processes (AWS), so every event is recorded,
        since this process cannot know of an endpoint another one created."""
        self.svc.webhook_entries = self.entries
        self.check_endpoints = not stream_outbox

    def entries(
        self, ws: str, type_: str, resource_id: str, data: Mapping[str, str] | None = None
    ) -> list[OutboxEntry]:
        """The outbox entry of a resource's own event (`agent.created`, ...; Services.events), which the write that
        causes it records in its transaction (at least once: a crash loses the write and the event, or neither);
        none for a type no service emits, or while no endpoint is enabled."""
        if type_ not in RESOURCE_EVENT_TYPES or (self.check_endpoints and not self.any_enabled()):
            return []
        now = self.svc.clock.now()
        return [OutboxEntry("", resource_id, "revt_" + new_ulid(), type_, now, ws, dict(data) if data else None)]

    def any_enabled(self) -> bool:
        """Whether some endpoint (of any workspace) is enabled: when none is, events write no outbox rows, so a
        server without webhooks writes no webhook rows. Once true it is kept (an endpoint disabled or deleted leaves
        it on: rows for no subscriber are fanned out to nobody and dropped); while false it is read again at each
        ask (one index probe, asked only for an event that causes webhooks), since another process (`serve
        --workers N`) may have created the first endpoint. With `enabled_marker` that read is a `stat` while the
        marker says no endpoint was ever enabled here (each enabling marks it first, in whatever process), after one
        read of the store (an endpoint enabled by a build from before the marker): the probe ran inside every
        harness append that logs a status, twice per turn, holding the write lock."""
        if not self._any_enabled:
            marker = self.enabled_marker
            if marker is not None and self._store_read and marker.version() == 0:
                return False
            self._store_read = True
            self._any_enabled = bool(self.svc.resources.find(ENDPOINT.name, "state", ["enabled"]))
        return self._any_enabled

    def _enabling(self) -> None:
        """An endpoint is about to be enabled: mark it for every process first (`any_enabled`), so that none misses
        an event logged after the endpoint is there."""
        if self.enabled_marker is not None and self.enabled_marker.version() == 0:
            self.enabled_marker.mark()

    @property
    def enabled_seen(self) -> bool:
        """What `any_enabled` last found, without reading: true once an append of this process found an endpoint
        (and so could write outbox rows), since it is then kept."""
        return bool(self._any_enabled)

    # -- endpoints -------------------------------------------------------------------------------------------

    @staticmethod
    def _events(events: Sequence[str]) -> list[str]:
        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown:
            raise InvalidRequest(f"enabled_events: unknown event type {unknown[0]!r}")
        return list(dict.fromkeys(events))

    def create(self, ws: str, params: WebhookEndpointCreateParams) -> JsonObject:
        check_target(params.url, self.settings)
        live = sum(1 for _ in self.endpoints.iterate(ws, include_archived=False))
        if live >= MAX_ENDPOINTS:
            raise InvalidRequest(f"a workspace has at most {MAX_ENDPOINTS} webhook endpoints")
        secret, endpoint_id = _new_secret(), ENDPOINT.new_id()
        fields: JsonObject = {
            "url": params.url,
            "name": params.name or "",
            "description": params.description or "",
            "enabled_events": self._events(params.enabled_events),
            "state": "enabled",
            "disabled_reason": "",
            **self._keep_secret(endpoint_id, secret),
        }
        self._enabling()
        try:
            doc = self.endpoints.create(ws, fields, attrs={"state": "enabled"}, id_=endpoint_id)
        except BaseException:
            self._drop_secret(fields)  # (the id is new: whatever stands under its name is this call's)
            raise
        self._any_enabled = True
        return {**doc, "signing_secret": secret}

    def _keep_secret(self, endpoint_id: str, secret: str) -> JsonObject:
        """The record's fields for its signing secret: the secret store's name of it, or the secret itself."""
        if self.secrets is None:
            return {SECRET_KEY: secret}
        name = f"webhooks/{endpoint_id}"
        self.secrets.put(name, {"signing_secret": secret})
        return {SECRET_NAME_KEY: name}

    def _drop_secret(self, doc: JsonObject) -> None:
        if self.secrets is not None and doc.get(SECRET_NAME_KEY):
            self.secrets.delete(str(doc[SECRET_NAME_KEY]))

    def signing_secret(self, endpoint: Record) -> str:
        """The endpoint's signing secret (SecretStoreError when its stored copy is gone)."""
        if SECRET_KEY in endpoint.doc:
            return str(endpoint.doc[SECRET_KEY])
        name = str(endpoint.doc.get(SECRET_NAME_KEY) or "")
        stored = self.secrets.get(name) if self.secrets is not None and name else None
        if not stored or not stored.get("signing_secret"):
            raise SecretStoreError(f"webhook endpoint {endpoint.id}: its signing secret {name!r} is not stored")
        return stored["signing_secret"]

    def current_secret(self, ws: str, endpoint_id: str) -> str:
        """The endpoint's signing secret now (an idempotent replay of its create or regenerate: api/edge.py)."""
        return self.signing_secret(self.endpoints.record(ws, endpoint_id))

    def get(self, ws: str, endpoint_id: str) -> JsonObject:
        return self.endpoints.get(ws, endpoint_id)

    def update(self, ws: str, endpoint_id: str, params: WebhookEndpointUpdateParams) -> JsonObject:
        sent = params.model_fields_set
        if "url" in sent and params.url is not None:
            check_target(params.url, self.settings)

        def edit(doc: JsonObject) -> None:
            for name in ("url", "name", "description"):
                if name in sent and getattr(params, name) is not None:
                    doc[name] = getattr(params, name)
            if params.enabled_events:  # "an empty list leaves it unchanged" (SDK)
                doc["enabled_events"] = self._events(params.enabled_events)
            if params.state is not None and params.state != doc["state"]:
                doc["state"] = params.state
                doc["disabled_reason"] = ""

        def edit_record(r: Record) -> None:
            edit(r.doc)
            r.attrs["state"] = str(r.doc["state"])

        if params.state == "enabled":
            self._enabling()
        updated = self.endpoints.change(self.endpoints.live(ws, endpoint_id), edit_record)
        if updated.doc["state"] == "enabled":
            self._any_enabled = True
        return self.endpoints.render(updated.doc)

    def list_endpoints(
        self, ws: str, *, limit: int, order: str, after_id: str | None, before_id: str | None
    ) -> JsonObject:
        """The SDK's `Page` shape: `data, has_more, first_id, last_id`; `after_id` continues after an endpoint,
        `before_id` gives the first `limit` endpoints that come before it (SDK docstring)."""
        if not 1 <= limit <= 100:
            raise InvalidRequest(f"limit: must be between 1 and 100, got {limit}")
        rows = list(self.endpoints.iterate(ws, include_archived=False))
        if order == "desc":
            rows.reverse()
        ids = [r.id for r in rows]
        for name, value in (("after_id", after_id), ("before_id", before_id)):
            if value is not None and value not in ids:
                raise InvalidRequest(f"{name}: no webhook endpoint {value!r}")
        if after_id is not None:
            rows = rows[ids.index(after_id) + 1 :]
        if before_id is not None:
            rows = rows[: ids.index(before_id)]
        page = rows[:limit]
        data = [self.endpoints.render(r.doc) for r in page]
        return {
            "data": data,
            "has_more": len(rows) > limit,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }

    def delete(self, ws: str, endpoint_id: str) -> JsonObject:
        rec = self.endpoints.record(ws, endpoint_id)
        self.svc.resources.delete(ENDPOINT.name, ws, endpoint_id)
        self._drop_secret(rec.doc)
        return {"id": endpoint_id, "type": "webhook_endpoint_deleted"}

    def regenerate_secret(self, ws: str, endpoint_id: str) -> JsonObject:
        rec = self.endpoints.record(ws, endpoint_id)
        secret = _new_secret()
        kept = self._keep_secret(endpoint_id, secret)  # (replaces the stored one under the same name)

        def edit(r: Record) -> None:
            r.doc.pop(SECRET_KEY, None)  # (a record from before the secret store: moved out now)
            r.doc.update(kept)

        self.endpoints.change(rec, edit, touch=True)
        return {"signing_secret": secret}

    def list_deliveries(self, ws: str, endpoint_id: str, query: ListQuery) -> tuple[list[JsonObject], str | None]:
        self.endpoints.record(ws, endpoint_id)
        query.equals["endpoint_id"] = endpoint_id
        return self.deliveries.list(ws, query)


def resource_event_services(resources: ResourceStore, clock: Clock) -> Services:
    """What a function that writes records without serving the API needs to record their resource webhook events
    (the MCP proxy Lambda: a failed OAuth refresh's `vault_credential.refresh_failed`): every event is recorded, as in
    the AWS API's runtime (`WebhookService.check_endpoints` off: a function's container cannot know of an endpoint
    another one created), and the stream relay fans it out to the endpoints there are."""
    svc = Services(resources, clock)
    WebhookService(svc).record_resource_events(stream_outbox=True)
    return svc


class WebhookDeliverer:
    """Fans the outbox out into deliveries and attempts the due ones (module docstring). `run_once` is one pass;
    `start` runs passes on a background thread, woken early by `wake()`."""

    def __init__(
        self,
        svc: Services,
        outbox: Outbox | None,
        webhooks: WebhookService,
        *,
        http: httpx2.Client | None = None,
        poll_seconds: float = 0.25,
    ) -> None:
        self.svc = svc
        self.outbox = outbox
        self.webhooks = webhooks
        self.settings = webhooks.settings
        self.http = http or httpx2.Client(timeout=self.settings.timeout_seconds, follow_redirects=False)
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="webhook")
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self.on_attempt: Callable[[JsonObject], object] | None = None  # tests and the bench observe attempts
        # no pending delivery is due before this (None: unknown, read the store): a pass with nothing new and
        # nothing due reads no delivery, however many wait hours for their next attempt
        self._quiet_until: datetime | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                try:
                    self.run_once()
                except Exception:
                    log.exception("webhook delivery pass failed")

        threading.Thread(target=loop, name="webhook-deliverer", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run_once(self, now: datetime | None = None, *, wait: bool = False) -> int:
        """Fan out the outbox, then start the due attempts (concurrently); the number started. `wait`: return only
        once they ended."""
        if self.fan_out():
            self._later(None)
        now = now or self.svc.clock.now()
        with self._lock:
            if self._quiet_until is not None and now < self._quiet_until:
                return 0
            self._quiet_until = datetime.max.replace(tzinfo=now.tzinfo)  # lowered below and by each new retry
        due: list[Record] = []
        for r in self.svc.resources.find(DELIVERY.name, "state", [PENDING]):
            at = parse_rfc3339(str(r.doc["next_attempt_at"]))
            if at <= now:
                due.append(r)
            else:
                self._later(at)
        due.sort(key=lambda r: str(r.doc["next_attempt_at"]))
        started = []
        for rec in due:
            with self._lock:
                if rec.id in self._in_flight:
                    continue
                self._in_flight.add(rec.id)
            started.append(self._pool.submit(self._attempt_guarded, rec))
        if wait:
            for f in started:
                f.result()
        return len(started)

    def _later(self, at: datetime | None) -> None:
        """A delivery is due at `at` (None: something new, read the store on the next pass)."""
        with self._lock:
            if at is None or self._quiet_until is None:
                self._quiet_until = None
            else:
                self._quiet_until = min(self._quiet_until, at)

    # -- fan-out ---------------------------------------------------------------------------------------------

    def fan_out(self, batch: int = 500) -> int:
        """Fan the outbox out (embedded); the number of pending deliveries it gave."""
        made = 0
        while self.outbox is not None:
            entries = self.outbox.pending(batch)
            if not entries:
                break
            made += len(self.fan_out_entries(entries))
            self.outbox.done([e.key for e in entries])
        return made

    def fan_out_entries(self, entries: Sequence[OutboxEntry]) -> list[Record]:
        """One delivery record per subscribed endpoint of each entry; the pending ones, made now or by an earlier
        fan-out of the same entries (the embedded outbox after a crash, a redelivered stream batch on AWS)."""
        subscribers: dict[str, list[Record]] = {}
        return [rec for entry in entries for rec in self._fan_out_one(entry, subscribers)]

    def _fan_out_one(self, entry: OutboxEntry, subscribers: dict[str, list[Record]]) -> list[Record]:
        ws = entry.workspace_id  # a resource's event; a session event's workspace is its session's
        if ws is None:
            session = self.svc.resources.get_by_id("session", entry.session_id)
            if session is None:
                return []
            ws = session.workspace_id
        if ws not in subscribers:
            subscribers[ws] = [
                r
                for r in self.webhooks.endpoints.iterate(ws, include_archived=False)
                if r.doc.get("state") == "enabled"
            ]
        event_id = webhook_event_id(entry.event_id, entry.type)
        payload = json.dumps(
            {
                "id": event_id,
                "type": "event",
                "created_at": rfc3339(entry.created_at),
                "data": {
                    "type": entry.type,
                    "id": entry.session_id,
                    "organization_id": ORGANIZATION_ID,
                    "workspace_id": ws,
                    **(entry.data or {}),
                },
            },
            separators=(",", ":"),
        )
        made: list[Record] = []
        for endpoint in subscribers[ws]:
            if entry.type not in cast(list[str], endpoint.doc.get("enabled_events") or []):
                continue
            delivery_id = "whdl_" + hashlib.sha256(f"{event_id}\x00{endpoint.id}".encode()).hexdigest()[:26]
            fields: JsonObject = {
                "endpoint_id": endpoint.id,
                "event": {"id": event_id, "type": entry.type, "created_at": rfc3339(entry.created_at)},
                "state": PENDING,
                "attempts": [],
                "next_attempt_at": rfc3339(self.svc.clock.now()),
                "_payload": payload,
            }
            try:
                made.append(
                    self.webhooks.deliveries.insert(
                        ws, fields, attrs={"endpoint_id": endpoint.id, "state": PENDING}, id_=delivery_id
                    )
                )
            except Conflict:  # fanned out before (a crash, a redelivery): still pending?
                existing = self.svc.resources.get(DELIVERY.name, ws, delivery_id)
                if existing is not None and existing.doc.get("state") == PENDING:
                    made.append(existing)
        return made

    # -- attempts --------------------------------------------------------------------------------------------

    def pending(self, workspace_id: str, delivery_id: str) -> tuple[Record, float] | None:
        """The delivery as stored now, if still pending, with the seconds until it is due (0: now); None when it
        ended. Every attempt starts from this read (embedded `_attempt_guarded`, AWS `deliver_one`), never from a
        copy read earlier: a pass that read a delivery just before another pass's attempt of it ended held a stale
        copy and posted the event a second time (seen in CI: one event delivered twice)."""
        rec = self.svc.resources.get(DELIVERY.name, workspace_id, delivery_id)
        if rec is None or rec.doc.get("state") != PENDING:
            return None
        at = rec.doc.get("next_attempt_at")
        wait = (parse_rfc3339(str(at)) - self.svc.clock.now()).total_seconds() if at else 0.0
        return rec, max(wait, 0.0)

    def _attempt_guarded(self, rec: Record) -> None:
        try:
            found = self.pending(rec.workspace_id, rec.id)  # (finished or rescheduled since the pass read it: not now)
            if found is None or found[1] > 0:
                return
            self.attempt(found[0])
        except Exception:
            log.exception("webhook delivery attempt failed", extra={"delivery_id": rec.id})
        finally:
            with self._lock:
                self._in_flight.discard(rec.id)

    def attempt(self, rec: Record) -> None:
        endpoint = self.svc.resources.get(ENDPOINT.name, rec.workspace_id, str(rec.doc["endpoint_id"]))
        if endpoint is None or endpoint.doc.get("state") != "enabled":
            self._finish(rec, "dropped", None)
            return
        url = str(endpoint.doc["url"])
        payload = str(rec.doc["_payload"])
        event = cast(JsonObject, rec.doc["event"])
        started = time.monotonic()
        at = self.svc.clock.now()
        status: int | None = None
        error: str | None = None
        try:
            check_target(url, self.settings)
            headers = self._signed_headers(self.webhooks.signing_secret(endpoint), str(event["id"]), at, payload)
            response = self.http.post(url, content=payload.encode(), headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (InvalidRequest, SecretStoreError) as exc:
            error = str(exc)
        except httpx2.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempt: JsonObject = {
            "attempted_at": rfc3339(at),
            "status_code": status,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "error": error,
        }
        self._finish(rec, "delivered" if error is None else None, attempt)
        if self.on_attempt is not None:
            self.on_attempt({"delivery_id": rec.id, **attempt})

    @staticmethod
    def _signed_headers(secret: str, msg_id: str, at: datetime, payload: str) -> dict[str, str]:
        signature = Webhook(secret).sign(msg_id, at, payload)
        return {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature,
            "user-agent": "managed-agents-webhooks/1",
        }

    def _finish(self, rec: Record, state: str | None, attempt: JsonObject | None) -> None:
        """Record an attempt: `state` delivered or dropped ends the delivery; None schedules a retry, or fails it
        (and disables its endpoint) when it has no attempts left."""
        exhausted = False
        retries: list[datetime] = []

        def edit(r: Record) -> None:
            nonlocal exhausted
            attempts = [*cast(list[JsonObject], r.doc.get("attempts") or []), *([attempt] if attempt else [])]
            r.doc["attempts"] = attempts
            final = state
            if final is None:
                n = len(attempts)
                if n >= self.settings.max_attempts:
                    final, exhausted = "failed", True
                else:
                    delay = min(self.settings.retry_base_seconds * 2 ** (n - 1), self.settings.retry_max_seconds)
                    retry_at = self.svc.clock.now() + timedelta(seconds=delay)
                    r.doc["next_attempt_at"] = rfc3339(retry_at)
                    retries.append(retry_at)
            if final is not None:
                r.doc["state"] = final
                r.doc["next_attempt_at"] = None
                r.attrs["state"] = final
            r.doc["updated_at"] = rfc3339(self.svc.clock.now())

        mutate(self.svc.resources, rec, edit)
        if retries:
            self._later(retries[-1])
        if exhausted:
            self._disable(rec.workspace_id, str(rec.doc["endpoint_id"]), len(self._attempts(rec)) + 1)

    @staticmethod
    def _attempts(rec: Record) -> list[JsonObject]:
        return cast(list[JsonObject], rec.doc.get("attempts") or [])

    def _disable(self, ws: str, endpoint_id: str, attempts: int) -> None:
        endpoint = self.svc.resources.get(ENDPOINT.name, ws, endpoint_id)
        if endpoint is None:
            return

        def edit(r: Record) -> None:
            if r.doc.get("state") == "enabled":
                r.doc["state"] = "disabled"
                r.attrs["state"] = "disabled"
                r.doc["disabled_reason"] = f"a delivery failed {attempts} attempts over its retry window"
                r.doc["updated_at"] = rfc3339(self.svc.clock.now())

        mutate(self.svc.resources, endpoint, edit)
        log.warning("webhook endpoint disabled", extra={"endpoint_id": endpoint_id})
