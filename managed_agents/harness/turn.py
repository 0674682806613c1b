"""The harness: `advance(session_id)` does the next thing a session needs, at most one model request.

Stateless between calls: every call folds the log, decides (step.py), performs the action and appends the
result. Every batch gets deterministic event ids derived from the log position or the request number, and
appends are conditional, so a call re-run after a crash (or run twice) writes nothing twice
(architecture: "a turn must be safe to re-run").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol, cast

from managed_agents.domain import prices
from managed_agents.domain.clock import Clock, parse_rfc3339, rfc3339
from managed_agents.domain.errors import DuplicateEvent, LogMoved
from managed_agents.domain.events import (
    STATUS_BY_EVENT,
    THREAD_STATUS_BY_EVENT,
    JsonObject,
    NewEvent,
    StoredEvent,
    builtin_tool_result_type,
)
from managed_agents.domain.ids import deterministic_event_id
from managed_agents.domain.session_state import SessionState, ToolCall, fold
from managed_agents.domain.threads import KIND as THREAD_KIND
from managed_agents.domain.threads import child_thread_id
from managed_agents.harness import budget, compaction, outcomes, step, threads, web
from managed_agents.harness.context import build_request, model_id, session_context
from managed_agents.harness.event_batches import Entry, request_end, session_error, tool_error
from managed_agents.harness.file_blocks import FileLoader, inline_file_sources
from managed_agents.harness.state_cache import StateCache
from managed_agents.harness.tools import Toolbox, mcp_servers
from managed_agents.ports import (
    CONNECTION_FAILED,
    Cancelled,
    CancelToken,
    EventNotifier,
    EventStore,
    McpGateway,
    McpProxyError,
    ModelClient,
    ModelError,
    ModelResponse,
    ModelUsage,
    Record,
    RecordFields,
    RecordSync,
    ResourceStore,
    iter_all,
)
from managed_agents.services import budgets
from managed_agents.services.records import mutate
from managed_agents.settings import HarnessSettings

log = logging.getLogger("managed_agents.harness")


@dataclass(frozen=True)
class RunAgain:
    pass


@dataclass(frozen=True)
class RetryAfter:
    seconds: float


@dataclass(frozen=True)
class WaitForTools:
    deadline: datetime
    seen_seq: int = 0  # the end of the log this decision saw: anything logged after it may be a result


@dataclass(frozen=True)
class Parked:
    reason: str


Outcome = RunAgain | RetryAfter | WaitForTools | Parked

# spans after which the session record caches what the log says (status, usage, outcome evaluations)
SYNCED_SPANS = frozenset({"span.model_request_end", "span.outcome_evaluation_start", "span.outcome_evaluation_end"})

ERROR_TYPES = {
    "rate_limited": "model_rate_limited_error",
    "overloaded": "model_overloaded_error",
}


class Hands(Protocol):
    def __call__(self, session_id: str, *, calls: Sequence[str]) -> object: ...


@dataclass
class HarnessDeps:
    events: EventStore
    resources: ResourceStore
    model: ModelClient
    clock: Clock
    settings: HarnessSettings = field(default_factory=HarnessSettings)
    notifier: EventNotifier | None = None
    # asks for hands (a live work item) for a session whose sandbox tool calls (their ids) wait:
    # work.ensure_for_session
    hands: Hands | None = None
    mcp: McpGateway | None = None  # the MCP proxy: lists and calls the tools of the agent's MCP servers
    states: StateCache | None = None  # folded states between steps (None: every step folds the whole log)
    files: FileLoader | None = None  # reads Files API files for image/document blocks (harness/file_blocks.py)
    cloud_memory: bool = True  # cloud sandboxes mount memory stores (False: unisolated embedded ones cannot)
    wake: Callable[[str], object] | None = None  # the orchestrator's wake: a session's child threads, and back
    # around each wait of a step on something outside the process (a model request, an MCP call, a web fetch): the
    # embedded orchestrator gives the step's slot back meanwhile (in_process_orchestrator.py StepSlots)
    waiting: Callable[[], AbstractContextManager[object]] = nullcontext


class _Turn:
    """One `advance` call: the session, its folded state and helpers to append."""

    def __init__(self, deps: HarnessDeps, rec: Record, state: SessionState) -> None:
        self.deps = deps
        self.rec = rec
        self.state = state
        self.in_sequence = True  # every batch this step appended followed the state's last event directly
        # what the turn runs: the session's agent, or a child thread's (the advisor's differs from what it shows)
        self.agent = cast(JsonObject, rec.doc.get("_run_agent") or rec.doc["agent"])
        self.thread = rec.kind == THREAD_KIND  # a child thread of a session (harness/threads.py)
        self.toolbox = Toolbox(self.agent, web_search_available=bool(deps.settings.web_search_url))
        # a child thread spends its session's budget: the session's record as this step began
        self.session_rec = deps.resources.get_by_id("session", self.session_id) if self.thread else rec
        budget_doc = self.session_rec.doc.get("budget") if self.session_rec is not None else None
        self._others: tuple[budgets.Spend | None] | None = None
        self.ledger = budget.Ledger(
            model_id(self.agent),
            cast(JsonObject | None, budget_doc),
            # a child's snapshots are its budgeted session's only: its periodic ones are the session's
            float("inf") if self.thread else deps.settings.usage_event_seconds,
            others=self.others_spend,
        )

    def others_spend(self) -> budgets.Spend | None:
        """What the session's other threads consumed (looked up once per step, when a price or the gate needs it):
        a session's child threads; for a child, its session's own requests and its siblings'."""
        if self._others is None:
            resources, session = self.deps.resources, self.session_rec
            if session is None:
                spend = None
            elif not self.thread:
                spend = budgets.children_spend(resources, session)
            else:
                spend = budgets.children_spend(resources, session, exclude=self.sid) or budgets.Spend()
                spend.add(session.doc)
                active = float(cast(float, session.doc.get("_active_seconds") or 0.0))
                since = session.doc.get("_running_since")
                if since:
                    active += max(0.0, (self.deps.clock.now() - parse_rfc3339(str(since))).total_seconds())
                spend.session_active = active
            self._others = (spend,)
        return self._others[0]

    def load_mcp_tools(self) -> list[Entry]:
        """Offer the agent's MCP tools with the servers' real schemas; a server that cannot be listed is left
        out of this request and reported as a session.error."""
        servers = mcp_servers(self.agent)
        if not servers:
            return []
        listed: dict[str, list[JsonObject]] = {}
        errors: list[Entry] = []
        for server in servers:
            if self.deps.mcp is None:
                message = f"MCP server {server!r} cannot be reached: no MCP proxy is configured in this deployment"
                error = McpProxyError(CONNECTION_FAILED, message, server)
                errors.append(("session.error", {"error": error.session_error()}, None))
                continue
            try:
                with self.deps.waiting():
                    listed[server] = self.deps.mcp.list_tools(self.session_id, server)
            except McpProxyError as exc:
                errors.append(("session.error", {"error": exc.session_error()}, None))
        self.toolbox = Toolbox(
            self.agent, web_search_available=bool(self.deps.settings.web_search_url), mcp_tools=listed
        )
        return errors

    @property
    def sid(self) -> str:
        return self.rec.id

    @property
    def builtin_result(self) -> str:
        """The event type a sandbox call's result is logged as in this session (cloud: the agent's)."""
        return builtin_tool_result_type(self.rec.doc.get("_environment_type"))

    def append(self, key: str, events: Sequence[Entry], *, at_end: bool = False) -> list[StoredEvent]:
        """Log a batch (deterministic ids: a re-run appends nothing) and fold it; when it changes what the session
        record caches, the record is written in the same transaction where the store can (RecordSync).

        `at_end`: only right after the end of the log this step's state folded (a conditional append). When others
        logged events meanwhile, nothing is logged: they are folded into the state and LogMoved is raised. A state
        that skipped events (`in_sequence` false) cannot vouch for the end of the log: LogMoved at once."""
        if at_end and not self.in_sequence:
            raise LogMoved(self.state.last_seq)
        events = budget.price(self.ledger, self.state, events, self.deps.clock.now())
        usage_copies: list[Entry] = []
        if self.thread:
            events = self._as_thread(events)
            usage_copies = [e for e in events if e[0] == "session.usage"]
            events = [e for e in events if e[0] != "session.usage"]
        batch = [
            NewEvent(deterministic_event_id(self.sid, key, i), type_, payload, internal)
            for i, (type_, payload, internal) in enumerate(events)
        ]
        synced = any(
            e.type in STATUS_BY_EVENT or e.type in THREAD_STATUS_BY_EVENT or e.type in SYNCED_SPANS for e in batch
        )
        folded: list[Sequence[StoredEvent]] = []

        def change(r: Record, stored: Sequence[StoredEvent]) -> None:
            self.fold_in(stored)
            folded.append(stored)
            self._cache_state(r)

        patched: list[RecordFields] = []

        def fields(stored: Sequence[StoredEvent]) -> RecordFields:
            self.fold_in(stored)
            folded.append(stored)
            patched.append(self._cached_fields())
            return patched[-1]

        sync = None
        if synced and getattr(self.deps.events, "atomic_record_sync", False):
            sync = RecordSync(self.rec.kind, self.rec.workspace_id, self.rec.id, change, fields=fields)
        try:
            expected = self.state.last_seq if at_end else None
            stored = self.deps.events.append(self.sid, batch, sync=sync, expected_last_seq=expected)
        except DuplicateEvent:
            log.info("batch already in the log", extra={"session_id": self.sid, "key": key})
            stored = []
        except LogMoved:
            self.fold_in(list(iter_all(self.deps.events, self.sid, after_seq=self.state.last_seq)))
            raise
        if stored and not folded:
            self.fold_in(stored)
        if self.thread:
            self._cross_post(batch, key, usage_copies)
        if not stored:
            return []
        if sync is not None and sync.written is not None:
            self.rec = sync.written
        elif sync is not None and sync.patched_rev is not None:
            # this step's copy gets the fields; its revision stays: a later write from it (mutate) re-reads first
            doc, attrs = patched[-1]
            self.rec = replace(self.rec, doc={**self.rec.doc, **doc}, attrs={**self.rec.attrs, **attrs})
        elif synced and stored and sync is None:
            self.sync_record()
        return stored

    def end_turn(self, key: str, events: Sequence[Entry]) -> bool:
        """Log a batch whose last entry is the idle that ends the turn because nothing is left to do, which holds only
        while nothing else is logged: it goes right after the end of the log this step saw (`at_end`). When input
        was logged meanwhile (a user.message sent as the turn ended), the batch is logged without its idle, after
        that input, which the state now holds: the next step runs the turn it asks for, and a client never sees the
        session idle with a message it has not answered.

        True when this call logged the batch with its idle: the state is then the fold of the whole log."""
        assert events and events[-1][0] == "session.status_idle", "end_turn: the batch must end with the idle"
        try:
            return bool(self.append(key, events, at_end=True))
        except LogMoved:
            log.info("input logged as the turn ended: no idle", extra={"session_id": self.sid, "key": key})
        if len(events) > 1:
            self.append(key, events[:-1])
        return False

    def _as_thread(self, events: Sequence[Entry]) -> list[Entry]:
        return threads.as_thread_events(self.sid, self.agent.get("name"), events)

    def _cross_post(self, batch: Sequence[NewEvent], key: str, usage: Sequence[Entry] = ()) -> None:
        """A child's copies of its batch on its session's log (threads.copies), in one write; its `session.usage`
        snapshots (the session's figures: harness/budget.py) go to the session's log only. Every copy this step's
        fold was waiting for is then there (a re-run's copies too: the step began with threads.copy_to_session)."""
        copies: list[NewEvent] = [
            NewEvent(deterministic_event_id(self.session_id, f"u@{self.sid}:{key}", i), type_, payload, internal)
            for i, (type_, payload, internal) in enumerate(usage)
        ]
        copies += threads.copies(self.session_id, self.sid, batch)
        if copies:
            try:
                self.deps.events.append(self.session_id, copies)
            except DuplicateEvent:
                pass
        self.state.uncopied.clear()

    @property
    def session_id(self) -> str:
        """The session this turn's log belongs to (a child thread's session, or the session itself)."""
        return str(self.rec.doc["session_id"]) if self.thread else self.rec.id

    def fold_in(self, stored: Sequence[StoredEvent]) -> None:
        if stored and stored[0].seq != self.state.last_seq + 1:
            self.in_sequence = False  # events appended by others meanwhile are not in this state: do not cache it
        fold(stored, self.state)

    def _cache_state(self, r: Record) -> None:
        """Put the log-derived status, usage and stats on a copy of the session record (idempotent)."""
        doc, attrs = self._cached_fields()
        r.doc.update(doc)
        r.attrs.update(attrs)

    def _cached_fields(self) -> RecordFields:
        """The session record's fields that cache what its log says (status, usage, stats), from the state."""
        st = self.state
        u = st.usage
        usage: JsonObject = {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": u.cache_creation_input_tokens},
            "server_tool_use": budgets.server_tool_use(u),
        }
        tracked = not st.unpriced_requests and prices.price_for(self.ledger.model) is not None
        doc: JsonObject = {
            "status": st.status,
            "usage": usage,
            "_list_cost": str(st.list_cost) if tracked else None,
            "_active_seconds": st.active_seconds,
        }
        if st.startup_seconds is not None and not self.thread:  # (a child thread starts at once: its figure is 0)
            doc["_startup_seconds"] = st.startup_seconds
        doc["outcome_evaluations"] = [o.render() for o in st.outcomes]
        doc["_running_since"] = rfc3339(st.running_since) if st.running_since else None
        doc["_stop"] = st.last_stop if st.status == "idle" else None  # (a child stopped at its session's budget)
        doc["updated_at"] = rfc3339(self.deps.clock.now())
        return doc, {"status": st.status}

    def sync_record(self) -> None:
        """Cache the log-derived status, usage and stats on the session record, in a write of its own."""
        self.rec = mutate(self.deps.resources, self.rec, self._cache_state)


