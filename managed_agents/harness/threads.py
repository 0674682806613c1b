"""Delegation: the tools a coordinator is offered to start child threads, and the messages between threads.

* The primary thread of a session whose agent has a `multiagent` roster (api-reference §4.5) is offered one tool per
  callable agent, `delegate_to_<name>` (input `{message}`), and, when `multiagent_20261001` enables inline agents,
  `delegate_to_inline_agent` (input `{name, system?, message}`: a thread running an unsaved agent with the
  coordinator's model and tools). [decision: the hosted service's tool names are not public; these are ours.]
* A call is logged as `agent.thread_message_sent {to_session_thread_id, to_agent_name, content}` (the call, for the
  fold: `internal.kind = "thread"`). The next step starts the thread (`start`): its record, the
  `agent.thread_message_received` that opens its log, and `session.thread_created` on the session's log; then the
  orchestrator wakes it. Children run concurrently: each is advanced on its own, as a session is.
* A child that stops (idle other than `requires_action`, or terminated) sends its last message back (`deliver`):
  `agent.thread_message_sent` on its own log and `agent.thread_message_received {from_session_thread_id,
  from_agent_name, content}` on the session's, which answers the coordinator's call; then the session is woken.
* Every id is deterministic (the thread's from the call's event id, each message's from the thread) and every append
  conditional, so a start or a delivery re-run after a crash writes nothing twice. A parent waiting on its children
  wakes them each time it is advanced (recovery after a restart wakes running sessions only); a child that already
  delivered parks without waking the parent again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from managed_agents.domain.errors import Conflict, DuplicateEvent
from managed_agents.domain.events import STATUS_BY_EVENT, THREAD_STATUS_BY_EVENT, JsonObject, NewEvent, StoredEvent
from managed_agents.domain.ids import deterministic_event_id
from managed_agents.domain.session_state import SessionState, ToolCall
from managed_agents.domain.threads import (
    KIND,
    answer_id,
    answered_through_session,
    child_thread_id,
    is_thread_id,
    primary_thread_id,
    thread_agent,
)
from managed_agents.harness.event_batches import Entry
from managed_agents.ports import EventStore, Record, ResourceStore

PREFIX = "delegate_to_"
INLINE_TOOL = "delegate_to_inline_agent"
ADVISOR_TOOL = "consult_advisor"
ADVISOR_SYSTEM = (
    "You are an advisor to another agent. It consults you mid-task with a question and the context it chose to share."
    " Answer it directly: your judgement, the risks it may have missed, and what you would do next. You have no tools."
)
MAX_TOOL_NAME = 64
# a child's own status events: `session.status_X` as the harness decides them, logged as the thread's
THREAD_STATUS = {t: "session.thread_status_" + t.removeprefix("session.status_") for t in STATUS_BY_EVENT}


def _roster(agent: JsonObject) -> tuple[list[JsonObject], bool, str | None]:
    """The agents the primary thread may delegate to (full definitions), whether inline agents are enabled, and the
    advisor's model (None: no advisor)."""
    ma = cast(JsonObject | None, agent.get("multiagent"))
    if not ma:
        return [], False, None
    if ma.get("type") == "coordinator":
        entries = cast(list[JsonObject], ma.get("agents") or [])
        advisor = next((str(e["model"]) for e in entries if e.get("type") == "advisor"), None)
        return [e for e in entries if e.get("type") == "agent"], False, advisor
    level = cast(JsonObject, ma.get("advisor") or {})
    advisor = str(level["model"]) if level.get("type") == "enabled" and level.get("model") else None
    sub = cast(JsonObject, ma.get("subagents") or {})
    if sub.get("type") != "enabled":
        return [], False, advisor
    inline = cast(JsonObject, sub.get("inline_agents") or {}).get("type", "enabled") == "enabled"
    entries = cast(list[JsonObject], sub.get("predefined_agents") or [])
    return [e for e in entries if e.get("type") == "agent"], inline, advisor


def roster_agents(agent: JsonObject) -> list[JsonObject]:
    """The definitions of the agents the primary thread may delegate to (not the advisor, not inline agents)."""
    return _roster(agent)[0]


