"""Session state, rebuilt by folding the event log (architecture: the log is the only session state).

Both the harness (what to do next) and the API (is this tool result answering an open call?) read it.
The fold also rebuilds the Messages API transcript from the `internal` parts the harness logged.

Transcript rules:
* user input (`user.message`, `system.message`) collects in `pending` until a `span.model_request_start`,
  where it is flushed into the transcript as the user turn that request saw (a request re-run after a crash
  therefore sees exactly what the first attempt saw); a `system.message` becomes a `role: "system"` turn of its own
  after the user turn it accompanies (api-reference §3.1; the Messages API takes system turns mid-conversation);
* the user turn after an assistant turn with tool calls starts with one `tool_result` per call, in call order;
* `span.model_request_end` without error appends the assistant turn (its raw content, thinking signatures
  included);
* a compaction request (a `span.model_request_start` marked `internal.compaction`) summarizes the transcript and the
  settled tool results: its start flushes nothing and its end appends nothing;
* `agent.thread_context_compacted` replaces what the summary covers: the transcript is emptied, the settled calls
  are done, the context size measured by the last request is void, and the summary goes first in `pending`, ahead
  of user input that arrived meanwhile (kept verbatim), so the next request continues the turn from the summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, cast

from managed_agents.domain.events import STATUS_BY_EVENT, THREAD_STATUS_BY_EVENT, JsonObject, StoredEvent
from managed_agents.domain.outcomes import DEFAULT_MAX_ITERATIONS, Outcome, brief, feedback
from managed_agents.domain.threads import answered_through_session

ToolKind = Literal["builtin", "custom", "mcp", "server", "thread"]
# the answers a user (or a sandbox worker) gives a child thread's calls through the session (harness/threads.py)
THREAD_ANSWERS = frozenset(
    {"user.tool_confirmation", "user.custom_tool_result", "user.tool_result", "agent.tool_result"}
)
# A pending entry that is a system.message rather than a user block: `{SYSTEM_TURN: [text blocks]}`
SYSTEM_TURN = "_system_turn"


@dataclass
class ToolCall:
    event_id: str
    kind: ToolKind
    name: str
    model_tool_use_id: str
    input: JsonObject
    permission: str  # allow | ask | deny
    logged_at: datetime
    confirmation: str | None = None  # allow | deny
    server: str | None = None  # mcp: the MCP server's name
    result_content: list[JsonObject] | None = None
    result_is_error: bool = False
    started: bool = False  # thread: its child thread was created (`session.thread_created`, harness/threads.py)
    thread_id: str | None = None  # thread: the child thread's id, once created

    @property
    def resolved(self) -> bool:
        return self.result_content is not None

    @property
    def runnable(self) -> bool:
        """Unanswered and cleared to run: allowed, or ask-gated and confirmed."""
        return not self.resolved and (
            self.permission == "allow" or (self.permission == "ask" and self.confirmation == "allow")
        )

    @property
    def needs_user(self) -> bool:
        """The client must act: run a custom tool, or confirm an ask-gated call."""
        if self.resolved:
            return False
        return self.kind == "custom" or (self.permission == "ask" and self.confirmation is None)

    def resolve(self, content: list[JsonObject], is_error: bool) -> None:
        self.result_content = content
        self.result_is_error = is_error

    def tool_result_block(self) -> JsonObject:
        block: JsonObject = {"type": "tool_result", "tool_use_id": self.model_tool_use_id}
        block["content"] = [_tool_result_content(b) for b in (self.result_content or [])]
        if self.result_is_error:
            block["is_error"] = True
        return block


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    # server tools the platform ran (web_search, web_fetch: harness/web.py), the wire's `usage.server_tool_use`
    web_search_requests: int = 0
    web_fetch_requests: int = 0

    def add(self, usage: JsonObject) -> None:
        """Add a usage: a model request's, another Usage's fields, or a record's cached (wire-shaped) one."""
        self.input_tokens += _int(usage.get("input_tokens"))
        self.output_tokens += _int(usage.get("output_tokens"))
        self.cache_read_input_tokens += _int(usage.get("cache_read_input_tokens"))
        self.cache_creation_input_tokens += _int(usage.get("cache_creation_input_tokens"))
        server = usage.get("server_tool_use")
        tools = cast(JsonObject, server) if isinstance(server, dict) else usage
        self.web_search_requests += _int(tools.get("web_search_requests"))
        self.web_fetch_requests += _int(tools.get("web_fetch_requests"))

    def count_server_tool(self, name: str) -> None:
        if name == "web_search":
            self.web_search_requests += 1
        elif name == "web_fetch":
            self.web_fetch_requests += 1