def advance(session_id: str, deps: HarnessDeps, cancel: CancelToken | None = None) -> Outcome:
    """One step of the session: decide from its folded log, act, log what happened."""
    rec = threads.run_record(deps.resources, session_id)
    if rec is None or rec.doc.get("_deleted"):
        if deps.states is not None:
            deps.states.forget(session_id)
        return Parked("deleted")
    if deps.states is None:
        turn = _Turn(deps, rec, fold(iter_all(deps.events, session_id)))
        return _after_step(turn, _step(turn, cancel))
    turn = _Turn(deps, rec, deps.states.take(deps.events, session_id))
    outcome = _after_step(turn, _step(turn, cancel))
    if turn.in_sequence:
        deps.states.put(session_id, turn.state)
    return outcome


def _after_step(turn: _Turn, outcome: Outcome) -> Outcome:
    """A child thread that stopped sends its answer to its session, which is woken to read it."""
    if turn.thread and isinstance(outcome, Parked) and outcome.reason in ("idle", "terminated"):
        if threads.deliver(turn.deps.events, turn.rec, turn.state, turn.append) and turn.deps.wake is not None:
            turn.deps.wake(turn.session_id)
    return outcome


def _copies(turn: _Turn) -> None:
    """What crosses between a session's logs, made (again) at every step until it is there: a child copies the
    answers its session got for its calls; a session copies its interrupts of one child into that child's log."""
    deps, st = turn.deps, turn.state
    if turn.thread:
        # first the copies of its own events a crash may have cut off (a call the user must answer, a stop at the
        # budget): the session learns of them when woken
        if threads.copy_to_session(deps.events, turn.session_id, turn.sid, st) and deps.wake is not None:
            deps.wake(turn.session_id)
        turn.fold_in(threads.pull_answers(deps.events, turn.session_id, turn.sid, st))
        return
    for tid, interrupt in list(st.thread_interrupts.items()):
        threads.copy_interrupt(deps.events, tid, interrupt)
        if deps.wake is not None:
            deps.wake(tid)


