"""Requests that must not take effect twice: `Idempotency-Key`, and the official SDK's own retries of creates.

A key is scoped to the workspace and kept `ttl` (24 h by default) after its first use, in the resource store
(kind `idempotency_key`, with an expiry both adapters remove: SQLite purges, DynamoDB's TTL deletes). The record
holds the request's fingerprint (method, path, body) and, once the request has succeeded, its response:

* same key, same request, first one done: the stored response is replayed (status and body);
* same key, same request, first one still running: 409, retryable (the SDK retries 409s), until it is done or
  `pending_timeout` has passed (a request that died half-way: its claim is taken over);
* same key, another request: 400, for as long as the key is kept;
* a request that failed (any error) releases its key: the retry runs it again.

The SDK sends no key, but it retries a POST whose response was lost with the same body and
`x-stainless-retry-count` >= 1. For creates (a retried sessions.create must not make two sessions) the first
attempt records itself under an implicit key derived from the credential and the request's fingerprint, kept
for `retry_window` (15 minutes: the SDK's default timeout is 10 minutes, plus its backoff); only a retry looks it
up. A first attempt always runs, so two identical creates made on purpose make two resources. (Event sends are
recognised by the session service from the log itself, with no record of their own: services/sessions.py.)

A stored response larger than the store takes (DynamoDB items: about 400 KB compressed) is not kept: the record
says the request succeeded, and a replay answers 409 saying so, never running the request again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from managed_agents.domain.clock import Clock, parse_rfc3339, rfc3339
from managed_agents.domain.errors import Conflict, InvalidRequest, RequestTooLarge, StaleRevision
from managed_agents.domain.events import JsonObject
from managed_agents.ports import Record, ResourceStore

KIND = "idempotency_key"
MAX_KEY_LENGTH = 255
KEY_TTL = timedelta(hours=24)
# How long a retry of the SDK is recognised: its default timeout (10 minutes) plus its backoff, with room.
RETRY_WINDOW = timedelta(minutes=15)


class InProgress(Conflict):
    """Another request with this key is running: retry later (so the SDK's automatic retry is wanted)."""

    retryable = True


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str | None  # JSON text; None when it was too large to keep
    request_id: str


@dataclass(frozen=True)
class Claim:
    """This request holds the key: `complete` it with the response, or `release` it on failure."""

    record: Record


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
        raise InvalidRequest(
            f"Idempotency-Key: must be 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces"
            f" (got {len(key)} characters)"
        )
    return key


class IdempotencyService:
    def __init__(
        self,
        resources: ResourceStore,
        clock: Clock,
        *,
        ttl: timedelta = KEY_TTL,
        retry_window: timedelta = RETRY_WINDOW,
        pending_timeout: timedelta = timedelta(minutes=5),
    ) -> None:
        self.resources = resources
        self.clock = clock
        self.ttl = ttl
        self.retry_window = retry_window
        self.pending_timeout = pending_timeout

    # -- explicit keys -----------------------------------------------------------------------------------------

    def begin(self, ws: str, key: str, request_fingerprint: str) -> StoredResponse | Claim:
        """The stored response of an earlier use of the key, or a claim on it for this request."""
        return self._begin(ws, f"key:{check_key(key)}", request_fingerprint, self.ttl, "Idempotency-Key")

    # -- the SDK's retries of creates ------------------------------------------------------------------------------

    def begin_create(
        self, ws: str, credential: str, request_fingerprint: str, *, retried: bool
    ) -> StoredResponse | Claim:
        """A create without a key. A first attempt (`retried` False) always runs and records itself; a retry
        replays the first attempt's response when there is one within `retry_window`."""
        scope = f"retry:{credential}:{request_fingerprint}"
        if retried:
            return self._begin(ws, scope, request_fingerprint, self.retry_window, None)
        rec = self._new(ws, scope, request_fingerprint, self.retry_window)
        for _ in range(5):
            current = self.resources.get(KIND, ws, rec.id)
            if current is None:
                claim = self._claim_new(rec)
            else:
                claim = self._take_over(rec, current)
            if claim is not None:
                return claim
        raise InProgress("too many concurrent identical requests; retry")

    # -- completion ------------------------------------------------------------------------------------------------

    def complete(self, claim: Claim, status: int, body: str, request_id: str) -> None:
        doc: JsonObject = {**claim.record.doc, "state": "done", "status": status, "request_id": request_id}
        done = Record(
            KIND,
            claim.record.workspace_id,
            claim.record.id,
            {**doc, "body": body},
            claim.record.created_at,
            claim.record.rev,
            False,
            {},
            claim.record.expires_at,
        )
        try:
            self.resources.replace(done, expected_rev=claim.record.rev)
        except RequestTooLarge:
            done.doc = {**doc, "body": None}
            self.resources.replace(done, expected_rev=claim.record.rev)
        except StaleRevision:
            pass  # taken over after its pending timeout: the newer claim decides

    def release(self, claim: Claim) -> None:
        """The request failed: its key may be used again (the retry runs it)."""
        current = self.resources.get(KIND, claim.record.workspace_id, claim.record.id)
        if current is not None and current.rev == claim.record.rev:
            self.resources.delete(KIND, claim.record.workspace_id, claim.record.id)

    # -- internals -------------------------------------------------------------------------------------------------

    def _record_id(self, ws: str, scope: str) -> str:
        return "idem_" + hashlib.sha256(f"{ws}\0{scope}".encode()).hexdigest()[:40]

    def _new(self, ws: str, scope: str, request_fingerprint: str, keep: timedelta) -> Record:
        now = self.clock.now()
        doc: JsonObject = {"fingerprint": request_fingerprint, "state": "pending", "started_at": rfc3339(now)}
        return Record(KIND, ws, self._record_id(ws, scope), doc, now, expires_at=now + keep)

    def _begin(
        self, ws: str, scope: str, request_fingerprint: str, keep: timedelta, header: str | None
    ) -> StoredResponse | Claim:
        for _ in range(5):
            now = self.clock.now()
            rec = self._new(ws, scope, request_fingerprint, keep)
            current = self.resources.get(KIND, ws, rec.id)
            if current is None:  # the first use (for a retry: the first attempt never ran, or it failed)
                claim = self._claim_new(rec)
                if claim is not None:
                    return claim
                continue
            expired = current.expires_at is not None and current.expires_at <= now
            stale = current.doc.get("state") == "pending" and (
                parse_rfc3339(str(current.doc.get("started_at"))) + self.pending_timeout <= now
            )
            if expired or stale:
                claim = self._take_over(rec, current)
                if claim is not None:
                    return claim
                continue
            if current.doc.get("fingerprint") != request_fingerprint:
                raise InvalidRequest(
                    f"{header}: this key was already used for a different request (another method, path or body);"
                    f" a key may be reused only for the same request, for {_hours(keep)} after its first use"
                )
            if current.doc.get("state") == "done":
                body = current.doc.get("body")
                return StoredResponse(
                    int(str(current.doc.get("status") or 200)),
                    None if body is None else str(body),
                    str(current.doc.get("request_id") or ""),
                )
            raise InProgress(
                f"{header or 'this request'}: a request with this key is still in progress; retry when it has finished"
            )
        raise InProgress("Idempotency-Key: too many concurrent requests with this key; retry")

    def _claim_new(self, rec: Record) -> Claim | None:
        try:
            self.resources.insert(rec)
        except Conflict:
            return None  # lost a race: look again
        return Claim(rec)

    def _take_over(self, rec: Record, current: Record) -> Claim | None:
        """Replace an expired, abandoned or (first attempts of creates) earlier record by this request's claim."""
        over = Record(
            KIND, rec.workspace_id, rec.id, rec.doc, current.created_at, current.rev, False, {}, rec.expires_at
        )
        try:
            return Claim(self.resources.replace(over, expected_rev=current.rev))
        except StaleRevision:
            return None


def _hours(keep: timedelta) -> str:
    seconds = int(keep.total_seconds())
    return f"{seconds // 3600} h" if seconds >= 3600 and seconds % 3600 == 0 else f"{seconds // 60} min"
