"""Sessions and their events (api-reference §2.3, §3).

A session snapshots its agent at creation. Sending events validates them against the folded log (a result
must answer an open call, a confirmation an ask-gated call), appends them, marks the session running before
the append (so a crash between append and wake is recovered at start-up) and wakes the orchestrator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple, cast

from pydantic import BaseModel

from managed_agents.domain import prices
from managed_agents.domain.clock import parse_rfc3339, rfc3339
from managed_agents.domain.errors import (
    AuthenticationFailed,
    Conflict,
    DuplicateEvent,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from managed_agents.domain.events import (
    EVENT_TYPES,
    JsonObject,
    NewEvent,
    Order,
    StoredEvent,
    TimeRange,
    builtin_tool_result_type,
)
from managed_agents.domain.ids import deterministic_event_id, new_id
from managed_agents.domain.outcomes import DEFAULT_MAX_ITERATIONS
from managed_agents.domain.session_state import SessionState, ToolCall, fold
from managed_agents.domain.threads import KIND as THREAD_KIND
from managed_agents.domain.threads import SESSION_AGENT_FIELDS, answer_id, primary_thread_id
from managed_agents.harness.state_cache import StateCache
from managed_agents.ports import (
    EventNotifier,
    EventStore,
    ListQuery,
    OutboxEntry,
    Record,
    RecordSync,
    iter_all,
    read_wire,
)
from managed_agents.services import budgets
from managed_agents.services.agents import AgentService, check_tools, resolve_model, resolve_tools, skill_refs
from managed_agents.services.common import (
    Services,
    archive_record,
    archiving,
    as_list,
    check_metadata,
    list_page,
    patch_metadata,
    render,
)
from managed_agents.services.environments import EnvironmentService
from managed_agents.services.files import FileService
from managed_agents.services.idempotency import RETRY_WINDOW
from managed_agents.services.keys import Principal
from managed_agents.services.memory_stores import index_session, sessions_of_store
from managed_agents.services.multiagent import session_multiagent
from managed_agents.services.records import mutate
from managed_agents.services.session_resources import TOKENS as RESOURCE_TOKENS
from managed_agents.services.session_resources import SessionResourceService
from managed_agents.services.skills import resolve_skill_refs, skill_summaries
from managed_agents.services.vaults import VaultService
from managed_agents.services.work import WorkService
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.sessions import (
    AgentRefParams,
    AgentWithOverridesParams,
    EventParams,
    FileRubric,
    SessionCreateParams,
    SessionUpdateParams,
    SystemMessageParams,
    UserCustomToolResultParams,
    UserDefineOutcomeParams,
    UserInterruptParams,
    UserMessageParams,
    UserToolConfirmationParams,
    UserToolResultParams,
)

ACTIVE = ("running", "rescheduling")
# The events a client may send (events.send, api-reference §3.1): where a retried send looks for its first attempt.
CLIENT_EVENT_TYPES = (
    "user.message",
    "user.interrupt",
    "user.tool_confirmation",
    "user.custom_tool_result",
    "user.tool_result",
    "agent.tool_result",  # a cloud worker's user.tool_result, as logged
    "user.define_outcome",
    "system.message",
)
RETRY_SCAN = 200
MAX_RUBRIC_CHARS = 262_144
OUTCOME_MARK = "\x00outcome"  # in a send's `answered` set: the send already defines an outcome
log = logging.getLogger("managed_agents.sessions")
# the sent events `_check_event` checks against the folded log
STATEFUL_PARAMS = (
    UserToolConfirmationParams,
    UserCustomToolResultParams,
    UserToolResultParams,
    UserDefineOutcomeParams,
)


def _records_outbox(events: EventStore) -> bool:
    """Whether the store records a `RecordSync.outbox` in the append's transaction (ports.RecordSync)."""
    return bool(getattr(events, "atomic_record_sync", False) or getattr(events, "atomic_outbox", False))


def initial_event_ids(session_id: str, count: int) -> list[str]:
    """The ids of a session's initial events (its create's `initial_events`): derived from the session id."""
    return [deterministic_event_id(session_id, "initial_events", i) for i in range(count)]


def _usage_zero() -> JsonObject:
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
    }


def _dump(m: BaseModel) -> JsonObject:
    return cast(JsonObject, m.model_dump(mode="json", exclude_none=True))


def _echo(stored: Sequence[StoredEvent], sent: Sequence[EventParams]) -> list[JsonObject]:
    """The events as sent (a cloud worker's user.tool_result is logged as agent.tool_result, see below)."""
    return [{**e.wire(), "type": ev.type} for e, ev in zip(stored, sent, strict=True)]