def _wake_children(turn: _Turn) -> None:
    """A session waiting on its children wakes them: after a restart (which wakes running sessions only) each runs on,
    pulls the answers it waits on or delivers its own. A child wakes its session only when something new happened
    (an answer, a stop that needs the user or the budget), so this never loops."""
    if turn.deps.wake is None or turn.thread:
        return
    for call in turn.state.unresolved:
        if call.kind == "thread" and call.started:
            turn.deps.wake(child_thread_id(turn.sid, call.event_id))


def _step(turn: _Turn, cancel: CancelToken | None) -> Outcome:
    deps = turn.deps
    _copies(turn)
    st = turn.state
    if turn.thread and st.replied:  # (woken after its failure was reported with input still unsent: harness/failures)
        return Parked("replied")
    tool_timeout = timedelta(seconds=deps.settings.tool_timeout_seconds)
    action = step.decide(st, now=deps.clock.now(), tool_timeout=tool_timeout)

    if isinstance(action, step.Park):
        return _park(turn, action)
    if isinstance(action, step.GoIdle):
        idle: list[Entry] = [("session.status_idle", {"stop_reason": action.stop_reason}, None)]
        if action.stop_reason.get("type") == "end_turn":
            return _settle(turn) if turn.end_turn(f"idle@{st.last_seq}", idle) else RunAgain()
        turn.append(f"idle@{st.last_seq}", idle)
        if turn.thread and deps.wake is not None and action.stop_reason.get("type") == "requires_action":
            deps.wake(turn.session_id)  # the session waits on the user for the child's call (step.decide)
        return RunAgain()
    if isinstance(action, step.WaitForTools):
        if st.status != "running":
            turn.append(f"running@{st.last_seq}", [("session.status_running", {}, None)])
        builtin = [c.event_id for c in st.unresolved if c.kind == "builtin"]
        if deps.hands is not None and builtin:
            deps.hands(turn.session_id, calls=builtin)
        return WaitForTools(action.deadline, st.last_seq)
    if isinstance(action, step.TimeOutTools):
        batch: list[Entry] = []
        for call in action.calls:
            message = (
                f"The {call.name} tool call got no result within {deps.settings.tool_timeout_seconds:g} s: "
                "the sandbox that should run it is unavailable."
            )
            batch.append(tool_error(call.event_id, message, kind=call.kind, builtin_result=turn.builtin_result))
            batch.append(session_error("unknown_error", message, "retrying"))
        turn.append(f"timeout@{st.last_seq}", batch)
        return RunAgain()
    if isinstance(action, step.HandleInterrupt):
        return _handle_interrupt(turn, action)
    if isinstance(action, step.StartThreads):
        return _start_threads(turn, action)
    if isinstance(action, step.WaitForThreads):
        if st.status != "running":  # (back from waiting on the user for a child's call)
            turn.append(f"running@{st.last_seq}", [("session.status_running", {}, None)])
        _wake_children(turn)
        if turn.rec.doc.get("status") != turn.state.status:
            turn.sync_record()
        return Parked("threads")
    if isinstance(action, step.RunPlatformTools):
        return _run_platform_tools(turn, action)
    if isinstance(action, step.Evaluate):
        return outcomes.evaluate(turn, action.rerun, cancel)
    return _run_model(turn, action, cancel)