@dataclass
class SessionState:
    status: str = "idle"
    last_seq: int = 0
    transcript: list[JsonObject] = field(default_factory=list)
    pending: list[JsonObject] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)  # calls of the last assistant turn
    requests_started: int = 0
    inflight: StoredEvent | None = None
    consecutive_errors: int = 0
    last_error_retry: str | None = None  # retry_status.type of the latest session.error
    interrupt_seq: int | None = None  # a user.interrupt not yet answered by an idle/terminated status
    # how many `pending` entries were logged before that interrupt: input the interrupt stops the turn for (no request
    # took it yet); the stop moves them into the transcript, to go with the next user turn (input logged after the
    # interrupt stays pending and runs a new turn)
    pending_at_interrupt: int = 0
    idle_requires_action: tuple[str, ...] | None = None  # event ids of the current requires_action idle
    usage: Usage = field(default_factory=Usage)
    last_request_input_tokens: int = 0  # the context size of the last request (0: unknown, e.g. after compaction)
    compactions_in_turn: int = 0  # agent.thread_context_compacted since the session last stopped
    # the context size of the first request after the latest compaction of this turn (None: none measured yet)
    compacted_context_tokens: int | None = None
    measuring_compaction: bool = False  # a compaction's first request has not ended yet
    running_since: datetime | None = None
    active_seconds: float = 0.0
    first_input_at: datetime | None = None  # the first client input that asked for a turn
    # how long the session took to begin running: from its first input to its first `running` (None: not yet)
    startup_seconds: float | None = None
    # budgets (harness/budget.py): the list cost of the priced requests (minor units, exact), requests with usage
    # that had no list price, the cost of the latest request (what the next one is projected to cost)
    list_cost: Decimal = Decimal(0)
    unpriced_requests: int = 0
    last_request_cost: Decimal = Decimal(0)
    budget_stop_seq: int | None = None  # the idle{budget_reached} the session is stopped at (None: not stopped)
    last_input_seq: int = 0  # the latest client input that asks for a turn (user.message, system.message, ...)
    last_usage_at: datetime | None = None  # the latest session.usage snapshot (or the first model request's start)
    # outcomes (domain/outcomes.py): every outcome defined, and the evaluation whose end is not logged yet
    outcomes: list[Outcome] = field(default_factory=list)
    evaluation_inflight: StoredEvent | None = None
    evaluation_errors: int = 0  # session.error events of the evaluation in flight (its grader's failed attempts)
    last_stop: str | None = None  # the stop_reason type of the latest idle
    # a child thread's tool calls cross-posted to the session's log (harness/threads.py): event id -> (thread id,
    # whether the user must act), until answered (the child copies the answers it waits on: threads.pull_answers)
    thread_requests: dict[str, tuple[str, bool]] = field(default_factory=dict)
    # interrupts of one child thread each, until the child's copied status says it stopped after them (the session's
    # steps copy them into the child's log: a copy lost to a crash is made again)
    thread_interrupts: dict[str, StoredEvent] = field(default_factory=dict)
    interrupt_event: StoredEvent | None = None  # the session's own interrupt being handled (interrupt_seq's)
    # child threads stopped at the session's budget (their `session.thread_status_idle` copies: harness/budget.py)
    threads_at_budget: set[str] = field(default_factory=set)
    # a child thread's log (it opens with the message its coordinator sent): its own events that are copied to its
    # session's log (status changes, calls answered through the session), until a step made sure the copies are
    # there (harness/threads.py `copy_to_session`: a copy lost to a crash after the child's write is made again)
    thread_log: bool = False
    uncopied: list[StoredEvent] = field(default_factory=list)
    replied: bool = False  # a child thread that sent its answer to its coordinator (it never runs again)

    @property
    def unresolved(self) -> list[ToolCall]:
        return [c for c in self.calls if not c.resolved]

    @property
    def active_outcome(self) -> Outcome | None:
        last = self.outcomes[-1] if self.outcomes else None
        return last if last is not None and not last.terminal else None

    @property
    def needs_evaluation(self) -> bool:
        """The agent ended its turn on an outcome being worked on: the grader judges next."""
        o = self.active_outcome
        return o is not None and o.result == "running" and o.agent_done and self.evaluation_inflight is None

    @property
    def has_unsent_input(self) -> bool:
        return bool(self.pending)

    def call(self, event_id: str) -> ToolCall | None:
        for c in self.calls:
            if c.event_id == event_id:
                return c
        return None