def _send_digest(events: Sequence[EventParams]) -> str:
    text = json.dumps([_dump(e) for e in events], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def render_session(doc: JsonObject, now: datetime, children: budgets.Spend | None = None) -> JsonObject:
    """The session as the API shows it; `children`: what its child threads consumed (budgets.children_spend), which
    its usage and list cost include (its primary thread's own are on the thread: services/threads.py)."""
    out = render(doc)
    created = parse_rfc3339(str(doc["created_at"]))
    active = float(cast(float, doc.get("_active_seconds") or 0.0))
    running_since = doc.get("_running_since")
    if running_since:
        active += max(0.0, (now - parse_rfc3339(str(running_since))).total_seconds())
    # stats sum each thread's own active time; usage counts the time any thread ran once (the session runs while its
    # children do: it waits on them)
    threads_active = children.active_seconds if children is not None else 0.0
    out["stats"] = {
        "active_seconds": round(active + threads_active, 3),
        "duration_seconds": round((now - created).total_seconds(), 3),
    }
    own = cast(JsonObject, doc.get("usage") or _usage_zero())
    usage = dict(own) if children is None else children.usage_json(own)
    usage["active_seconds"] = round(active, 3)
    tracked = children is None or not children.untracked
    if tracked and (doc.get("budget") is not None or doc.get("_list_cost") is not None):
        spent = budgets.consumed(doc) + (children.list_cost if children is not None else 0)
        usage["list_cost"] = {"amount": prices.amount(spent), "currency": prices.CURRENCY}
    out["usage"] = usage
    return out


MAX_SEQ = 2**63 - 1  # SQLite's and DynamoDB's integer range: a larger number in a token is not ours


def encode_seq_cursor(seq: int, order: Order = "asc") -> str:
    """An events page token: the position after `seq` in a listing of `order`."""
    return "page_" + base64.urlsafe_b64encode(f"seq:{order}:{seq}".encode()).decode().rstrip("=")


def decode_seq_cursor(page: str | None, order: Order = "asc") -> int | None:
    if not page:
        return None
    try:
        raw = page.removeprefix("page_")
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        tag, token_order, number = text.split(":")
        seq = int(number)
        if (
            not page.startswith("page_")
            or tag != "seq"
            or token_order not in ("asc", "desc")
            or not 0 <= seq <= MAX_SEQ
        ):
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"page: {page[:100]!r} is not a page cursor returned by this endpoint") from exc
    if token_order != order:
        raise InvalidRequest("page: page token order does not match request")
    return seq


class CreatePlan(NamedTuple):
    """What a session create would store, once every check passed (`SessionService.check_create`)."""

    snapshot: JsonObject  # the agent version's stored document
    agent: JsonObject  # the session's `agent`
    budget: JsonObject | None
    environment: Record
    resources: list[JsonObject]
    tokens: dict[str, str]