def _park(turn: _Turn, action: step.Park) -> Outcome:
    if turn.rec.doc.get("status") != turn.state.status:
        turn.sync_record()
    if action.reason in ("requires_action", "budget_reached"):
        _wake_children(turn)
    return Parked(action.reason)


def _settle(turn: _Turn) -> Outcome:
    """After the batch that ended the turn, logged right after the end of the log this step saw (`_Turn.end_turn`):
    the state is the whole log, so what the next step would decide is known here. A park is returned at once: the
    step that only decided it read the session record and the log again, folded and parked (one per turn). Anything
    logged after the idle woke the run (the embedded orchestrator's dirty mark, AWS's pending wake), which then runs
    once more. A child thread parks here too, and `_after_step` sends its answer in this step: what the next step
    would copy between logs first (`_copies`) is there already (its own copies were made with the batch, it waits on
    no answer: the turn ended with no open call, and an interrupt copied into its log meanwhile would have kept the
    idle out), so its coordinator is woken one step sooner."""
    tool_timeout = timedelta(seconds=turn.deps.settings.tool_timeout_seconds)
    action = step.decide(turn.state, now=turn.deps.clock.now(), tool_timeout=tool_timeout)
    return _park(turn, action) if isinstance(action, step.Park) else RunAgain()


def _start_threads(turn: _Turn, action: step.StartThreads) -> Outcome:
    """Create the delegations' child threads, log their creation on the session and wake them."""
    deps = turn.deps
    now = rfc3339(deps.clock.now())
    batch: list[Entry] = []
    started: list[str] = []
    if not turn.rec.doc.get("_has_threads"):  # before any child exists: the session's usage sums its children's
        turn.rec = mutate(deps.resources, turn.rec, _mark_has_threads)
    for call in action.calls:
        tid, created = threads.start(deps.resources, deps.events, turn.rec, call, now)
        if created is None:
            message = f"{call.name!r} is not a delegation this agent may make."
            batch.append(threads.answer(turn.sid, call, message))
            continue
        batch.append(("session.thread_created", created, {"call": call.event_id}))
        started.append(tid)
    turn.append(f"threads@{action.calls[0].event_id}", batch)
    if deps.wake is not None:
        for tid in started:
            deps.wake(tid)
    if not turn.in_sequence or turn.state.status != "running":
        return RunAgain()
    # the step after would find every call's thread running and park (step.WaitForThreads) after waking them again,
    # which costs each running child one more step when it parks: park here (anything logged meanwhile woke the run,
    # which goes round once more: the orchestrator's dirty mark, AWS's finish_run)
    tool_timeout = timedelta(seconds=deps.settings.tool_timeout_seconds)
    if not isinstance(step.decide(turn.state, now=deps.clock.now(), tool_timeout=tool_timeout), step.WaitForThreads):
        return RunAgain()
    if turn.rec.doc.get("status") != turn.state.status:
        turn.sync_record()
    return Parked("threads")