def tool_name(agent_name: str) -> str:
    return (PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", agent_name))[:MAX_TOOL_NAME]


def definitions(agent: JsonObject) -> list[JsonObject]:
    """The delegation tools of an agent with a roster (none for a thread's agent: threads are one level deep)."""
    agents, inline, advisor = _roster(agent)
    out: list[JsonObject] = []
    for a in agents:
        about = f": {a['description']}" if a.get("description") else ""
        out.append(
            {
                "name": tool_name(str(a["name"])),
                "description": f"Delegate a task to the agent {a['name']!r}{about}. It works in a thread of its own,"
                " concurrently with your other delegations; its final answer is this tool's result.",
                "input_schema": {
                    "type": "object",
                    "properties": {"message": {"type": "string", "description": "The task, with all it needs."}},
                    "required": ["message"],
                },
            }
        )
    if inline:
        out.append(
            {
                "name": INLINE_TOOL,
                "description": "Delegate a task to a new agent you define here, with your model and tools. It works in"
                " a thread of its own, concurrently with your other delegations; its final answer is this tool's"
                " result.",
                "input_schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "A short name for the agent."},
                        "system": {"type": "string", "description": "Its system prompt."},
                        "message": {"type": "string", "description": "The task, with all it needs."},
                    },
                    "required": ["name", "message"],
                },
            }
        )
    if advisor is not None:
        out.append(
            {
                "name": ADVISOR_TOOL,
                "description": f"Consult your advisor ({advisor}), a stronger model, when you are unsure how to"
                " proceed or want your plan checked. It sees only what you send: include the context it needs."
                " Its answer is this tool's result.",
                "input_schema": {
                    "type": "object",
                    "properties": {"message": {"type": "string", "description": "Your question, with its context."}},
                    "required": ["message"],
                },
            }
        )
    return out


def thread_agent_for(coordinator: JsonObject, name: str, input_: JsonObject) -> JsonObject | None:
    """The agent definition the thread a delegation call starts shows (None: no such delegation tool)."""
    agents = run_agent_for(coordinator, name, input_)
    return agents[0] if agents is not None else None


def run_agent_for(coordinator: JsonObject, name: str, input_: JsonObject) -> tuple[JsonObject, JsonObject] | None:
    """(the thread's `agent` as the API shows it, the definition its turns run) for a delegation call; they differ for
    the advisor only (`{type: "advisor", model}`, run as a tool-less agent of that model)."""
    agents, inline, advisor = _roster(coordinator)
    for a in agents:
        if tool_name(str(a["name"])) == name:
            shown = thread_agent(a)
            return shown, shown
    if advisor is not None and name == ADVISOR_TOOL:
        run: JsonObject = {
            "type": "advisor",
            "name": "advisor",
            "model": {"id": advisor},
            "system": ADVISOR_SYSTEM,
            "tools": [],
            "mcp_servers": [],
            "skills": [],
        }
        return {"type": "advisor", "model": advisor}, run
    if inline and name == INLINE_TOOL:
        inline_agent: JsonObject = {
            "type": "inline",
            "name": str(input_.get("name") or "inline agent")[:256],
            "description": None,
            "system": cast(str | None, input_.get("system")),
            "model": coordinator.get("model"),
            "tools": coordinator.get("tools") or [],
            "mcp_servers": coordinator.get("mcp_servers") or [],
            "skills": coordinator.get("skills") or [],
            "execution_identity": coordinator.get("execution_identity") or {"type": "service_account"},
        }
        return inline_agent, inline_agent
    return None


def message_content(input_: JsonObject) -> list[JsonObject]:
    return [{"type": "text", "text": str(input_.get("message") or "")}]


def sent_event(
    sid: str, coordinator: JsonObject, name: str, input_: JsonObject, tool_use_id: object, event_id: str
) -> tuple[str, JsonObject, JsonObject]:
    """The coordinator's delegation call as logged: `event_id` is the id the event gets in its batch."""
    agents = run_agent_for(coordinator, name, input_)
    agent = agents[1] if agents is not None else {}
    payload: JsonObject = {
        "to_session_thread_id": child_thread_id(sid, event_id),
        "to_agent_name": agent.get("name"),
        "content": message_content(input_),
    }
    return (
        "agent.thread_message_sent",
        payload,
        {"tool_use_id": tool_use_id, "kind": "thread", "input": input_, "name": name},
    )


