"""The seams between the platform core and what runs it (architecture: "Ports and adapters").

Ports are synchronous: boto3, sqlite3 and Lambda are. The ASGI edge reaches them through a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from managed_agents.domain.events import JsonObject, NewEvent, Order, StoredEvent, TimeRange

# top-level fields of a record to set: its document's, its attributes' (RecordSync.fields)
RecordFields = tuple[JsonObject, dict[str, str | int | None]]


@dataclass
class RecordSync:
    """A change of one resource record that an append makes in the same transaction (`EventStore.append`'s `sync`).

    The session record caches what its log says (status, usage, outcome evaluations): written with the events that
    change them, a reader never sees the log ahead of the record. `change` gets a copy of the record as it is inside
    the transaction and the events just stored; the store writes the copy (next revision) and keeps it in `written`.
    A store whose `atomic_record_sync` is false ignores `change`: the caller then writes the record itself, after;
    one whose `atomic_outbox` is true still records `outbox` in the append's transaction (DynamoDB).

    `fields`, when given, says what `change` does as top-level fields to set (document fields, attributes), from
    the events just stored: a store that can (`patch_record_sync`, SQLite) sets them in place, in the same
    transaction, without reading and rewriting the whole record (the session's agent snapshot, resources and
    metadata are left as they are), and keeps the new revision in `patched_rev` (`written` stays None). `unless`
    (field, values): the patch sets nothing (the revision still moves, as a `change` that changed nothing) when the
    record's document field has one of those values then, the condition `change` checks on its copy."""

    kind: str
    workspace_id: str
    id: str
    change: Callable[[Record, Sequence[StoredEvent]], None]
    written: Record | None = None
    fields: Callable[[Sequence[StoredEvent]], RecordFields] | None = None
    patched_rev: int | None = None
    unless: tuple[str, tuple[str, ...]] | None = None
    # resource webhook events written in the same transaction (a session's `session.created` with its initial
    # events: services/sessions.py); with `atomic_record_sync`, only when the record is there
    outbox: Sequence[OutboxEntry] = ()


class EventStore(Protocol):
    """Append-only per-session log with a gapless sequence starting at 1."""

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        sync: RecordSync | None = None,
        expected_last_seq: int | None = None,
    ) -> list[StoredEvent]:
        """Append atomically, assigning the next sequence numbers and `processed_at`; with `sync` (and
        `atomic_record_sync`), also write that record change in the same transaction.

        With `expected_last_seq`, append only if the log still ends at that seq (the batch then takes the seqs right
        after it): a writer whose batch holds only given what it saw (the harness's idle that ends a turn) learns
        that something was logged meanwhile. Raises LogMoved, appending nothing, when the log moved past it.

        Raises DuplicateEvent, appending nothing, when any of the event ids is already in the session's log (checked
        first: a re-run of a batch that was logged is a duplicate, whatever followed it).
        """
        ...

    def read(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int = 1000,
        order: Order = "asc",
        types: Sequence[str] | None = None,
        processed: TimeRange | None = None,
    ) -> list[StoredEvent]:
        """A positional slice: events with after_seq < seq < before_seq, in `order`, at most `limit`."""
        ...

    def get(self, session_id: str, event_id: str) -> StoredEvent | None: ...

    def last_seq(self, session_id: str) -> int: ...

    def delete_session(self, session_id: str) -> None: ...


@dataclass(frozen=True)
class OutboxEntry:
    """A webhook event the event store recorded with the append that caused it (services/webhooks.py)."""

    key: str  # the outbox's own id of the entry
    session_id: str
    event_id: str  # the session event that caused it
    type: str  # the webhook event type (`session.status_idled`, ...)
    created_at: datetime
    # a resource's own event (`agent.created`, ...): `session_id` holds the resource id, this its workspace
    workspace_id: str | None = None
    # what the payload's `data` carries besides type, id and workspace (`vault_id` of a credential's event, ...)
    data: Mapping[str, str] | None = None


class Outbox(Protocol):
    """Webhook events waiting to be fanned out to endpoints, oldest first."""

    def pending(self, limit: int = 100) -> list[OutboxEntry]: ...

    def done(self, keys: Sequence[str]) -> None: ...