def _mark_has_threads(r: Record) -> None:
    r.doc["_has_threads"] = True


def _run_web_tool(turn: _Turn, call: ToolCall) -> tuple[list[JsonObject], bool]:
    config = Toolbox.builtin_config(turn.agent, call.name)
    if call.name == "web_search":
        provider = turn.deps.settings.web_search_url
        if not provider:
            return [{"type": "text", "text": "web_search is not available: no search provider is configured."}], True
        with turn.deps.waiting():
            return web.search(provider, str(call.input.get("query", "")), config)
    env = turn.deps.resources.get_by_id("environment", str(turn.rec.doc.get("environment_id")))
    env_config = cast(JsonObject, env.doc.get("config") or {}) if env is not None else {}
    policy = web.FetchPolicy.of(cast(JsonObject | None, env_config.get("networking")), config)
    with turn.deps.waiting():
        return web.fetch(str(call.input.get("url", "")), policy)


def _run_platform_tools(turn: _Turn, action: step.RunPlatformTools) -> Outcome:
    """Run MCP calls through the proxy (the only reader of credentials) and log their results."""
    batch: list[Entry] = []
    for call in action.calls:
        if call.kind == "server":
            content, is_error = _run_web_tool(turn, call)
            batch.append(
                ("agent.tool_result", {"tool_use_id": call.event_id, "content": content, "is_error": is_error}, None)
            )
            continue
        if turn.deps.mcp is None or call.server is None:
            message = f"MCP server {call.server!r} cannot be reached: no MCP proxy is configured in this deployment"
            batch.append(tool_error(call.event_id, message, kind="mcp"))
            continue
        try:
            with turn.deps.waiting():
                result = turn.deps.mcp.call_tool(turn.session_id, call.server, call.name, call.input)
        except McpProxyError as exc:
            batch.append(tool_error(call.event_id, exc.message, kind="mcp"))
            batch.append(("session.error", {"error": exc.session_error()}, None))
            continue
        payload: JsonObject = {"mcp_tool_use_id": call.event_id, "content": result.content, "is_error": result.is_error}
        batch.append(("agent.mcp_tool_result", payload, None))
    turn.append(f"mcp@{action.calls[0].event_id}", batch)
    return RunAgain()


