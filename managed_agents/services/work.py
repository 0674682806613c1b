"""The environment work queue: the protocol the official sandbox worker speaks (api-reference §2.2.1).

A work item asks for hands for one session. It is created when a session whose agent has sandbox tools gets
user input (speculatively, so the sandbox starts while the first model turn runs) or when a tool call finds
no live item. Its life: `queued` → (poll hands it out with a `secret`, ack) `starting` → (first heartbeat)
`active` → `stopping` (graceful stop requested) → `stopped`.

* `self_hosted` environments: items wait in the queue until a worker run by the user polls them with an
  environment key.
* `cloud` environments: the platform claims the item itself (it is created `starting`) and hands its secret to
  the sandbox provisioner (embedded: a subprocess; AWS: an ECS task), which runs the same official worker on
  exactly that item.

The `secret` is URL-safe base64 JSON whose `sessions_token` is a work token: valid only for this item and its
session, and only until the item stops. A lease is kept by heartbeats (`expected_last_heartbeat` echoes the
server's last value, `NO_HEARTBEAT` claims the first one); an item whose lease runs out, or whose sandbox
process dies, is stopped and its session's pending sandbox calls get an error result (`agent.tool_result` on cloud,
`user.tool_result` on self_hosted: domain.events.builtin_tool_result_type) so the model
sees what happened and the next call gets a fresh sandbox (architecture: disposable hands).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from managed_agents.domain.clock import parse_rfc3339, rfc3339
from managed_agents.domain.errors import (
    Conflict,
    DuplicateEvent,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ServiceUnavailable,
    StaleRevision,
)
from managed_agents.domain.events import JsonObject, NewEvent, builtin_tool_result_type
from managed_agents.domain.ids import deterministic_event_id, deterministic_id
from managed_agents.domain.session_state import ToolCall, fold
from managed_agents.harness.tools import runs_sandbox_tools
from managed_agents.ports import (
    EventStore,
    ListQuery,
    Record,
    ResourceStore,
    SandboxLaunch,
    SandboxProvisioner,
    iter_all,
)
from managed_agents.services.common import Services, list_page, patch_metadata, render
from managed_agents.services.keys import WORK_TOKEN_PREFIX, Principal, hash_key
from managed_agents.services.materials import needs_init, new_init_token
from managed_agents.services.records import mutate

log = logging.getLogger("managed_agents.work")

LIVE = ("queued", "starting", "active", "stopping")
LEASED = ("starting", "active", "stopping")
NO_HEARTBEAT = "NO_HEARTBEAT"
RECLAIM_DEFAULT_MS = 5000
WORKERS_POLLING_WINDOW = 30.0
MIN_TTL, MAX_TTL = 2, 3600


@dataclass(frozen=True)
class WorkSettings:
    lease_ttl_seconds: int = 60
    start_timeout_seconds: float = 900.0
    api_url: str | None = None
    # The provisioner hands sandboxes the API URL itself (AWS: the provisioner Lambda's own setting), so a caller
    # that does not know its own URL (the API Lambda: its URL would be a reference cycle) may still launch.
    provisioner_knows_api_url: bool = False


def encode_secret(token: str) -> str:
    raw = json.dumps({"version": 1, "sessions_token": token}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def runnable_sandbox_calls(calls: list[ToolCall]) -> list[ToolCall]:
    """Unanswered sandbox calls a worker may run now (allowed, or ask-gated and confirmed)."""
    return [c for c in calls if c.kind == "builtin" and c.runnable]


class WorkService:
    def __init__(
        self,
        svc: Services,
        events: EventStore,
        settings: WorkSettings,
        provisioner: SandboxProvisioner | None = None,
        *,
        background_launch: bool = True,
    ) -> None:
        """`background_launch=False` launches sandboxes in the calling thread (Lambda: a thread left running when
        the handler returns is frozen with the container, so the launch must end before the response)."""
        self.svc = svc
        self.events = events  # publishes its appends to open streams (adapters/publishing_event_store.py)
        self.settings = settings
        self.provisioner = provisioner
        self._queued = threading.Condition()
        self._pollers: dict[str, dict[str, float]] = {}  # environment → worker id → monotonic time of last poll
        self._launcher = threading.BoundedSemaphore(64)
        self.background_launch = background_launch
        # True where an init container puts them in place (Fargate): a launch then carries a materialization token
        self.init_tokens = False

    # -- helpers --------------------------------------------------------------------------------------------

    @property
    def resources(self) -> ResourceStore:
        return self.svc.resources

    def _now(self) -> datetime:
        return self.svc.clock.now()

    def _environment(self, ws: str, environment_id: str) -> Record:
        env = self.resources.get("environment", ws, environment_id)
        if env is None:
            raise NotFound(f"environment {environment_id!r} not found")
        return env

    def _check_scope(self, p: Principal, environment_id: str, *, api_key: bool, environment_key: bool) -> None:
        allowed = (p.kind == "api_key" and api_key) or (p.kind == "environment_key" and environment_key)
        if p.kind in ("environment_key", "work") and p.environment_id != environment_id:
            raise NotFound(f"environment {environment_id!r} not found")
        if not allowed:
            raise _permission(p, "this work queue endpoint")

    def record(self, ws: str, environment_id: str, work_id: str) -> Record:
        self._environment(ws, environment_id)
        rec = self.resources.get("work", ws, work_id)
        if rec is None or rec.attrs.get("environment_id") != environment_id:
            raise NotFound(f"work {work_id!r} not found in environment {environment_id!r}")
        return rec

    def _item_for(self, p: Principal, environment_id: str, work_id: str) -> Record:
        """The item a lifecycle call (heartbeat, stop) may touch: a work token reaches only its own item."""
        if p.kind == "work" and p.work_id != work_id:
            raise _permission(p, f"work {work_id!r}")
        if p.kind in ("environment_key", "work") and p.environment_id != environment_id:
            raise NotFound(f"environment {environment_id!r} not found")
        return self.record(p.workspace_id, environment_id, work_id)

    # -- creating work ---------------------------------------------------------------------------------------

    def ensure_for_session(
        self, session_id: str, *, session: Record | None = None, calls: Sequence[str] = ()
    ) -> Record | None:
        """Make sure the session has a live work item if its agent has sandbox tools; idempotent, race-safe.
        `session`: its record as the caller just read it (an event send), so it is not read again. `calls`: the ids
        of the sandbox calls the caller (the harness, from the log as its step read it) wants hands for; when no item
        is live, the log is read again first, and none is made if every one of them has been answered meanwhile (a
        failed item's `fail` answered them with its error after the step read the log: a launch for them would be
        wasted, and its own failure a session.error about nothing)."""
        sess = session if session is not None else self.resources.get_by_id("session", session_id)
        if sess is None or sess.doc.get("_deleted") or sess.archived:
            return None
        env_type = sess.doc.get("_environment_type")
        if env_type not in ("cloud", "self_hosted"):
            return None
        if not runs_sandbox_tools(cast(JsonObject, sess.doc["agent"])):  # (its subagents' tools count too)
            return None
        items = self.resources.find("work", "session_id", [session_id])
        live = [w for w in items if w.attrs.get("state") in ("queued", "starting", "active")]
        if live:
            return live[0]
        if calls and _all_answered(fold(iter_all(self.events, session_id)).calls, calls):
            log.info("no work queued: its calls were answered", extra={"session_id": session_id})
            return None
        # The id is derived from the session and its item count: two concurrent creators collide on insert.
        work_id = deterministic_id("work", session_id, str(len(items)))
        now = self._now()
        platform = env_type == "cloud"
        doc: JsonObject = {
            "id": work_id,
            "type": "work",
            "environment_id": sess.doc["environment_id"],
            "state": "starting" if platform else "queued",
            "data": {"type": "session", "id": session_id},
            "metadata": {},
            "created_at": rfc3339(now),
            "acknowledged_at": rfc3339(now) if platform else None,
            "started_at": None,
            "latest_heartbeat_at": None,
            "stop_requested_at": None,
            "stopped_at": None,
            "_ttl": self.settings.lease_ttl_seconds,
            "_platform": platform,
            "_handed_out_at": None,
            "_stop_reason": None,
            "_for_calls": list(calls),
        }
        attrs: dict[str, str | int | None] = {
            "environment_id": str(sess.doc["environment_id"]),
            "session_id": session_id,
            "state": str(doc["state"]),
            "token": None,
        }
        token = None
        init_token = ""
        if platform:
            token = WORK_TOKEN_PREFIX + secrets.token_urlsafe(32)
            attrs["token"] = hash_key(token)
            if self.init_tokens and needs_init(sess.doc):
                init_token, doc["_init_token"] = new_init_token()
        rec = Record("work", sess.workspace_id, work_id, doc, now, attrs=attrs)
        try:
            self.resources.insert(rec)
        except Conflict:
            return self.resources.get("work", sess.workspace_id, work_id)
        log.info("work queued", extra={"session_id": session_id, "work_id": work_id, "environment_type": env_type})
        if platform:
            assert token is not None
            self._launch(rec, sess, encode_secret(token), init_token)
        else:
            with self._queued:
                self._queued.notify_all()
        return rec

    def _launch(self, rec: Record, sess: Record, secret: str, init_token: str = "") -> None:
        env = self.resources.get("environment", sess.workspace_id, str(sess.doc["environment_id"]))
        config = cast(JsonObject, env.doc.get("config") if env else {}) or {}
        if self.provisioner is None or not (self.settings.api_url or self.settings.provisioner_knows_api_url):
            why = (
                "no sandbox provisioner is configured"
                if self.provisioner is None
                else "the server does not know the URL sandboxes should call back (set MANAGED_AGENTS_SANDBOX_API_URL)"
            )
            self.fail(rec.id, f"The sandbox could not be started: {why}.")
            return
        spec = SandboxLaunch(
            work_id=rec.id,
            environment_id=str(sess.doc["environment_id"]),
            session_id=sess.id,
            secret=secret,
            api_url=self.settings.api_url or "",
            packages=cast(JsonObject, config.get("packages") or {}),
            networking=cast(JsonObject, config.get("networking") or {}),
            init_token=init_token,
        )
        provisioner = self.provisioner

        def launch() -> None:
            try:
                provisioner.launch(spec, self.sandbox_exited)
            except Exception as exc:
                log.exception("sandbox launch failed", extra={"session_id": sess.id, "work_id": rec.id})
                self.fail(rec.id, f"The sandbox could not be started: {exc}")

        if not self.background_launch:
            launch()
            return
        threading.Thread(target=launch, name=f"launch-{rec.id}", daemon=True).start()

    # -- the worker's side ---------------------------------------------------------------------------------------

    def poll(
        self,
        p: Principal,
        environment_id: str,
        *,
        block_ms: int | None,
        reclaim_older_than_ms: int | None,
        worker_id: str | None,
    ) -> JsonObject | None:
        self._check_scope(p, environment_id, api_key=False, environment_key=True)
        env = self._environment(p.workspace_id, environment_id)
        if env.archived:
            raise InvalidRequest(f"environment {environment_id!r} is archived")
        if block_ms is not None and not 1 <= block_ms <= 999:
            raise InvalidRequest(f"block_ms: must be between 1 and 999, got {block_ms}")
        reclaim = RECLAIM_DEFAULT_MS if reclaim_older_than_ms is None else reclaim_older_than_ms
        if reclaim < 0:
            raise InvalidRequest(f"reclaim_older_than_ms: must be at least 0, got {reclaim}")
        if worker_id:
            self._pollers.setdefault(environment_id, {})[worker_id[:200]] = time.monotonic()
        deadline = time.monotonic() + (block_ms or 0) / 1000
        while True:
            claimed = self._claim_next(p.workspace_id, environment_id, reclaim)
            if claimed is not None:
                return claimed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._queued:
                self._queued.wait(min(remaining, 0.25))

    def _claim_next(self, ws: str, environment_id: str, reclaim_ms: int) -> JsonObject | None:
        query = ListQuery(limit=50, order="asc", equals={"environment_id": environment_id, "state": "queued"})
        rows, _ = self.resources.list_records("work", ws, query)
        now = self._now()
        for rec in rows:
            handed = rec.doc.get("_handed_out_at")
            if handed and (now - parse_rfc3339(str(handed))) < timedelta(milliseconds=reclaim_ms):
                continue
            token = WORK_TOKEN_PREFIX + secrets.token_urlsafe(32)
            rec.doc["_handed_out_at"] = rfc3339(now)
            rec.attrs["token"] = hash_key(token)  # a reclaimed item gets a new token; the old one dies
            try:
                new = self.resources.replace(rec, expected_rev=rec.rev)
            except StaleRevision:  # another poll took it
                continue
            out = render(new.doc)
            out["secret"] = encode_secret(token)
            return out
        return None

    def ack(self, p: Principal, environment_id: str, work_id: str) -> JsonObject:
        self._check_scope(p, environment_id, api_key=False, environment_key=True)
        rec = self.record(p.workspace_id, environment_id, work_id)

        def change(r: Record) -> None:
            if r.doc["state"] != "queued":
                raise Conflict(f"work {work_id!r} is {r.doc['state']}; only queued work can be acknowledged")
            _set_state(r, "starting")
            r.doc["acknowledged_at"] = rfc3339(self._now())

        return render(mutate(self.resources, rec, change).doc)

    def heartbeat(
        self, p: Principal, environment_id: str, work_id: str, *, expected: str | None, desired_ttl: int | None
    ) -> JsonObject:
        rec = self._item_for(p, environment_id, work_id)
        if desired_ttl is not None and not MIN_TTL <= desired_ttl <= MAX_TTL:
            raise InvalidRequest(f"desired_ttl_seconds: must be between {MIN_TTL} and {MAX_TTL}, got {desired_ttl}")
        result: JsonObject = {}

        def change(r: Record) -> None:
            state = str(r.doc["state"])
            ttl = int(cast(int, r.doc.get("_ttl") or self.settings.lease_ttl_seconds))
            current = cast(str | None, r.doc.get("latest_heartbeat_at"))
            result.clear()
            if state in ("stopping", "stopped"):
                result.update(last_heartbeat=current or "", lease_extended=False, state=state, ttl_seconds=ttl)
                return
            if state == "queued":
                raise Conflict(f"work {work_id!r} is queued; acknowledge it before heartbeating")
            if expected is not None and expected != (current or NO_HEARTBEAT):
                raise PreconditionFailed(
                    f"expected_last_heartbeat {expected[:64]!r} does not match the stored heartbeat"
                    f" {current or NO_HEARTBEAT!r}: another worker may hold the lease of work {work_id!r}",
                    error_code="heartbeat_precondition_failed",
                    details={
                        "current_state": {
                            "last_heartbeat": current,
                            "lease_extended": False,
                            "state": state,
                            "ttl_seconds": ttl,
                        }
                    },
                )
            ttl = desired_ttl or ttl
            now = self._now()
            stamp = rfc3339(now)
            if stamp == current:  # two beats in one microsecond must still differ
                stamp = rfc3339(now + timedelta(microseconds=1))
            if state == "starting":
                _set_state(r, "active")
                r.doc["started_at"] = stamp
            r.doc["latest_heartbeat_at"] = stamp
            r.doc["_ttl"] = ttl
            r.doc["_lease_expires_at"] = rfc3339(now + timedelta(seconds=ttl))
            result.update(last_heartbeat=stamp, lease_extended=True, state="active", ttl_seconds=ttl)

        mutate(self.resources, rec, change)
        return {"type": "work_heartbeat", **result}

    def stop(self, p: Principal, environment_id: str, work_id: str, *, force: bool) -> JsonObject:
        rec = self._item_for(p, environment_id, work_id)
        graceful = p.kind == "api_key" and not force
        before = str(rec.doc["state"])

        def change(r: Record) -> None:
            state = r.doc["state"]
            if state == "stopped":
                raise Conflict(f"work {work_id!r} is already stopped")
            now = rfc3339(self._now())
            r.doc["stop_requested_at"] = r.doc.get("stop_requested_at") or now
            if graceful and state in ("starting", "active"):
                _set_state(r, "stopping")
                r.doc["_stop_reason"] = "requested"
            else:
                _stop(r, now, r.doc.get("_stop_reason") or ("requested" if p.kind == "api_key" else "worker"))

        new = mutate(self.resources, rec, change)
        if new.doc["state"] == "stopped" and before != "stopped":
            self._after_stop(new, failed=False)
        return render(new.doc)

    # -- the user's side -------------------------------------------------------------------------------------

    def retrieve(self, p: Principal, environment_id: str, work_id: str) -> JsonObject:
        self._check_scope(p, environment_id, api_key=True, environment_key=False)
        return render(self.record(p.workspace_id, environment_id, work_id).doc)

    def update(self, p: Principal, environment_id: str, work_id: str, metadata: dict[str, str | None]) -> JsonObject:
        self._check_scope(p, environment_id, api_key=True, environment_key=False)
        rec = self.record(p.workspace_id, environment_id, work_id)

        def change(r: Record) -> None:
            r.doc["metadata"] = patch_metadata(cast(dict[str, str], r.doc.get("metadata") or {}), metadata)

        return render(mutate(self.resources, rec, change).doc)

    def list_work(self, p: Principal, environment_id: str, query: ListQuery) -> tuple[list[JsonObject], str | None]:
        self._check_scope(p, environment_id, api_key=False, environment_key=True)
        self._environment(p.workspace_id, environment_id)
        query.equals["environment_id"] = environment_id
        page = list_page(self.resources, "work", p.workspace_id, query)
        return [render(r.doc) for r in page.rows], page.next_page

    def stats(self, p: Principal, environment_id: str) -> JsonObject:
        self._check_scope(p, environment_id, api_key=True, environment_key=True)
        self._environment(p.workspace_id, environment_id)
        query = ListQuery(limit=1000, order="asc", equals={"environment_id": environment_id, "state": "queued"})
        rows, _ = self.resources.list_records("work", p.workspace_id, query)
        pending = sum(1 for r in rows if r.doc.get("_handed_out_at"))
        cutoff = time.monotonic() - WORKERS_POLLING_WINDOW
        polling = self._pollers.get(environment_id, {})
        return {
            "type": "work_queue_stats",
            "depth": len(rows) - pending,
            "pending": pending,
            "oldest_queued_at": rows[0].doc["created_at"] if rows else None,
            "workers_polling": sum(1 for t in list(polling.values()) if t >= cutoff) if polling else None,
        }

    # -- failure handling ------------------------------------------------------------------------------------

    def sandbox_exited(self, work_id: str, returncode: int, detail: str) -> None:
        """The provisioner saw the sandbox process end: a live item means the hands died with work pending."""
        rec = self.resources.get_by_id("work", work_id)
        if rec is None or rec.doc["state"] == "stopped":
            return
        if rec.doc["state"] == "stopping":
            self.fail(work_id, None)
            return
        reason = detail.strip() or f"exit code {returncode}"
        self.fail(work_id, f"The sandbox stopped unexpectedly ({reason}).")

    def reap(self) -> int:
        """Stop items whose lease ran out (a worker that died or stopped heartbeating). Returns how many."""
        now = self._now()
        count = 0
        for rec in self.resources.find("work", "state", list(LEASED)):
            doc = rec.doc
            ttl = int(cast(int, doc.get("_ttl") or self.settings.lease_ttl_seconds))
            if doc.get("_lease_expires_at"):
                expires = parse_rfc3339(str(doc["_lease_expires_at"]))
            elif doc.get("_platform"):
                expires = rec.created_at + timedelta(seconds=self.settings.start_timeout_seconds)
            else:
                expires = parse_rfc3339(str(doc.get("acknowledged_at") or rfc3339(rec.created_at))) + timedelta(
                    seconds=ttl
                )
            if now <= expires:
                continue
            count += 1
            if doc["state"] == "stopping":
                message = None
            elif doc.get("_platform") and not doc.get("latest_heartbeat_at"):
                message = f"The sandbox did not start within {self.settings.start_timeout_seconds:g} s."
            else:
                message = f"The sandbox stopped heartbeating: its {ttl} s lease expired."
            try:
                self.fail(rec.id, message)
            except Exception:  # one item's failure (a store or provisioner error) must not hold up the others
                log.exception("reaping work failed", extra={"work_id": rec.id})
        return count

    def replace_dead_sandboxes(self, alive: Callable[[str], bool]) -> int:
        """At start-up: stop every platform item whose sandbox is not `alive` (it died with the previous server
        process), so the next tool call gets fresh hands at once instead of waiting out the lease. Calls that were
        running in it get error results; a session that had none gets no error. Returns how many were stopped."""
        count = 0
        for rec in self.resources.find("work", "state", list(LEASED)):
            session_id = str(rec.attrs["session_id"])
            if not rec.doc.get("_platform") or alive(session_id):
                continue
            sess = self.resources.get_by_id("session", session_id)
            calls = fold(iter_all(self.events, session_id)).calls if sess and not sess.doc.get("_deleted") else []
            lost = (
                "The sandbox stopped with the server, which has restarted." if runnable_sandbox_calls(calls) else None
            )
            try:
                self.fail(rec.id, lost)
                count += 1
            except Exception:  # one item's failure must not hold up the others
                log.exception("replacing a dead sandbox failed", extra={"work_id": rec.id})
        return count

    def fail(self, work_id: str, message: str | None) -> None:
        """Stop an item that lost its hands; with a message, answer its session's pending calls with it."""
        rec = self.resources.get_by_id("work", work_id)
        if rec is None:
            return
        stopped_now = False

        def change(r: Record) -> None:
            nonlocal stopped_now
            stopped_now = r.doc["state"] != "stopped"
            if stopped_now:
                _stop(r, rfc3339(self._now()), "failed" if message else "stopped")

        new = mutate(self.resources, rec, change)
        if not stopped_now:
            return
        log.warning("work stopped", extra={"work_id": work_id, "reason": message or "graceful"})
        self._after_stop(new, failed=message is not None, message=message)

    def _after_stop(self, rec: Record, *, failed: bool, message: str | None = None) -> None:
        session_id = str(rec.attrs["session_id"])
        if rec.doc.get("_platform") and self.provisioner is not None:
            try:
                self.provisioner.stop(session_id, rec.id)
            except Exception:  # the item is stopped already: its session must still learn that its hands are gone
                log.exception("stopping the sandbox failed", extra={"session_id": session_id, "work_id": rec.id})
        sess = self.resources.get_by_id("session", session_id)
        if sess is None or sess.doc.get("_deleted"):
            return
        state = fold(iter_all(self.events, session_id))
        pending = runnable_sandbox_calls(state.calls)
        if not failed:
            if pending:  # a graceful stop (idle timeout) raced a new tool call: give the call fresh hands
                self.ensure_for_session(session_id)
            return
        if not pending and _superfluous(rec, state.calls):
            # made for calls that another item's failure answered before this one could start (the harness asked
            # for hands from a log read just before those answers): nothing of the session depended on it
            log.warning("work for answered calls failed", extra={"work_id": rec.id, "reason": message})
            return
        # every failure inside a session becomes a session.error, even when no call was waiting yet
        key = f"hands-lost@{rec.id}"
        text = f"{message} The tool call was abandoned; the next tool call gets a fresh sandbox."
        result_type = builtin_tool_result_type(sess.doc.get("_environment_type"))
        batch = [
            NewEvent(
                deterministic_event_id(session_id, key, i),
                result_type,
                {"tool_use_id": c.event_id, "content": [{"type": "text", "text": text}], "is_error": True},
            )
            for i, c in enumerate(pending)
        ]
        error = {"type": "unknown_error", "message": message, "retry_status": {"type": "retrying"}}
        batch.append(NewEvent(deterministic_event_id(session_id, key, len(batch)), "session.error", {"error": error}))
        try:
            self.events.append(session_id, batch)
        except DuplicateEvent:
            return
        if pending and self.svc.orchestrator is not None:
            self.svc.orchestrator.wake(session_id)

    def stop_sandbox(self, session_id: str) -> None:
        """Stop the session's sandbox before it is archived or deleted, so that a failure changes nothing:
        ServiceUnavailable (retryable) when the provisioner cannot stop it. Stopping a stopped sandbox is a no-op."""
        if self.provisioner is None:
            return
        try:
            self.provisioner.stop(session_id, None)
        except Exception as exc:
            log.exception("stopping the sandbox failed", extra={"session_id": session_id})
            raise ServiceUnavailable(
                f"could not stop the sandbox of session {session_id!r}, so nothing was changed; retry the request"
                f" ({exc})"
            ) from exc

    def end_session(self, session_id: str, *, dispose: bool = False) -> None:
        """The session was archived or deleted, its sandbox stopped first (`stop_sandbox`): stop its work items (a
        sandbox launched meanwhile then finds its work stopped and ends) and, on delete, remove the sandbox's files."""
        for rec in self.resources.find("work", "session_id", [session_id]):
            if rec.doc["state"] != "stopped":

                def change(r: Record) -> None:
                    if r.doc["state"] != "stopped":
                        _stop(r, rfc3339(self._now()), "session_ended")

                mutate(self.resources, rec, change)
        if dispose and self.provisioner is not None:
            self.provisioner.dispose(session_id)


def _all_answered(calls: list[ToolCall], call_ids: Sequence[str]) -> bool:
    """Whether every one of these calls is among `calls` (a session's, folded) with its result (a call not found
    there, such as a child thread's, counts as unanswered)."""
    resolved = {c.event_id for c in calls if c.resolved}
    return all(i in resolved for i in call_ids)


def _superfluous(rec: Record, calls: list[ToolCall]) -> bool:
    """An item that never heartbeat, made for calls (`ensure_for_session(calls=...)`) all of which are answered."""
    wanted = cast(list[str], rec.doc.get("_for_calls") or [])
    return bool(wanted) and not rec.doc.get("latest_heartbeat_at") and _all_answered(calls, wanted)


def _set_state(r: Record, state: str) -> None:
    r.doc["state"] = state
    r.attrs["state"] = state


def _stop(r: Record, now: str, reason: object) -> None:
    _set_state(r, "stopped")
    r.doc["stopped_at"] = now
    r.doc["_stop_reason"] = reason


def _permission(p: Principal, what: str) -> PermissionDenied:
    return PermissionDenied(f"{p.describe()} cannot access {what}")