def fold(events: Iterable[StoredEvent], state: SessionState | None = None) -> SessionState:
    st = state or SessionState()
    for ev in events:
        _apply(st, ev)
        st.last_seq = ev.seq
    return st


def _apply(st: SessionState, ev: StoredEvent) -> None:
    t, p, internal = ev.type, ev.payload, ev.internal or {}
    if st.thread_log and (
        (internal.get("own") and t in THREAD_STATUS_BY_EVENT) or answered_through_session(t, p, internal)
    ):
        st.uncopied.append(ev)
    if t in ("user.message", "system.message", "user.define_outcome"):
        st.last_input_seq = ev.seq
        if st.first_input_at is None:
            st.first_input_at = ev.processed_at
    if t == "user.define_outcome":
        rubric = cast(JsonObject, p.get("rubric") or {})
        text = str(internal.get("rubric_text") or rubric.get("content") or "")
        max_iterations = int(cast(int, p.get("max_iterations") or DEFAULT_MAX_ITERATIONS))
        st.outcomes.append(Outcome(str(p.get("outcome_id")), str(p.get("description")), text, max_iterations))
        st.pending.append({"type": "text", "text": brief(str(p.get("description")), text)})
    elif t == "user.message":
        st.pending.extend(_message_content(cast(list[JsonObject], p.get("content") or [])))
    elif t == "system.message":
        blocks = cast(list[JsonObject], p.get("content") or [])
        st.pending.append({SYSTEM_TURN: [{"type": "text", "text": str(b.get("text", ""))} for b in blocks]})
    elif t == "span.model_request_start":
        st.requests_started += 1
        st.inflight = ev
        st.budget_stop_seq = None
        if st.last_usage_at is None:  # the period of the periodic snapshot starts with the first request
            st.last_usage_at = ev.processed_at
        if not internal.get("compaction"):
            _flush_user_turn(st)
            o = st.active_outcome
            if o is not None:
                o.result, o.agent_done = "running", False
    elif t == "span.model_request_end":
        compaction = st.inflight is not None and bool((st.inflight.internal or {}).get("compaction"))
        st.inflight = None
        st.usage.add(cast(JsonObject, p.get("model_usage") or {}))
        if isinstance(internal.get("list_cost"), str):
            st.last_request_cost = Decimal(cast(str, internal["list_cost"]))
            st.list_cost += st.last_request_cost
        elif internal.get("unpriced"):
            st.unpriced_requests += 1
        if p.get("is_error"):
            st.consecutive_errors += 1 if not internal.get("interrupted") else 0
        else:
            st.consecutive_errors = 0
            st.last_error_retry = None
            if not compaction and not internal.get("interrupted"):  # an interrupted request measured nothing
                mu = cast(JsonObject, p.get("model_usage") or {})
                st.last_request_input_tokens = (
                    _int(mu.get("input_tokens"))
                    + _int(mu.get("cache_read_input_tokens"))
                    + _int(mu.get("cache_creation_input_tokens"))
                    + _int(mu.get("output_tokens"))
                )
                if st.measuring_compaction:
                    st.compacted_context_tokens, st.measuring_compaction = st.last_request_input_tokens, False
            content = cast(list[JsonObject] | None, internal.get("content"))
            if content and not compaction:
                st.transcript.append({"role": "assistant", "content": content})
                o = st.active_outcome
                ended = internal.get("stop_reason") not in ("pause_turn", "refusal")
                if o is not None and ended and not any(b.get("type") == "tool_use" for b in content):
                    o.agent_done = True
    elif t in ("agent.tool_use", "agent.custom_tool_use", "agent.mcp_tool_use") and internal.get("thread"):
        needs_user = t == "agent.custom_tool_use" or p.get("evaluated_permission") == "ask"
        st.thread_requests[ev.id] = (str(internal["thread"]), needs_user)
    elif internal.get("thread") and t in THREAD_ANSWERS:  # a user's answer to a child's call, routed to it
        call_id = str(p.get("custom_tool_use_id") or p.get("tool_use_id"))
        request = st.thread_requests.get(call_id)
        if request is not None and t == "user.tool_confirmation" and p.get("result") == "allow":
            st.thread_requests[call_id] = (request[0], False)  # confirmed: the child runs it
        elif request is not None:
            del st.thread_requests[call_id]
    elif t in ("agent.tool_use", "agent.custom_tool_use", "agent.mcp_tool_use"):
        kind = cast(
            ToolKind,
            internal.get("kind") or {"agent.custom_tool_use": "custom", "agent.mcp_tool_use": "mcp"}.get(t, "builtin"),
        )
        st.calls.append(
            ToolCall(
                event_id=ev.id,
                kind=kind,
                name=str(p.get("name", "")),
                model_tool_use_id=str(internal.get("tool_use_id") or ev.id),
                input=cast(JsonObject, p.get("input") or {}),
                permission=str(p.get("evaluated_permission") or "allow"),
                logged_at=ev.processed_at,
                server=cast(str | None, p.get("mcp_server_name")),
            )
        )
    elif t == "agent.thread_message_sent" and internal.get("kind") == "thread":  # a delegation (harness/threads.py)
        st.calls.append(
            ToolCall(
                event_id=ev.id,
                kind="thread",
                name=str(internal.get("name") or ""),
                model_tool_use_id=str(internal.get("tool_use_id") or ev.id),
                input=cast(JsonObject, internal.get("input") or {}),
                permission="allow",
                logged_at=ev.processed_at,
            )
        )
    elif t == "agent.thread_message_sent" and st.thread_log:  # a child's answer to its coordinator: it is done
        st.replied = True
    elif t == "session.thread_created":
        c = st.call(str(internal.get("call")))
        if c is not None:
            c.started, c.thread_id = True, cast(str | None, p.get("session_thread_id"))
    elif t == "agent.thread_message_received":
        if internal.get("call"):  # a child's answer to the coordinator's delegation
            c = st.call(str(internal["call"]))
            if c is not None and not c.resolved:
                c.resolve(cast(list[JsonObject], p.get("content") or []), bool(internal.get("is_error")))
        else:  # the message that opens a child thread: its input
            st.thread_log = True
            st.last_input_seq = ev.seq
            st.pending.extend(_message_content(cast(list[JsonObject], p.get("content") or [])))
    elif t == "user.tool_confirmation":
        c = st.call(str(p.get("tool_use_id")))
        if c is not None and c.confirmation is None:
            c.confirmation = str(p.get("result"))
            if c.confirmation == "deny":
                msg = p.get("deny_message") or "The user denied permission to run this tool."
                c.resolve([{"type": "text", "text": str(msg)}], True)
    elif t in ("user.custom_tool_result", "user.tool_result", "agent.tool_result", "agent.mcp_tool_result"):
        ref = p.get("custom_tool_use_id") or p.get("tool_use_id") or p.get("mcp_tool_use_id")
        c = st.call(str(ref))
        if c is not None and not c.resolved:
            c.resolve(cast(list[JsonObject], p.get("content") or []), bool(p.get("is_error")))
            if c.kind == "server" and t == "agent.tool_result":  # the platform ran it (RunPlatformTools)
                st.usage.count_server_tool(c.name)
    elif t == "user.interrupt" and internal.get("thread"):  # one child thread's: copied to it
        st.thread_interrupts[str(internal["thread"])] = ev
    elif t == "user.interrupt":
        st.interrupt_seq, st.interrupt_event = ev.seq, ev
        st.pending_at_interrupt = len(st.pending)
        st.budget_stop_seq = None  # an interrupted session does not resume its turn when the budget is raised
    elif t == "session.usage":
        st.last_usage_at = ev.processed_at
    elif t == "span.outcome_evaluation_start":
        st.evaluation_inflight, st.evaluation_errors = ev, 0
        if st.active_outcome is not None:
            st.active_outcome.result = "evaluating"
    elif t == "span.outcome_evaluation_end":
        _end_evaluation(st, ev)
    elif t == "session.error":
        if st.evaluation_inflight is not None:
            st.evaluation_errors += 1
        err = cast(JsonObject, p.get("error") or {})
        st.last_error_retry = str(cast(JsonObject, err.get("retry_status") or {}).get("type") or "")
    elif t == "agent.thread_context_compacted":
        summary: JsonObject = {"type": "text", "text": str(internal.get("summary") or "")}
        # a summary logged before user input was kept out of it (no `keeps_pending`) covered that input too
        st.pending = [summary, *(st.pending if internal.get("keeps_pending") else [])]
        st.transcript = []
        st.calls = []
        st.last_request_input_tokens = 0
        st.compactions_in_turn += 1
        st.compacted_context_tokens, st.measuring_compaction = None, True
    elif t in THREAD_STATUS_BY_EVENT and not internal.get("own"):  # a child's status change, copied to the session
        tid = str(p.get("session_thread_id"))
        if cast(JsonObject, p.get("stop_reason") or {}).get("type") == "budget_reached":
            st.threads_at_budget.add(tid)
        else:
            st.threads_at_budget.discard(tid)
        if t in ("session.thread_status_idle", "session.thread_status_terminated"):
            st.thread_interrupts.pop(tid, None)  # it stopped after the interrupt: nothing left to copy
    elif t in STATUS_BY_EVENT or (internal.get("own") and t in THREAD_STATUS_BY_EVENT):
        new_status = STATUS_BY_EVENT.get(t) or THREAD_STATUS_BY_EVENT[t]
        if new_status == "running" and st.running_since is None:
            st.running_since = ev.processed_at
        if new_status == "running" and st.startup_seconds is None and st.first_input_at is not None:
            st.startup_seconds = max(0.0, (ev.processed_at - st.first_input_at).total_seconds())
        elif new_status in ("idle", "terminated") and st.running_since is not None:
            st.active_seconds += (ev.processed_at - st.running_since).total_seconds()
            st.running_since = None
        st.status = new_status
        if new_status in ("idle", "terminated"):
            # input the interrupt this stop answers came after (sent, then interrupted before any request took it):
            # the turn it would have started is stopped; it goes with the next user turn, as the settled results do
            stopped: list[JsonObject] = []
            if st.interrupt_seq is not None:
                stopped, st.pending = st.pending[: st.pending_at_interrupt], st.pending[st.pending_at_interrupt :]
            st.interrupt_seq, st.interrupt_event, st.pending_at_interrupt = None, None, 0
            # calls settled by the stop itself (an interrupt's error results): the model is not asked again now;
            # their results go with the next user turn
            _add_user_blocks(st, _take_settled_results(st) + stopped)
            # an idle session retries nothing: a pending retry (e.g. cut short by an interrupt) is dropped and the
            # next turn starts with a fresh attempt budget
            st.consecutive_errors = 0
            st.last_error_retry = None
            # compaction limits count per turn
            st.compactions_in_turn, st.compacted_context_tokens, st.measuring_compaction = 0, None, False
        stop = cast(JsonObject, p.get("stop_reason") or {})
        if new_status == "idle":
            st.last_stop = cast(str | None, stop.get("type"))
        if new_status == "idle" and stop.get("type") == "budget_reached":
            st.budget_stop_seq = ev.seq
        if new_status == "idle" and stop.get("type") == "requires_action":
            st.idle_requires_action = tuple(str(i) for i in cast(list[object], stop.get("event_ids") or []))
        else:
            st.idle_requires_action = None