def _handle_interrupt(turn: _Turn, action: step.HandleInterrupt) -> Outcome:
    st = turn.state
    if not turn.thread and st.interrupt_event is not None:  # the session's interrupt reaches its running children
        for call in st.unresolved:  # first: a crash before the session's stop below copies it again on the re-run
            if call.kind == "thread" and call.thread_id is not None:
                threads.copy_interrupt(turn.deps.events, call.thread_id, st.interrupt_event)
                if turn.deps.wake is not None:
                    turn.deps.wake(call.thread_id)
    batch: list[Entry] = []
    if action.close_request and st.inflight is not None:
        batch.append(request_end(st.inflight.id, None, is_error=False, internal={"interrupted": True}))
    active = st.active_outcome
    if st.evaluation_inflight is not None and active is not None:
        message = "The user interrupted the session while the outcome was being evaluated."
        batch.append(outcomes.end_event(st.evaluation_inflight.id, active, "interrupted", message, None))
    for call in st.unresolved:
        message = "The user interrupted the session before this tool call finished."
        if call.kind == "thread":
            batch.append(threads.answer(turn.sid, call, message))
            continue
        batch.append(tool_error(call.event_id, message, kind=call.kind, builtin_result=turn.builtin_result))
    batch.append(("session.status_idle", {"stop_reason": {"type": "end_turn"}}, None))
    turn.append(f"interrupt@{st.last_seq}", batch)
    return RunAgain()


def budget_gate(turn: _Turn) -> Outcome | None:
    """Before a model request starts (the agent's or a grader's): what to do when the session's budget says stop,
    None when the request may go ahead (budget.gate)."""
    st = turn.state
    spend = budget.gate(st, turn.ledger.budget, turn.ledger.others)
    if spend == "stay_stopped":
        if turn.rec.doc.get("status") != st.status:
            turn.sync_record()
        return Parked("budget_reached")
    if spend == "stop":
        turn.append(f"budget@{st.last_seq}", budget.stop_events(st, turn.ledger, turn.deps.clock.now()))
        if turn.thread and turn.deps.wake is not None:
            turn.deps.wake(turn.session_id)  # a child stopped at its session's budget stops the session (step.decide)
        return RunAgain()
    return None


def _run_model(turn: _Turn, action: step.RunModel, cancel: CancelToken | None) -> Outcome:
    deps, st = turn.deps, turn.state
    settings = deps.settings
    mcp_errors = turn.load_mcp_tools()
    compacting = action.rerun and compaction.is_compaction(st.inflight)
    if not action.rerun:
        stopped = budget_gate(turn)
        if stopped is not None:
            return stopped
        verdict = compaction.verdict(st, settings)
        if isinstance(verdict, compaction.LimitReached):
            stop: list[Entry] = [
                session_error("compaction_limit_reached_error", verdict.message, "exhausted"),
                ("session.status_idle", {"stop_reason": {"type": "retries_exhausted"}}, None),
            ]
            turn.append(f"compaction-limit@{st.last_seq}", stop)
            return RunAgain()
        compacting = verdict
        start: list[Entry] = []
        if st.status != "running":
            start.append(("session.status_running", {}, None))
        start.extend(mcp_errors)
        start.append(("span.model_request_start", {}, compaction.MARK if compacting else None))
        resumed = turn.thread and st.budget_stop_seq is not None
        try:  # the request is built from this state: it starts only if nothing was logged since (a message would be
            # logged before the start, as sent with it, and never be)
            turn.append(f"req{action.request_no}:start", start, at_end=True)
        except LogMoved:
            return RunAgain()  # (the next step decides with what was logged)
        if st.inflight is None:  # someone else ran this request meanwhile
            return RunAgain()
        if resumed and deps.wake is not None:  # a child the budget stopped runs again: so does its session
            deps.wake(turn.session_id)
    assert st.inflight is not None
    start_id = st.inflight.id
    key = f"req{action.request_no}:end"
    if compacting:
        request = compaction.request(
            turn.agent, turn.toolbox, st, context=session_context(turn.rec.doc, memory_mounted=_memory_mounted(turn))
        )
        wanted: frozenset[str] = frozenset()  # a summary is never shown: it is not an agent.message
    else:
        effort = cast(str | None, turn.rec.doc.get("_effort"))
        request = build_request(
            turn.agent,
            turn.toolbox,
            st.transcript,
            max_tokens=settings.max_tokens,
            effort=effort,
            context=session_context(turn.rec.doc, memory_mounted=_memory_mounted(turn)),
        )
        if deps.files is not None:
            request = inline_file_sources(request, turn.rec.workspace_id, deps.files)
        wanted = deps.notifier.wants_previews(turn.sid) if deps.notifier is not None else frozenset()
    try:
        with deps.waiting():
            if wanted:
                previewer = _Previewer(turn, key, start_id, wanted)
                response = deps.model.stream_message(request, cancel=cancel, on_event=previewer.on_event)
            else:
                response = deps.model.stream_message(request, cancel=cancel)
    except Cancelled:
        return RunAgain()
    except ModelError as exc:
        return _model_failed(turn, action.request_no, start_id, exc, "Context compaction" if compacting else "Model")
    if compacting:
        turn.append(key, compaction.events(start_id, response))
        return RunAgain()
    batch = _response_events(turn, key, start_id, response)
    if batch[-1][0] == "session.status_idle" and _stop_type(batch[-1]) == "end_turn":
        return _settle(turn) if turn.end_turn(key, batch) else RunAgain()
    turn.append(key, batch)
    return _delegate_now(turn)