class SessionService:
    def __init__(self, svc: Services, events: EventStore, notifier: EventNotifier) -> None:
        self.svc = svc
        self.events = events
        self.notifier = notifier
        self.agents = AgentService(svc)
        self.environments = EnvironmentService(svc)
        self.work: WorkService | None = None  # set by wiring: speculative hands, stop on delete
        self.vaults: VaultService | None = None  # set by wiring: vault_ids are checked at create
        self.files: FileService | None = None  # set by wiring: file rubrics of outcomes are read from it
        self.session_resources: SessionResourceService | None = None  # set by wiring: `resources` at create
        # folded states kept between sends (AWS API: a tool result is checked against the state of the whole log;
        # kept, a send reads only the events logged since the last one). None: every such send folds the whole log.
        self.states: StateCache | None = None
        self.ended_hooks: list[Callable[[str], object]] = []  # called with the id of a deleted/archived session
        self.created_hooks: list[Callable[[str], object]] = []  # called with the id of a new session

    def check_access(self, p: Principal, sid: str) -> Record:
        """Session-level calls: any API key of the workspace, an environment key of the session's environment,
        or the work token of a live work item of this session (what the official worker uses)."""
        rec = self.record(p.workspace_id, sid)
        if p.kind == "environment_key" and rec.doc.get("environment_id") != p.environment_id:
            raise NotFound(f"session {sid!r} not found")
        if p.kind == "work":
            if p.session_id != sid:
                raise NotFound(f"session {sid!r} not found")
            work = self.svc.resources.get("work", p.workspace_id, str(p.work_id))
            if work is None or work.doc.get("state") == "stopped":
                raise AuthenticationFailed(f"work token expired: work {p.work_id!r} has stopped")
        return rec

    # -- sessions -------------------------------------------------------------------------------------------

    def _resolve_agent(self, ws: str, ref: str | AgentRefParams | AgentWithOverridesParams) -> JsonObject:
        if isinstance(ref, str):
            agent_id, version = ref, None
        else:
            agent_id, version = ref.id, ref.version
        doc = self.agents.snapshot(ws, agent_id, version)
        if doc.get("archived_at"):
            raise InvalidRequest(f"agent: agent {agent_id!r} is archived and cannot start sessions")
        if isinstance(ref, AgentWithOverridesParams):
            fields = ref.model_fields_set
            if "model" in fields and ref.model is not None:
                doc["model"], doc["_explicit_effort"] = resolve_model(ref.model)
            if "system" in fields:
                doc["system"] = ref.system
            if "skills" in fields:
                doc["skills"] = skill_refs(self.svc, ws, ref.skills or [])
            if "tools" in fields or "mcp_servers" in fields:
                parsed = AgentCreateParams.model_validate(
                    {"name": "x", "model": "x", "tools": doc["tools"], "mcp_servers": doc["mcp_servers"]}
                )
                tools = ref.tools if "tools" in fields and ref.tools is not None else parsed.tools
                servers = (
                    ref.mcp_servers if "mcp_servers" in fields and ref.mcp_servers is not None else parsed.mcp_servers
                )
                check_tools(list(tools), list(servers))
                doc["tools"] = resolve_tools(list(tools))
                doc["mcp_servers"] = [_dump(s) for s in servers]
        return doc

    def _pinned_skills(self, ws: str, agent: JsonObject) -> JsonObject:
        """A roster member's definition with its skills pinned as the session's own are (`latest` -> the version)."""
        return {**agent, "skills": resolve_skill_refs(self.svc.resources, ws, as_list(agent.get("skills")))}

    def check_create(self, ws: str, params: SessionCreateParams) -> CreatePlan:
        """Every check a session create makes before it stores anything, and what it would store (deployments
        validate their session template with it, services/deployments.py)."""
        if params.resources and self.session_resources is None:
            raise InvalidRequest("resources: session resources are not served by this deployment (no blob store)")
        agent = self._resolve_agent(ws, params.agent)
        agent["skills"] = resolve_skill_refs(self.svc.resources, ws, as_list(agent.get("skills")))  # pinned
        session_agent: JsonObject = {
            **{k: agent.get(k) for k in SESSION_AGENT_FIELDS},
            "multiagent": session_multiagent(
                cast(JsonObject | None, agent.get("multiagent")),
                agent,
                lambda agent_id, version: self._pinned_skills(ws, self.agents.snapshot(ws, agent_id, version)),
            ),
        }
        budget = budgets.on_create(session_agent, params.budget)
        if self.vaults is not None:
            self.vaults.check_vault_ids(ws, list(params.vault_ids))
        env = self.environments.record(ws, params.environment_id)
        if env.archived:
            raise InvalidRequest(
                f"environment_id: environment {params.environment_id!r} is archived", error_code="environment_archived"
            )
        resources: list[JsonObject] = []
        tokens: dict[str, str] = {}
        if params.resources and self.session_resources is not None:
            resources, tokens = self.session_resources.prepare(ws, list(params.resources))
        return CreatePlan(agent, session_agent, budget, env, resources, tokens)

    def create(
        self, ws: str, params: SessionCreateParams, *, deployment_id: str | None = None, session_id: str | None = None
    ) -> JsonObject:
        """`deployment_id`: the deployment that fires it; `session_id`: a fixed id (a deployment run's, so two fires
        of one tick cannot both create a session: the second insert is a Conflict)."""
        agent, session_agent, budget, env, resources, tokens = self.check_create(ws, params)
        now = self.svc.clock.now()
        sid = session_id or new_id("session")
        doc: JsonObject = {
            "id": sid,
            "type": "session",
            "status": "idle",
            "agent": session_agent,
            "environment_id": params.environment_id,
            "title": params.title,
            "metadata": check_metadata(dict(params.metadata)),
            "resources": resources,
            "_skills": skill_summaries(self.svc.resources, ws, as_list(agent.get("skills"))),  # the system prompt's
            "vault_ids": list(params.vault_ids),
            "deployment_id": deployment_id,
            "budget": budget,
            "_budget_created": budget is not None,
            "outcome_evaluations": [],
            "usage": _usage_zero(),
            "created_at": rfc3339(now),
            "updated_at": rfc3339(now),
            "archived_at": None,
            "_environment_type": cast(JsonObject, env.doc["config"])["type"],
            "_effort": agent.get("_explicit_effort"),
            **({RESOURCE_TOKENS: tokens} if tokens else {}),
        }
        attrs: dict[str, str | int | None] = {
            "status": "idle",
            "agent_id": str(agent["id"]),
            "agent_version": int(cast(int, agent["version"])),
            "environment_id": params.environment_id,
        }
        if deployment_id is not None:
            attrs["deployment_id"] = deployment_id
        rec = Record("session", ws, sid, doc, now, attrs=attrs)
        if not params.initial_events:
            index_session(self.svc.resources, rec)
            self.svc.insert(rec, "created")
        else:
            # A create that fails sends no webhook (and a successful one exactly session.created): the initial events
            # are checked before anything is stored, and session.created is recorded in the append's transaction
            # (SQLite: an outbox row; DynamoDB: a webhook item in the events table, whose stream is the outbox), so a
            # failed or cut-off append leaves no event of a session that never was.
            initial: list[EventParams] = list(params.initial_events)
            checked = self._initial_batch(rec, initial)
            created: list[OutboxEntry] = []
            if _records_outbox(self.events):
                created = self.svc.events(ws, "session.created", sid)
            index_session(self.svc.resources, rec)
            if created:
                self.svc.resources.insert(rec)
            else:
                self.svc.insert(rec, "created")
            try:
                self._append_batch(rec, SessionState(), initial, checked, outbox=created)
            except DuplicateEvent:
                pass  # a completion of this create (`complete_create`) logged them meanwhile, with the same ids
            except Exception:
                if self.events.last_seq(sid) == 0:  # the create failed as a whole: no half-made session is left
                    if created:
                        self.svc.resources.delete("session", ws, sid)  # (no receiver heard of it)
                    else:
                        self.svc.delete(rec)  # (session.deleted follows the session.created a receiver got)
                raise
            rec = self.record(ws, sid)
        for hook in self.created_hooks:
            try:
                hook(sid)
            except Exception:  # the session exists; what a hook prepares is prepared again when needed
                log.exception("a session create hook failed", extra={"session_id": sid})
        return self.render(rec)

    def _initial_batch(self, rec: Record, initial: list[EventParams]) -> tuple[list[NewEvent], dict[str, str]]:
        """The initial events as logged, with ids derived from the session id (`initial_event_ids`), so that a
        create and its completion (`complete_create`) cannot both log them."""
        batch, routed = self._user_batch(rec, SessionState(), initial, None)
        ids = initial_event_ids(rec.id, len(batch))
        return [NewEvent(i, e.type, e.payload, e.internal) for i, e in zip(ids, batch, strict=True)], routed

    def complete_create(self, ws: str, params: SessionCreateParams, sid: str) -> JsonObject:
        """Make sure a session created with a fixed id (a deployment run's) has its initial events, once: a create
        cut off between the session's insert and the append of its initial events (a crash, a Lambda timeout) left
        the session with none and no `session.created` webhook; they are appended now, with it, and the session is
        woken. Their ids are the create's own (derived from the session id), so a completion racing the create, or
        another completion, logs nothing twice: the second append is a DuplicateEvent. Conflict when the session
        has other events but not its initial ones (someone wrote to it meanwhile): they are not added after those."""
        rec = self.record(ws, sid)
        initial: list[EventParams] = list(params.initial_events)
        if not initial or self.events.get(sid, initial_event_ids(sid, 1)[0]) is not None:
            return self.render(rec)  # nothing to log, or logged (by the create or an earlier completion)
        if self.events.last_seq(sid) > 0:
            raise Conflict(
                f"session {sid!r} was created without its initial events, and other events were logged to it since"
            )
        checked = self._initial_batch(rec, initial)
        # (a store without an atomic outbox recorded session.created with the session's insert)
        created = self.svc.events(ws, "session.created", sid) if _records_outbox(self.events) else []
        try:
            self._append_batch(rec, SessionState(), initial, checked, outbox=created)
        except DuplicateEvent:
            return self.get(ws, sid)  # another completion (or the create) logged them meanwhile
        log.warning("a session create cut off before its initial events was completed", extra={"session_id": sid})
        for hook in self.created_hooks:
            try:
                hook(sid)
            except Exception:
                log.exception("a session create hook failed", extra={"session_id": sid})
        return self.get(ws, sid)

    def render(self, rec: Record) -> JsonObject:
        """The session with its child threads' usage (one lookup, for a session that started threads only)."""
        return render_session(rec.doc, self.svc.clock.now(), budgets.children_spend(self.svc.resources, rec))

    def record(self, ws: str, sid: str) -> Record:
        rec = self.svc.resources.get("session", ws, sid)
        if rec is None or rec.doc.get("_deleted"):
            raise NotFound(f"session {sid!r} not found")
        return rec

    def get(self, ws: str, sid: str) -> JsonObject:
        return self.render(self.record(ws, sid))

    def list_sessions(
        self, ws: str, query: ListQuery, *, memory_store_id: str | None = None
    ) -> tuple[list[JsonObject], str | None, str | None]:
        if memory_store_id is not None:
            page = sessions_of_store(self.svc.resources, ws, memory_store_id, query)
        else:
            page = list_page(self.svc.resources, "session", ws, query)
        return [self.render(r) for r in page.rows], page.next_page, page.prev_page

    def update(self, ws: str, sid: str, params: SessionUpdateParams) -> JsonObject:
        fields = params.model_fields_set
        rec = self.record(ws, sid)
        if "vault_ids" in fields:
            raise InvalidRequest("vault_ids: cannot be changed after a session is created")
        changed: JsonObject = {}
        if "budget" in fields:
            spent = budgets.consumed_total(self.svc.resources, rec)
            changed["budget"] = budgets.on_update(rec.doc, params.budget, spent)
        if "agent" in fields and params.agent is not None:
            if rec.doc["status"] in ACTIVE:
                raise Conflict(f"agent: session {sid!r} is running; update its agent when it is idle")
            agent = dict(cast(JsonObject, rec.doc["agent"]))
            parsed = AgentCreateParams.model_validate(
                {"name": "x", "model": "x", "tools": agent["tools"], "mcp_servers": agent["mcp_servers"]}
            )
            af = params.agent.model_fields_set
            tools = params.agent.tools if "tools" in af and params.agent.tools is not None else parsed.tools
            servers = (
                params.agent.mcp_servers
                if "mcp_servers" in af and params.agent.mcp_servers is not None
                else parsed.mcp_servers
            )
            check_tools(list(tools), list(servers))
            agent["tools"] = resolve_tools(list(tools))
            agent["mcp_servers"] = [_dump(s) for s in servers]
            changed["agent"] = agent
        if "title" in fields:
            changed["title"] = params.title
        if "metadata" in fields:
            changed["metadata"] = (
                {}
                if params.metadata is None
                else patch_metadata(cast(dict[str, str], rec.doc["metadata"]), params.metadata)
            )

        def change(r: Record) -> None:
            r.doc.update(changed)
            if "budget" in changed and changed["budget"] is None:
                r.doc["_budget_removed"] = True
            if changed:
                r.doc["updated_at"] = rfc3339(self.svc.clock.now())

        new = mutate(self.svc.resources, rec, change)
        if changed:
            payload = dict(changed)
            ev = NewEvent(new_id("event"), "session.updated", payload)
            self.events.append(sid, [ev])
            if "budget" in changed and self.svc.orchestrator is not None:
                self.svc.orchestrator.wake(sid)  # a session stopped at its budget resumes once it is raised
                if new.doc.get("_has_threads"):  # and so do its child threads stopped there (harness/budget.py)
                    for child in budgets.child_records(self.svc.resources, ws, sid):
                        if child.doc.get("status") == "idle" and child.doc.get("_stop") == "budget_reached":
                            self.svc.orchestrator.wake(child.id)
        return self.render(new)

    def archive(self, ws: str, sid: str) -> JsonObject:
        rec = self.record(ws, sid)
        # The sandbox stops first: when it cannot, the request fails retryably (503) with nothing changed.
        if self.work is not None:
            self.work.stop_sandbox(sid)
        recorded: list[OutboxEntry] = []
        events = self.svc.change_events("session", archiving, recorded)
        rec = archive_record(self.svc.resources, self.svc.clock, rec, events=events)
        self.svc.recorded(recorded)
        if self.work is not None:
            self.work.end_session(sid)
        for hook in self.ended_hooks:
            hook(sid)
        return self.render(rec)

    def delete(self, ws: str, sid: str) -> JsonObject:
        """Stop the sandbox (a failure changes nothing: 503, retry), then mark the session deleted and remove its
        work, events and record. Every step after the mark is idempotent and a marked session is still deletable,
        so a delete cut off half-way (a crash, a timeout) is finished by the retry instead of leaving its log."""
        rec = self.svc.resources.get("session", ws, sid)
        if rec is None:
            raise NotFound(f"session {sid!r} not found")
        if not rec.doc.get("_deleted") and rec.doc["status"] in ACTIVE:
            raise Conflict(
                f"session {sid!r} is {rec.doc['status']}; send user.interrupt and wait for idle before deleting it"
            )
        if self.work is not None:
            self.work.stop_sandbox(sid)

        def change(r: Record) -> None:
            r.doc["_deleted"] = True

        if not rec.doc.get("_deleted"):  # the mark is the delete's point of no return: session.deleted goes with it
            recorded: list[OutboxEntry] = []
            marking = self.svc.change_events("session", _marking_deleted, recorded)
            mutate(self.svc.resources, rec, change, events=marking)
            self.svc.recorded(recorded)
        if self.svc.orchestrator is not None:
            self.svc.orchestrator.forget(sid)
        if self.work is not None:
            self.work.end_session(sid, dispose=True)
        for hook in self.ended_hooks:
            hook(sid)
        self.notifier.publish_deleted(sid)
        for child in budgets.child_records(self.svc.resources, ws, sid):  # each child thread's log goes with it
            if self.svc.orchestrator is not None:
                self.svc.orchestrator.forget(child.id)
            self.notifier.publish_deleted(child.id)
            self.events.delete_session(child.id)
            self.svc.resources.delete(THREAD_KIND, ws, child.id)
        self.events.delete_session(sid)
        self.svc.resources.delete("session", ws, sid)
        return {"id": sid, "type": "session_deleted"}

    def deleted_event(self, sid: str) -> JsonObject:
        return {
            "id": deterministic_event_id(sid, "deleted"),
            "type": "session.deleted",
            "processed_at": rfc3339(self.svc.clock.now()),
        }

    # -- events ---------------------------------------------------------------------------------------------

    def state(self, sid: str) -> SessionState:
        return fold(iter_all(self.events, sid))

    def _log_end(self, sid: str) -> SessionState:
        """A state that knows only where the log ends (enough for events checked against nothing logged)."""
        st = SessionState()
        st.last_seq = self.events.last_seq(sid)
        return st

    def send(self, p: Principal, sid: str, events: Sequence[EventParams], *, retried: bool = False) -> list[JsonObject]:
        """Check and append the events. `retried`: the client says this is a retry of a request whose response it
        did not get (the SDK's `x-stainless-retry-count` >= 1): if the send was logged, its events are returned
        again instead of being appended twice (see `_logged_send`)."""
        rec = self.check_access(p, sid)
        if p.kind != "api_key":
            for i, ev in enumerate(events):
                if not isinstance(ev, UserToolResultParams | UserCustomToolResultParams):
                    raise PermissionDenied(
                        f"events[{i}]: {p.describe()} may only post user.tool_result and user.custom_tool_result"
                    )
        digest = _send_digest(events)
        if retried:
            logged = self._logged_send(sid, p, digest)
            if logged:
                if rec.doc["status"] in ACTIVE and self.svc.orchestrator is not None:
                    # the first attempt may have failed after its append: run it, and stop the run it interrupted
                    answered = {e.id: str(t) for e in logged if e.type != "user.interrupt" and (t := _thread_of(e))}
                    self._after_append(rec, logged, answered)
                return _echo(logged, events)
        if rec.archived:
            raise InvalidRequest(f"session {sid!r} is archived and accepts no new events")
        if rec.doc["status"] == "terminated":
            raise Conflict(f"session {sid!r} is terminated and accepts no new events")
        # the folded log only for the events checked against it (a tool result, a confirmation, an outcome): a plain
        # user.message needs only where the log ends
        if not any(isinstance(e, STATEFUL_PARAMS) for e in events):
            stored = self._append_user_events(rec, self._log_end(sid), list(events), p, digest)
        elif self.states is None:
            stored = self._append_user_events(rec, self.state(sid), list(events), p, digest)
        else:
            # The send only reads the state: it goes back as it was taken, a fold of a prefix of the log (taking it
            # again reads what follows), whatever the append did. Taken, it is this send's alone.
            st = self.states.take(self.events, sid)
            try:
                stored = self._append_user_events(rec, st, list(events), p, digest)
            finally:
                self.states.put(sid, st)
        return _echo(stored, events)

    def _file_rubric(self, ws: str, file_id: str, where: str) -> str:
        """A file rubric's text (UTF-8, at most the text rubric's 262,144 characters)."""
        if self.files is None:
            raise InvalidRequest(f"{where}.rubric: file rubrics need the Files API, which this deployment has not")
        _, chunks = self.files.content(ws, file_id)
        data = b"".join(chunks)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{where}.rubric.file_id: file {file_id!r} is not UTF-8 text") from exc
        if len(text) > MAX_RUBRIC_CHARS:
            raise InvalidRequest(
                f"{where}.rubric.file_id: file {file_id!r} is longer than {MAX_RUBRIC_CHARS} characters"
            )
        return text

    def _logged_send(self, sid: str, p: Principal, digest: str) -> list[StoredEvent]:
        """The events a send of this credential logged within RETRY_WINDOW, if its latest send was this one.

        Each event of a send carries (in `internal`, never on the wire) the credential's key id, a hash of the sent
        events and the id of the batch's first event. A retry matches only the *latest* send of the same
        credential: an earlier identical send followed by another one is not mistaken for it. The look-back is
        bounded (the window, and at most RETRY_SCAN client events)."""
        since = self.svc.clock.now() - RETRY_WINDOW
        recent = self.events.read(
            sid, order="desc", limit=RETRY_SCAN, types=CLIENT_EVENT_TYPES, processed=TimeRange(gte=since)
        )
        for ev in recent:
            sent = cast(JsonObject, (ev.internal or {}).get("sent") or {})
            if sent.get("by") != p.key_id:
                continue
            if sent.get("hash") != digest:
                return []
            batch = sent.get("batch")
            same = [e for e in recent if cast(JsonObject, (e.internal or {}).get("sent") or {}).get("batch") == batch]
            return sorted(same, key=lambda e: e.seq)
        return []

    def _append_user_events(
        self,
        rec: Record,
        st: SessionState,
        events: list[EventParams],
        p: Principal | None,
        digest: str | None = None,
    ) -> list[StoredEvent]:
        return self._append_batch(rec, st, events, self._user_batch(rec, st, events, p, digest))

    def _user_batch(
        self,
        rec: Record,
        st: SessionState,
        events: list[EventParams],
        p: Principal | None,
        digest: str | None = None,
    ) -> tuple[list[NewEvent], dict[str, str]]:
        """Check the events against the session's state and build what is logged (nothing is written), with the
        child threads' calls they answer (call id -> thread id)."""
        sid = rec.id
        answered: set[str] = set()
        routed: dict[str, str] = {}
        batch: list[NewEvent] = []
        for i, ev in enumerate(events):
            where = f"events[{i}]"
            if isinstance(ev, UserToolResultParams) and (p is None or p.kind != "work"):
                raise PermissionDenied(
                    f"{where}: user.tool_result is posted by the session's sandbox worker with its work token"
                    f" (the sessions_token of its work item), not with {p.describe() if p else 'initial_events'}"
                )
            self._check_event(rec, st, ev, where, answered, i == len(events) - 1, events[i - 1] if i else None, routed)
            payload = _dump(ev)
            payload.pop("type")
            logged: str = ev.type
            internal: JsonObject | None = None
            ref = getattr(ev, "tool_use_id", None) or getattr(ev, "custom_tool_use_id", None)
            if isinstance(ev, UserInterruptParams) and ev.session_thread_id not in (None, primary_thread_id(sid)):
                internal = {"thread": ev.session_thread_id}  # one child's: not the session's own interrupt
            event_id = new_id("event")
            if ref in routed:  # answers a child thread's call: the child copies it from here (harness/threads.py)
                payload["session_thread_id"] = routed[ref]
                internal = {"thread": routed[ref]}
                event_id = answer_id(sid, str(ref), ev.type)
                if self.events.get(sid, event_id) is not None:
                    raise InvalidRequest(f"{where}: the call {ref!r} of thread {routed[ref]!r} was answered already")
            if isinstance(ev, UserToolResultParams):  # the worker's result: the agent's on a cloud environment
                logged = builtin_tool_result_type(rec.doc.get("_environment_type"))
            if isinstance(ev, UserDefineOutcomeParams):
                payload["outcome_id"] = new_id("outcome")
                payload["max_iterations"] = ev.max_iterations or DEFAULT_MAX_ITERATIONS
                if isinstance(ev.rubric, FileRubric):  # resolved to its text once, when the outcome is defined
                    internal = {"rubric_text": self._file_rubric(rec.workspace_id, ev.rubric.file_id, where)}
            batch.append(NewEvent(event_id, logged, payload, internal))
        if p is not None and digest is not None:  # what a retry of this send recognises it by (_logged_send)
            sent: JsonObject = {"by": p.key_id, "hash": digest, "batch": batch[0].id}
            batch = [NewEvent(e.id, e.type, e.payload, {**(e.internal or {}), "sent": sent}) for e in batch]
        return batch, routed

    def _append_batch(
        self,
        rec: Record,
        st: SessionState,
        events: list[EventParams],
        checked: tuple[list[NewEvent], dict[str, str]],
        *,
        outbox: Sequence[OutboxEntry] = (),
    ) -> list[StoredEvent]:
        """Append what `_user_batch` checked, marking the session running with it. `outbox`: resource webhook events
        the append records in its transaction (only with a store that can: `_records_outbox`)."""
        sid = rec.id
        batch, routed = checked
        marked = rec.doc["status"] not in ACTIVE

        def mark(r: Record) -> None:
            if r.doc.get("status") not in ACTIVE:
                r.doc["status"] = "running"
                r.attrs["status"] = "running"

        sync: RecordSync | None = None
        if marked and getattr(self.events, "atomic_record_sync", False):
            # (a store that patches in place sets the status alone, unless the record is active by then, as `mark`)
            sync = RecordSync(
                rec.kind,
                rec.workspace_id,
                rec.id,
                lambda r, _stored: mark(r),
                fields=lambda _stored: ({"status": "running"}, {"status": "running"}),
                unless=("status", ACTIVE),
                outbox=list(outbox),
            )
            marked = False  # nothing is marked unless the events are logged with it
        elif marked:
            rec = mutate(self.svc.resources, rec, mark)
        if sync is None and outbox:  # (a store of `atomic_outbox`: the record was marked above, the outbox rides along)
            sync = RecordSync(rec.kind, rec.workspace_id, rec.id, lambda _r, _stored: None, outbox=list(outbox))
        try:
            stored = self.events.append(sid, batch, sync=sync)
        except Exception:
            self._after_failed_append(rec, st.last_seq, marked)
            raise
        if sync is not None:
            self.svc.recorded(sync.outbox)
        self._after_append(rec, stored, routed)
        if self.work is not None and any(isinstance(e, UserMessageParams) for e in events):
            # inference never waits for the sandbox: hands are provisioned while the first turn runs
            self.work.ensure_for_session(sid, session=rec)
        return stored

    def _after_append(self, rec: Record, stored: list[StoredEvent], routed: dict[str, str]) -> None:
        """Run what a send logged: an interrupt stops the session's run (and its children's) and wakes a fresh one,
        anything else wakes it; the child threads answered are woken too. Also what an SDK retry of a send does when
        its first attempt logged the events and failed before this (each step is idempotent)."""
        orch = self.svc.orchestrator
        if orch is None:
            return
        interrupts = [e for e in stored if e.type == "user.interrupt"]
        if interrupts:
            self._interrupt_threads(rec, interrupts)
        if any(not _thread_of(e) for e in interrupts):
            orch.interrupt(rec.id)
        else:
            orch.wake(rec.id)
        for tid in sorted(set(routed.values())):  # the children answered copy their answers when advanced
            orch.wake(tid)

    def _after_failed_append(self, rec: Record, seen_seq: int, marked: bool) -> None:
        """An append failed after the session was marked running: never leave it `running` with nothing to run.

        If the log did not move since the events were checked, nothing was written: the mark is undone. If it did
        (an append that failed ambiguously, e.g. a timeout after the write, or another writer), the orchestrator is
        woken to run whatever is there (a wake is idempotent; a run with nothing to do parks the session idle)."""
        try:
            if self.events.last_seq(rec.id) > seen_seq:
                if self.svc.orchestrator is not None:
                    self.svc.orchestrator.wake(rec.id)
            elif marked:

                def unmark(r: Record) -> None:
                    if r.doc.get("status") == "running":
                        r.doc["status"] = "idle"
                        r.attrs["status"] = "idle"

                mutate(self.svc.resources, rec, unmark)
        except Exception:  # the caller reports the append's failure; this one only goes to the log
            log.exception("session %s: could not settle its status after a failed append", rec.id)

    def _check_file_source(self, ws: str, file_id: str, where: str) -> None:
        """A block's file must be a live file of the workspace (harness/file_blocks.py inlines it per request)."""
        files = self.session_resources.files if self.session_resources is not None else None
        if files is None:
            raise InvalidRequest(f"{where}: file sources need the Files API, which this deployment does not have")
        try:
            files.record(ws, file_id)
        except NotFound as exc:
            raise InvalidRequest(f"{where}.file_id: {exc.message}", error_code=exc.error_code) from exc

    def _check_event(
        self,
        rec: Record,
        st: SessionState,
        ev: EventParams,
        where: str,
        answered: set[str],
        last: bool,
        previous: EventParams | None,
        routed: dict[str, str] | None = None,
    ) -> None:
        """`routed` collects the calls of child threads the events answer (call id -> thread id)."""
        if isinstance(ev, UserMessageParams):
            for j, block in enumerate(ev.content):
                source = getattr(block, "source", None)
                if source is not None and getattr(source, "type", None) == "file":
                    self._check_file_source(rec.workspace_id, str(source.file_id), f"{where}.content[{j}].source")
            return
        if isinstance(ev, UserInterruptParams):
            tid = ev.session_thread_id
            if tid is not None and tid != primary_thread_id(rec.id):
                child = self.svc.resources.get(THREAD_KIND, rec.workspace_id, tid)
                if child is None or child.doc.get("session_id") != rec.id:
                    raise InvalidRequest(f"{where}.session_thread_id: session has no thread {tid!r}")
                if child.doc.get("archived_at"):
                    raise InvalidRequest(f"{where}.session_thread_id: thread {tid!r} is archived")
            return
        if isinstance(ev, UserDefineOutcomeParams):
            active = st.active_outcome
            if active is not None:
                raise InvalidRequest(
                    f"{where}: outcome {active.outcome_id!r} is still being worked on; define the next outcome when"
                    " it has reached a result"
                )
            if OUTCOME_MARK in answered:
                raise InvalidRequest(f"{where}: one request defines at most one outcome")
            answered.add(OUTCOME_MARK)
            return
        if isinstance(ev, SystemMessageParams):
            ok_prev = (UserMessageParams, UserToolResultParams, UserCustomToolResultParams)
            if not last or not isinstance(previous, ok_prev):
                raise InvalidRequest(
                    f"{where}: system.message must be the last event and directly follow the user.message,"
                    " user.tool_result or user.custom_tool_result it accompanies"
                )
            return
        if isinstance(ev, UserToolConfirmationParams):
            call = st.call(ev.tool_use_id) or self._thread_call(st, ev.tool_use_id, routed)
            if call is None or call.kind == "custom":
                raise InvalidRequest(
                    f"{where}.tool_use_id: {ev.tool_use_id!r} is not an agent.tool_use or agent.mcp_tool_use"
                    " event awaiting confirmation in this session"
                )
            if call.permission != "ask" or call.confirmation is not None or ev.tool_use_id in answered:
                raise InvalidRequest(f"{where}.tool_use_id: tool call {ev.tool_use_id!r} is not awaiting confirmation")
            if ev.deny_message is not None and ev.result != "deny":
                raise InvalidRequest(f"{where}.deny_message: only allowed when result is 'deny'")
            answered.add(ev.tool_use_id)
            return
        if isinstance(ev, UserCustomToolResultParams):
            call = st.call(ev.custom_tool_use_id) or self._thread_call(st, ev.custom_tool_use_id, routed)
            if call is None or call.kind != "custom":
                raise InvalidRequest(
                    f"{where}.custom_tool_use_id: {ev.custom_tool_use_id!r} is not an agent.custom_tool_use event"
                    " of this session awaiting a result"
                )
            if call.resolved or ev.custom_tool_use_id in answered:
                raise InvalidRequest(f"{where}.custom_tool_use_id: {ev.custom_tool_use_id!r} already has a result")
            answered.add(ev.custom_tool_use_id)
            return
        if isinstance(ev, UserToolResultParams):
            call = st.call(ev.tool_use_id) or self._thread_call(st, ev.tool_use_id, routed)
            if call is None or call.kind != "builtin":
                raise InvalidRequest(
                    f"{where}.tool_use_id: {ev.tool_use_id!r} is not an agent.tool_use event of this session"
                )
            if call.resolved or ev.tool_use_id in answered:
                raise InvalidRequest(f"{where}.tool_use_id: {ev.tool_use_id!r} already has a result")
            if call.permission == "ask" and call.confirmation != "allow":
                raise InvalidRequest(f"{where}.tool_use_id: {ev.tool_use_id!r} has not been confirmed")
            answered.add(ev.tool_use_id)
            return

    def _interrupt_threads(self, rec: Record, interrupts: list[StoredEvent]) -> None:
        """An interrupt of one child thread goes to its log; the session's own goes to every running child too (each
        copy keeps the interrupt's id: a re-run copies nothing twice)."""
        orch = self.svc.orchestrator
        query = ListQuery(limit=1000, order="asc", include_archived=True, equals={"session_id": rec.id})
        children, _ = self.svc.resources.list_records(THREAD_KIND, rec.workspace_id, query)
        for ev in interrupts:
            target = (ev.internal or {}).get("thread")
            for child in children:
                if child.id != target and (target is not None or child.doc.get("status") not in ACTIVE):
                    continue
                try:
                    self.events.append(child.id, [NewEvent(ev.id, ev.type, ev.payload, None)])
                except DuplicateEvent:
                    pass
                if orch is not None:
                    orch.interrupt(child.id)

    def _thread_call(self, st: SessionState, call_id: str, routed: dict[str, str] | None) -> ToolCall | None:
        """A child thread's call, cross-posted to the session's log, as the child's own log has it now."""
        request = st.thread_requests.get(call_id)
        if request is None:
            return None
        call = fold(iter_all(self.events, request[0])).call(call_id)
        if call is not None and routed is not None:
            routed[call_id] = request[0]
        return call

    def list_events(
        self,
        p: Principal,
        sid: str,
        *,
        limit: int,
        order: Order,
        page: str | None,
        types: list[str],
        processed: TimeRange,
    ) -> tuple[list[str], str | None]:
        """One page of events as wire JSON texts (spliced from the store where it can) and the next cursor."""
        self.check_access(p, sid)
        for t in types:
            if t not in EVENT_TYPES:
                raise InvalidRequest(f"types: {t!r} is not an event type")
        cursor = decode_seq_cursor(page, order)
        kwargs: dict[str, object] = {}
        if order == "asc":
            kwargs["after_seq"] = cursor or 0
        elif cursor is not None:
            kwargs["before_seq"] = cursor
        rows = read_wire(
            self.events,
            sid,
            limit=limit + 1,
            order=order,
            types=types or None,
            processed=None if processed.is_empty() else processed,
            **kwargs,  # type: ignore[arg-type]
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [text for _, text in rows], (encode_seq_cursor(rows[-1][0], order) if more and rows else None)


def _marking_deleted(before: Record, after: Record) -> str | None:
    """A delete's mark causes `session.deleted` (once: a retried delete finds the mark)."""
    return "deleted" if after.doc.get("_deleted") and not before.doc.get("_deleted") else None


def _thread_of(ev: StoredEvent) -> object:
    """The child thread a logged client event is for (an answer to its call, its own interrupt); None: the session's."""
    return (ev.internal or {}).get("thread")