class DeploymentSchedules(Protocol):
    """Where a deployment's cron schedule runs outside the process (AWS: EventBridge Scheduler). The embedded
    runtime has none: its in-process scheduler reads the store (services/deployments.py)."""

    def put(self, deployment_id: str, schedule: JsonObject | None, enabled: bool) -> None:
        """Create, update, enable or disable the deployment's schedule; None: remove it."""
        ...


@dataclass
class Record:
    """A stored resource document with the attributes lists filter on."""

    kind: str
    workspace_id: str
    id: str
    doc: JsonObject
    created_at: datetime
    rev: int = 1
    archived: bool = False
    attrs: dict[str, str | int | None] = field(default_factory=dict)
    # When set, the store may remove the record any time after this instant (DynamoDB: the table's TTL; SQLite:
    # purged when another expiring record is written). Until then it is read like any other: callers that care
    # compare it with their clock.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ListQuery:
    limit: int = 20
    order: Order = "desc"
    cursor: tuple[str, str] | None = None  # (created_at as RFC 3339, id) of the last row already returned
    backward: bool = False  # the page before `cursor` (services/common.list_page reads it; adapters never see it)
    include_archived: bool = False
    created: TimeRange = field(default_factory=TimeRange)
    equals: dict[str, str | int] = field(default_factory=dict)
    any_of: dict[str, tuple[str, ...]] = field(default_factory=dict)


class ResourceStore(Protocol):
    """Agents, agent versions, environments, sessions, API keys: documents keyed by (kind, id) in a workspace."""

    def insert(self, rec: Record) -> None: ...

    def get(self, kind: str, workspace_id: str, id_: str) -> Record | None: ...

    def get_by_id(self, kind: str, id_: str) -> Record | None:
        """Internal lookup without a workspace (the harness knows only the session id)."""
        ...

    def replace(self, rec: Record, *, expected_rev: int) -> Record:
        """Write rec with rev = expected_rev + 1 if the stored rev is still expected_rev, else StaleRevision."""
        ...

    def delete(self, kind: str, workspace_id: str, id_: str) -> bool: ...

    def write_all(
        self,
        *,
        inserts: Sequence[Record] = (),
        replaces: Sequence[tuple[Record, int]] = (),
        deletes: Sequence[tuple[str, str, str]] = (),
        outbox: Sequence[OutboxEntry] = (),
    ) -> None:
        """All of these writes in one transaction, or none: an insert whose id exists raises Conflict, a replace
        (record, expected revision) whose revision moved or a delete (kind, workspace, id) of a record that is gone
        raises StaleRevision. At most 25 records (DynamoDB's transactions hold 100 items, lookups included).

        `outbox`: the webhook events of these writes (`agent.created`, ...; services/webhooks.py), recorded in the
        same transaction, so a crash loses both or neither (embedded: rows of the SQLite outbox; AWS: marker items
        in the events table, whose stream the webhook relay reads)."""
        ...

    def list_records(self, kind: str, workspace_id: str, query: ListQuery) -> tuple[list[Record], bool]:
        """One page in (created_at, id) order and whether more rows follow."""
        ...

    def find(self, kind: str, attr: str, values: Sequence[str]) -> list[Record]:
        """Records of any workspace whose attribute is one of values (key lookup, crash recovery)."""
        ...


class RevocationMarker(Protocol):
    """Tells every process of a deployment that a credential was revoked, so caches of checked credentials
    (services/keys.py) drop what they hold at once. `version()` changes after every `mark()`, in any process.
    (The same kind of marker says that a webhook endpoint was ever enabled: services/webhooks.py `any_enabled`.)"""

    def mark(self) -> None: ...

    def version(self) -> int: ...


@dataclass(frozen=True)
class BlobInfo:
    """What a blob store knows of a stored object: its size and the SHA-256 of its bytes (hex)."""

    size: int
    sha256: str