def _delegate_now(turn: _Turn) -> Outcome:
    """After a response with delegation calls: start their threads in this step, not the next. The next step would
    decide the same from the same log (this state is its fold while `in_sequence`), so a crash between the two writes
    is the crash between two steps it replaces; the children's first requests start one step (a yield to the
    server's requests, a record read, a fold) sooner. Anything else: the next step."""
    if not turn.in_sequence or not any(c.kind == "thread" and not c.started for c in turn.state.unresolved):
        return RunAgain()
    tool_timeout = timedelta(seconds=turn.deps.settings.tool_timeout_seconds)
    action = step.decide(turn.state, now=turn.deps.clock.now(), tool_timeout=tool_timeout)
    return _start_threads(turn, action) if isinstance(action, step.StartThreads) else RunAgain()


def _stop_type(entry: Entry) -> object:
    return cast(JsonObject, entry[1].get("stop_reason") or {}).get("type")


class _Previewer:
    """Turns the model's stream into `event_start` / `event_delta` previews for streams that opted in.

    A preview carries the id its final event will get: the response batch is planned from the blocks started so
    far with the same `_response_events` that logs the final one, and ids are positional in the batch."""

    def __init__(self, turn: _Turn, key: str, start_id: str, wanted: frozenset[str]) -> None:
        self.turn, self.key, self.start_id, self.wanted = turn, key, start_id, wanted
        self.blocks: list[JsonObject] = []
        self.message_id: str | None = None  # the agent.message text deltas go to, and its content index
        self.index = -1

    def on_event(self, event: JsonObject) -> None:
        notifier = self.turn.deps.notifier
        assert notifier is not None
        if event.get("type") == "content_block_start":
            block = cast(JsonObject, event.get("content_block") or {})
            continues_message = bool(self.blocks) and self.blocks[-1].get("type") == "text"
            self.blocks.append(block)
            btype = block.get("type")
            if btype == "text" and continues_message and self.message_id is not None:
                self.index += 1
                return
            self.message_id = None
            event_type = "agent.message" if btype == "text" else "agent.thinking" if btype == "thinking" else None
            if event_type is None or event_type not in self.wanted:
                return
            event_id = self._planned_id(event_type)
            notifier.publish_preview(
                self.turn.sid, {"type": "event_start", "event": {"type": event_type, "id": event_id}}
            )
            if btype == "text":
                self.message_id, self.index = event_id, 0
            return
        delta = cast(JsonObject, event.get("delta") or {})
        if self.message_id is None or delta.get("type") != "text_delta" or not delta.get("text"):
            return
        content: JsonObject = {"type": "text", "text": delta["text"]}
        preview: JsonObject = {
            "type": "event_delta",
            "event_id": self.message_id,
            "delta": {"type": "content_delta", "index": self.index, "content": content},
        }
        notifier.publish_preview(self.turn.sid, preview)

    def _planned_id(self, event_type: str) -> str:
        partial = ModelResponse(content=list(self.blocks), stop_reason=None, usage=ModelUsage())
        batch = _response_events(self.turn, self.key, self.start_id, partial)
        position = max(i for i, (type_, _, _) in enumerate(batch) if type_ == event_type)
        return deterministic_event_id(self.turn.sid, self.key, position)