def _end_evaluation(st: SessionState, ev: StoredEvent) -> None:
    p, internal = ev.payload, ev.internal or {}
    st.evaluation_inflight = None
    usage = cast(JsonObject, p.get("usage") or {})
    st.usage.add(usage)
    if isinstance(internal.get("list_cost"), str):
        st.list_cost += Decimal(cast(str, internal["list_cost"]))
    elif internal.get("unpriced"):
        st.unpriced_requests += 1
    o = st.active_outcome
    if o is None:
        return
    result, explanation = str(p.get("result")), str(p.get("explanation") or "")
    o.explanation, o.agent_done = explanation, False
    if result == "needs_revision":
        o.iteration, o.result = o.iteration + 1, "running"
        st.pending.append({"type": "text", "text": feedback(result, explanation, int(cast(int, p["iteration"])))})
        return
    o.result, o.completed_at = result, ev.processed_at
    if result == "max_iterations_reached":  # one final acknowledgment turn follows
        st.pending.append({"type": "text", "text": feedback(result, explanation, int(cast(int, p["iteration"])))})


def _flush_user_turn(st: SessionState) -> None:
    blocks = _take_settled_results(st) + st.pending
    st.pending = []
    _add_user_blocks(st, blocks)


def _take_settled_results(st: SessionState) -> list[JsonObject]:
    """The tool_result blocks of the last assistant turn's calls once all are settled (the calls are then done)."""
    if not st.calls or not all(c.resolved for c in st.calls):
        return []
    blocks = [c.tool_result_block() for c in st.calls]
    st.calls = []
    return blocks


def _add_user_blocks(st: SessionState, blocks: list[JsonObject]) -> None:
    """Append user blocks to the transcript (joining a trailing user turn); a system message's marker becomes a
    `role: "system"` turn of its own, in its place (after the user turn it accompanies)."""
    for block in blocks:
        if SYSTEM_TURN in block:
            st.transcript.append({"role": "system", "content": block[SYSTEM_TURN]})
        elif st.transcript and st.transcript[-1]["role"] == "user":
            prev = cast(list[JsonObject], st.transcript[-1]["content"])
            st.transcript[-1] = {"role": "user", "content": [*prev, block]}
        else:
            st.transcript.append({"role": "user", "content": [block]})


def _message_content(blocks: list[JsonObject]) -> list[JsonObject]:
    """User message blocks in Messages API form (file sources stay references: the harness inlines them per request,
    harness/file_blocks.py)."""
    out: list[JsonObject] = []
    for b in blocks:
        if b.get("type") == "redacted":
            continue
        out.append({k: v for k, v in b.items() if v is not None})
    return out


def _tool_result_content(block: JsonObject) -> JsonObject:
    return {k: v for k, v in block.items() if v is not None}


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0