class BlobStore(Protocol):
    """Bytes by key (files, skill archives, session outputs): a directory embedded, S3 on AWS.

    Keys are relative paths of `[A-Za-z0-9._/-]` segments made by the services, never by users. Writes are atomic
    (a reader sees the whole object or none) and streamed: `put` reads `data` in chunks, hashing as it goes, and
    raises `RequestTooLarge` (storing nothing) once more than `max_bytes` arrive."""

    def put(
        self, key: str, data: BinaryIO, *, max_bytes: int, content_type: str = "application/octet-stream"
    ) -> BlobInfo: ...

    def open(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks; `NotFound` when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object (no error when it is already gone)."""
        ...


@runtime_checkable
class PresignedUploads(Protocol):
    """A blob store a client may write to directly (S3: a presigned POST), for uploads larger than the API takes."""

    def presign_post(
        self, key: str, *, max_bytes: int, expires_seconds: int, content_type: str
    ) -> tuple[str, dict[str, str]]: ...


class Subscription(Protocol):
    """A stream reader's interest in one session. Subscribe before reading the log so no append is missed."""

    deleted: bool
    ended: bool  # the server is shutting down: the stream ends cleanly (`end`)

    async def wait(self, seconds: float) -> None:
        """Return when the log may have grown (or the session was deleted, or the stream was ended), or after
        `seconds`."""
        ...

    def end(self) -> None:
        """The server is shutting down (called on the stream's event loop): the reader's `wait` returns at once and
        the stream ends as at `sse_max_seconds`, so a graceful shutdown does not wait on open streams."""
        ...

    def take_previews(self) -> list[JsonObject]:
        """Stream-only previews (`event_start` / `event_delta`) queued since the last call, oldest first: only of
        the event types the reader opted into, and only deltas of previews whose `event_start` it was given."""
        ...

    def forget_preview(self, event_id: str | None) -> None:
        """The stream delivered the final event `event_id` (None: a `span.model_request_end`, which closes every
        preview of the request): drop their later deltas."""
        ...

    def close(self) -> None: ...


class EventNotifier(Protocol):
    """Tells stream readers that a session's log grew. Embedded: in-process; AWS: store polling.

    Previews (`event_deltas[]` on the stream) are never logged: they reach the streams of the process that runs
    the model request, so the embedded server has them and the AWS API Lambda does not (its streams get the
    buffered final events only, which the official SDK's accumulator treats as canonical anyway)."""

    def publish(self, session_id: str, seq: int) -> None: ...

    def publish_deleted(self, session_id: str) -> None: ...

    def subscribe(self, session_id: str, previews: frozenset[str] = frozenset()) -> Subscription:
        """`previews`: the event types (`agent.message`, `agent.thinking`) the reader wants previews of."""
        ...

    def wants_previews(self, session_id: str) -> frozenset[str]:
        """The event types some open stream of the session in this process wants previews of."""
        ...

    def publish_preview(self, session_id: str, preview: JsonObject) -> None: ...


@dataclass(frozen=True)
class ModelUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class ModelResponse:
    content: list[JsonObject]
    stop_reason: str | None
    usage: ModelUsage
    model: str = ""
    stop_details: JsonObject | None = None


ModelErrorKind = Literal["rate_limited", "overloaded", "server", "timeout", "connection", "invalid", "auth"]


class ModelError(Exception):
    def __init__(self, kind: ModelErrorKind, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limited", "overloaded", "server", "timeout", "connection")


class Cancelled(Exception):
    """The model request was stopped on purpose (user.interrupt, session deleted)."""


class CancelToken(Protocol):
    @property
    def cancelled(self) -> bool: ...

    def on_cancel(self, callback: object) -> None: ...

    def wait(self, timeout: float) -> bool: ...


StreamListener = Callable[[JsonObject], None]
"""Called with each `content_block_start` / `content_block_delta` of a streaming response, as its JSON."""


class ModelClient(Protocol):
    def stream_message(
        self, request: JsonObject, *, cancel: CancelToken | None = None, on_event: StreamListener | None = None
    ) -> ModelResponse:
        """Run one streaming Messages API request to completion; ModelError or Cancelled on failure."""
        ...


class Orchestrator(Protocol):
    """Runs the harness for a session until it parks. Embedded: threads; AWS: Step Functions."""

    def wake(self, session_id: str) -> None: ...

    def interrupt(self, session_id: str) -> None: ...

    def forget(self, session_id: str) -> None: ...


def read_wire(
    store: EventStore,
    session_id: str,
    *,
    after_seq: int = 0,
    before_seq: int | None = None,
    limit: int = 1000,
    order: Order = "asc",
    types: Sequence[str] | None = None,
    processed: TimeRange | None = None,
) -> list[tuple[int, str]]:
    """A slice as (seq, wire JSON text) pairs: what events.list returns, without building dicts.

    Adapters that hold the payload as JSON text (SQLite) implement `read_wire_json` and splice the text; the
    others go through `StoredEvent.wire()`. Both give the same JSON (the contract suite checks it)."""
    fast = getattr(store, "read_wire_json", None)
    kwargs = {"after_seq": after_seq, "before_seq": before_seq, "limit": limit, "order": order, "types": types}
    if fast is not None:
        result: list[tuple[int, str]] = fast(session_id, processed=processed, **kwargs)
        return result
    rows = store.read(session_id, processed=processed, **kwargs)  # type: ignore[arg-type]
    return [(e.seq, json.dumps(e.wire(), separators=(",", ":"), ensure_ascii=False)) for e in rows]


def read_wire_tail(store: EventStore, session_id: str, *, after_seq: int, limit: int) -> list[tuple[int, str]]:
    """`read_wire` of what follows `after_seq`, for a reader that polls the end of the log again and again (an event
    stream). An adapter with a cheaper read that may lag a moment behind the newest appends but never skips an event
    implements `read_tail` (DynamoDB: an eventually consistent Query); the others answer with `read_wire`."""
    tail = getattr(store, "read_tail", None)
    if tail is None:
        return read_wire(store, session_id, after_seq=after_seq, limit=limit)
    rows: list[StoredEvent] = tail(session_id, after_seq=after_seq, limit=limit)
    return [(e.seq, json.dumps(e.wire(), separators=(",", ":"), ensure_ascii=False)) for e in rows]


def iter_all(store: EventStore, session_id: str, *, after_seq: int = 0, page: int = 1000) -> Iterator[StoredEvent]:
    """Every event of a session (after `after_seq`) in order, a page at a time."""
    after = after_seq
    while True:
        batch = store.read(session_id, after_seq=after, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1].seq


@dataclass(frozen=True)
class SandboxLaunch:
    """What a sandbox needs to serve one work item: its ids, its one secret, where to call and its setup."""

    work_id: str
    environment_id: str
    session_id: str
    secret: str  # the work item's secret (a session-scoped work token); the only credential a sandbox holds
    api_url: str
    packages: JsonObject
    networking: JsonObject
    # Fargate: the materialization token of the task's init container (services/materials.py), never the sandbox's
    init_token: str = ""


SandboxExited = Callable[[str, int, str], None]  # (work id, exit code, readable detail)


@dataclass(frozen=True)
class Mount:
    """A session resource put in place by the platform (services/materialize.py) for a sandbox to mount."""

    source: Path  # on the platform's side, out of the sandbox's reach
    target: str  # the absolute path inside the sandbox
    read_only: bool


Materialize = Callable[[str, Path, str], list[Mount]]  # (session id, stage directory, attempt) -> mounts


class SandboxProvisioner(Protocol):
    """Starts and stops the hands of `cloud` sessions: the official worker serving exactly one work item.

    Embedded: a subprocess (bubblewrap when available); AWS: an ECS Fargate task with no role and no secrets.
    """

    @property
    def isolation(self) -> str:
        """How sandboxes are isolated, in words an operator can act on."""
        ...

    def launch(self, spec: SandboxLaunch, on_exit: SandboxExited) -> None:
        """Start the sandbox (may block while it is provisioned); raise with a readable message on failure.
        `on_exit` is called once when the sandbox process ends."""
        ...

    def stop(self, session_id: str, work_id: str | None) -> None:
        """Stop the session's sandbox (only the one serving `work_id`, when given)."""
        ...

    def dispose(self, session_id: str) -> None:
        """The session is gone: remove its files."""
        ...


class SecretStoreError(Exception):
    """The secret store cannot serve a request (unreadable key, corrupt entry, backend failure).

    Messages name the secret and the cause, never a secret value.
    """


class SecretStore(Protocol):
    """Write-only credential material (vault secrets), keyed by name. Embedded: encrypted files; AWS: Secrets Manager.

    Names match SECRET_NAME_PATTERN; values are flat string maps (e.g. {"access_token": ..., "refresh_token": ...}).
    Only the vault service (writes) and the MCP proxy (reads, refresh write-back) use it.
    """

    def put(self, name: str, value: Mapping[str, str]) -> None:
        """Create or replace the secret atomically."""
        ...

    def get(self, name: str) -> dict[str, str] | None: ...

    def delete(self, name: str) -> bool:
        """Remove the secret for good; False when there was none."""
        ...


SECRET_NAME_PATTERN = r"^[A-Za-z0-9/_+=.@-]{1,200}$"


@dataclass
class SecretPatch:
    """A change to a stored secret, computed without reading it: keys to set and keys to remove.

    `repr` names the keys only, so a patch in a log line or an assertion message never shows a secret value."""

    updates: dict[str, str] = field(default_factory=dict)
    removals: set[str] = field(default_factory=set)

    def put(self, key: str, value: str) -> None:
        self.updates[key] = value
        self.removals.discard(key)

    def drop(self, key: str) -> None:
        self.updates.pop(key, None)
        self.removals.add(key)

    def apply(self, current: Mapping[str, str]) -> dict[str, str]:
        out = {k: v for k, v in current.items() if k not in self.removals}
        out.update(self.updates)
        return out

    def __bool__(self) -> bool:
        return bool(self.updates or self.removals)

    def __repr__(self) -> str:
        return f"SecretPatch(updates={sorted(self.updates)}, removals={sorted(self.removals)})"


class CredentialSecrets(Protocol):
    """Writes a vault credential's stored secret on behalf of a caller that may neither read it nor use its key
    (the API on AWS: Secrets Manager needs kms:Decrypt on a customer-managed key even to create or replace a value).

    Embedded: in-process on the SecretStore; AWS: the MCP proxy Lambda, the only reader of vault secrets.
    Deleting a secret needs no key, so the vault service deletes through its own SecretStore."""

    def put_secret(self, name: str, value: Mapping[str, str]) -> None:
        """Create the secret `name`, or replace its whole value, in one write (`SecretStore.put`)."""
        ...

    def merge_update(self, name: str, patch: SecretPatch) -> bool:
        """Apply the patch to the secret `name`; False (nothing written) when no secret is stored under it."""
        ...


# -- MCP: the proxy's one failure type, shaped as the reference's session errors (api-reference §3.2) --

McpErrorType = Literal["mcp_connection_failed_error", "mcp_authentication_failed_error"]
CONNECTION_FAILED: McpErrorType = "mcp_connection_failed_error"
AUTHENTICATION_FAILED: McpErrorType = "mcp_authentication_failed_error"


class McpProxyError(Exception):
    """An MCP server could not be used. The message is for users and logs: it never holds a secret value."""

    def __init__(self, error_type: McpErrorType, message: str, server_name: str) -> None:
        super().__init__(message)
        self.error_type: McpErrorType = error_type
        self.message = message
        self.server_name = server_name

    def session_error(self, retry_status: str = "retrying") -> JsonObject:
        """The `error` object of a `session.error` event."""
        return {
            "type": self.error_type,
            "message": self.message,
            "mcp_server_name": self.server_name,
            "retry_status": {"type": retry_status},
        }

    def __repr__(self) -> str:
        return f"McpProxyError({self.error_type!r}, {self.message!r}, server_name={self.server_name!r})"


class McpCallResult(Protocol):
    @property
    def content(self) -> list[JsonObject]: ...

    @property
    def is_error(self) -> bool: ...


class McpGateway(Protocol):
    """How the harness reaches MCP servers: through the MCP proxy, the only reader of vault credentials
    (embedded: in-process; AWS: the MCP proxy Lambda). Failures raise `McpProxyError`."""

    def list_tools(self, session: str, server_name: str) -> list[JsonObject]:
        """The server's tools as Messages API definitions."""
        ...

    def call_tool(self, session: str, server_name: str, tool: str, tool_input: JsonObject) -> McpCallResult: ...