def _response_events(turn: _Turn, key: str, start_id: str, response: ModelResponse) -> list[Entry]:
    batch: list[Entry] = []
    text: list[JsonObject] = []
    calls = 0

    def flush_text() -> None:
        if text:
            batch.append(("agent.message", {"content": list(text)}, None))
            text.clear()

    for block in response.content:
        btype = block.get("type")
        if btype in ("thinking", "redacted_thinking"):
            flush_text()
            batch.append(("agent.thinking", {}, None))
        elif btype == "text":
            text.append({"type": "text", "text": block.get("text", "")})
        elif btype == "tool_use":
            flush_text()
            calls += 1
            batch.extend(_tool_use_events(turn, block, deterministic_event_id(turn.sid, key, len(batch))))
    flush_text()
    batch.append(
        request_end(
            start_id,
            response,
            is_error=False,
            internal={"content": response.content, "stop_reason": response.stop_reason},
        )
    )
    if response.stop_reason == "refusal":
        idle: JsonObject = {"stop_reason": {"type": "refusal"}}
        idle["stop_details"] = response.stop_details or {"type": "refusal", "category": None, "explanation": None}
        batch.append(("session.status_idle", idle, None))
    elif (
        calls == 0
        and response.stop_reason != "pause_turn"
        and not turn.state.pending
        and not _grader_follows(turn.state)
    ):
        batch.append(("session.status_idle", {"stop_reason": {"type": "end_turn"}}, None))
    return batch


def _grader_follows(st: SessionState) -> bool:
    """The agent works on an outcome: a turn it ends is judged by the grader before the session goes idle."""
    o = st.active_outcome
    return o is not None and o.result == "running"


def _tool_use_events(turn: _Turn, block: JsonObject, event_id: str) -> list[Entry]:
    """The events of one tool_use block; `event_id` is the id its agent.tool_use will get in the batch."""
    name = str(block.get("name", ""))
    route = turn.toolbox.route(name)
    internal: JsonObject = {"tool_use_id": block.get("id"), "kind": route.kind}
    payload: JsonObject = {"name": name, "input": block.get("input") or {}}
    if route.kind == "custom":
        return [("agent.custom_tool_use", payload, internal)]
    if route.kind == "thread":
        return [
            threads.sent_event(
                turn.sid, turn.agent, name, cast(JsonObject, payload["input"]), block.get("id"), event_id
            )
        ]
    event_type = "agent.tool_use"
    if route.kind == "mcp":
        event_type = "agent.mcp_tool_use"
        payload = {"name": route.tool, "mcp_server_name": route.server, "input": payload["input"]}
        internal["alias"] = name
    payload["evaluated_permission"] = route.permission
    if route.evaluation is not None:
        payload["evaluation"] = route.evaluation
    events: list[Entry] = [(event_type, payload, internal)]
    if route.permission == "deny" and name == "web_search":
        message = "web_search is not available: no search provider is configured for this deployment."
        events.append(tool_error(event_id, message))
    elif route.permission == "deny":
        events.append(tool_error(event_id, f"Tool {name!r} is not enabled for this agent."))
    return events


def _model_failed(turn: _Turn, request_no: int, start_id: str, exc: ModelError, what: str = "Model") -> Outcome:
    settings = turn.deps.settings
    attempt = turn.state.consecutive_errors + 1
    error_type = ERROR_TYPES.get(exc.kind, "model_request_failed_error")
    status = f"HTTP {exc.status}" if exc.status else exc.kind
    retry = exc.retryable and attempt < settings.model_max_attempts
    batch: list[Entry] = [request_end(start_id, None, is_error=True)]
    if retry:
        delay = min(settings.retry_base_seconds * 2 ** (attempt - 1), settings.retry_max_seconds)
        message = (
            f"{what} request failed ({status}): {exc.message}. "
            f"Retrying in {delay:g} s (attempt {attempt + 1} of {settings.model_max_attempts})."
        )
        batch.append(session_error(error_type, message, "retrying"))
        batch.append(("session.status_rescheduled", {}, None))
        turn.append(f"req{request_no}:end", batch)
        return RetryAfter(delay)
    if exc.retryable:
        message = f"{what} request failed ({status}): {exc.message}. Gave up after {attempt} attempts."
    else:
        message = f"{what} request failed ({status}): {exc.message}. The request cannot succeed as sent."
    batch.append(session_error(error_type, message, "exhausted"))
    batch.append(("session.status_idle", {"stop_reason": {"type": "retries_exhausted"}}, None))
    turn.append(f"req{request_no}:end", batch)
    return RunAgain()


def _memory_mounted(turn: _Turn) -> bool:
    """Whether the session's sandbox mounts its memory stores (self-hosted workers do, by default)."""
    return turn.deps.cloud_memory or turn.rec.doc.get("_environment_type") != "cloud"