def start(
    resources: ResourceStore,
    events: EventStore,
    session: Record,
    call: ToolCall,
    now_iso: str,
) -> tuple[str, JsonObject | None]:
    """Create the call's thread and the message that opens its log (both idempotent). Returns the thread id and the
    `session.thread_created` payload (None when the call names no delegation tool)."""
    sid = session.id
    tid = child_thread_id(sid, call.event_id)
    agents = run_agent_for(cast(JsonObject, session.doc["agent"]), call.name, call.input)
    if agents is None:
        return tid, None
    agent, run = agents
    doc: JsonObject = {
        "id": tid,
        "type": "session_thread",
        "session_id": sid,
        "parent_thread_id": primary_thread_id(sid),
        "agent": agent,
        "status": "running",
        "usage": None,
        "workflow_run_id": None,
        "created_at": now_iso,
        "updated_at": now_iso,
        "archived_at": None,
        # what the harness reads of a session, copied for the thread's turns
        "environment_id": session.doc.get("environment_id"),
        "_environment_type": session.doc.get("_environment_type"),
        "_skills": session.doc.get("_skills"),
        "_resources": session.doc.get("resources"),
        "_call_event_id": call.event_id,
        **({"_run_agent": run} if run is not agent else {}),
    }
    try:
        resources.insert(Record(KIND, session.workspace_id, tid, doc, session.created_at, attrs={"session_id": sid}))
    except Conflict:
        pass  # started before (a re-run)
    opening = NewEvent(
        deterministic_event_id(tid, "start"),
        "agent.thread_message_received",
        {"from_session_thread_id": primary_thread_id(sid), "content": message_content(call.input)},
        None,
    )
    try:
        events.append(tid, [opening])
    except DuplicateEvent:
        pass
    return tid, {"session_thread_id": tid, "agent_name": run["name"], "workflow_run_id": None}


def reply_content(st: SessionState) -> tuple[list[JsonObject], bool]:
    """What a stopped child sends back: its last message's text, or an error saying why it has none."""
    if st.status == "terminated" or st.last_stop == "retries_exhausted":
        text = "The delegated agent's thread stopped on an error before it finished (see its thread's events)."
        error: list[JsonObject] = [{"type": "text", "text": text}]
        return error, True
    for turn in reversed(st.transcript):
        if turn.get("role") == "assistant":
            blocks: list[JsonObject] = [
                {"type": "text", "text": str(b.get("text", ""))}
                for b in cast(list[JsonObject], turn.get("content") or [])
                if b.get("type") == "text"
            ]
            if blocks:
                return blocks, False
            break
    empty: list[JsonObject] = [{"type": "text", "text": "(the delegated agent ended its turn without a message)"}]
    return empty, False


def received_event(
    sid: str, tid: str, agent_name: str, call_event_id: str, content: list[JsonObject], is_error: bool
) -> NewEvent:
    """A child's answer as the session logs it: it answers the coordinator's call (`internal.call`)."""
    return NewEvent(
        deterministic_event_id(sid, f"reply@{tid}"),
        "agent.thread_message_received",
        {"from_session_thread_id": tid, "from_agent_name": agent_name, "content": content},
        {"call": call_event_id, "is_error": is_error},
    )


def deliver(
    events: EventStore,
    thread: Record,
    st: SessionState,
    append_own: Callable[[str, list[tuple[str, JsonObject, JsonObject | None]]], object],
) -> bool:
    """Send a stopped child's answer to its session (idempotent). True when the session's log got it just now."""
    sid = str(thread.doc["session_id"])
    content, is_error = reply_content(st)
    append_own(
        "reply",
        [("agent.thread_message_sent", {"to_session_thread_id": primary_thread_id(sid), "content": content}, None)],
    )
    name = str(cast(JsonObject, thread.doc.get("_run_agent") or thread.doc["agent"]).get("name"))
    try:
        events.append(sid, [received_event(sid, thread.id, name, str(thread.doc["_call_event_id"]), content, is_error)])
    except DuplicateEvent:
        return False
    return True


def answer(sid: str, call: ToolCall, message: str) -> tuple[str, JsonObject, JsonObject]:
    """An error answer the platform gives a delegation call in place of its thread's (interrupted, not allowed)."""
    payload: JsonObject = {
        "from_session_thread_id": child_thread_id(sid, call.event_id),
        "content": [{"type": "text", "text": message}],
    }
    return ("agent.thread_message_received", payload, {"call": call.event_id, "is_error": True})


def run_record(resources: ResourceStore, run_id: str) -> Record | None:
    """What an orchestrator runs: a session, or a child thread of one (ids `sthr_...`; one run each)."""
    return resources.get_by_id(KIND if is_thread_id(run_id) else "session", run_id)


def as_thread_events(thread_id: str, agent_name: object, events: Sequence[Entry]) -> list[Entry]:
    """A child thread logs its status changes as `session.thread_status_*`, named, marked as its own for the fold."""
    out: list[Entry] = []
    for type_, payload, internal in events:
        if type_ in THREAD_STATUS:
            named = {"session_thread_id": thread_id, "agent_name": agent_name, **payload}
            out.append((THREAD_STATUS[type_], named, {**(internal or {}), "own": True}))
        else:
            out.append((type_, payload, internal))
    return out


def copies(session_id: str, thread_id: str, events: Iterable[NewEvent | StoredEvent]) -> list[NewEvent]:
    """What a child's own events put on its session's log: its status changes (ids derived from the child's) and its
    calls that the session's client or sandbox answers (same ids, marked with the thread: the answer is sent to the
    session and routed by id; api-reference §3.3: "cross-posted subagent requests carry session_thread_id")."""
    out: list[NewEvent] = []
    for e in events:
        if e.type in THREAD_STATUS_BY_EVENT:
            out.append(NewEvent(deterministic_event_id(session_id, f"x@{e.id}"), e.type, e.payload, None))
        elif answered_through_session(e.type, e.payload, e.internal):
            payload = {**e.payload, "session_thread_id": thread_id}
            out.append(NewEvent(e.id, e.type, payload, {"thread": thread_id}))
    return out


def copy_to_session(events: EventStore, session_id: str, thread_id: str, st: SessionState) -> bool:
    """Make sure the copies of a child's own events (`st.uncopied`, from its fold) are on its session's log; True when
    one was missing and is made now (a crash came between the child's write and the copy's).

    The copies are made in the order of the child's writes, each batch's at once (`_Turn.append`), and every step of
    the child runs this before it writes anything: so when the latest copy is there, all are, and only the copies
    after the last one found are looked at (one read after a restart, none while a step's state is cached)."""
    missing: list[NewEvent] = []
    for ev in reversed(st.uncopied):
        (copy,) = copies(session_id, thread_id, [ev])
        if events.get(session_id, copy.id) is not None:
            break
        missing.append(copy)
    st.uncopied.clear()
    made = False
    for copy in reversed(missing):
        try:
            events.append(session_id, [copy])
            made = True
        except DuplicateEvent:
            pass  # copied meanwhile
    return made


def awaited(st: SessionState) -> list[tuple[str, str]]:
    """A child's calls that wait on an answer sent to its session: (call id, the answer's type as looked up)."""
    out: list[tuple[str, str]] = []
    for c in st.unresolved:
        if c.permission == "ask" and c.confirmation is None:
            out.append((c.event_id, "user.tool_confirmation"))
        elif c.kind == "custom" or (c.kind == "builtin" and c.runnable):
            out.append((c.event_id, "result"))
    return out


def pull_answers(events: EventStore, session_id: str, thread_id: str, st: SessionState) -> list[StoredEvent]:
    """Copy into a child's log the answers its session got for the calls it waits on (same ids: a copy made twice is
    refused), and return what was copied. The child pulls them each time it is advanced (woken by the send that
    logged them, or by its session after a restart), so an answer is copied once and never lost between the two
    logs; a call already answered in the child's log is not looked up again."""
    copied: list[StoredEvent] = []
    for call_id, type_ in awaited(st):
        ev = events.get(session_id, answer_id(session_id, call_id, type_))
        if ev is None:
            continue
        try:
            copied.extend(events.append(thread_id, [NewEvent(ev.id, ev.type, ev.payload, None)]))
        except DuplicateEvent:
            pass  # copied meanwhile (a concurrent step): the caller's fold reads it with the rest of the log
    return copied


def copy_interrupt(events: EventStore, thread_id: str, interrupt: StoredEvent) -> None:
    """An interrupt, copied into a child's log under its own id (idempotent)."""
    try:
        events.append(thread_id, [NewEvent(interrupt.id, interrupt.type, interrupt.payload, None)])
    except DuplicateEvent:
        pass
