// The trace model: a session's events (api-reference §3.2), de-duplicated by id and grouped by turn, with the
// per-turn figures the trace and the waterfall show. No DOM here.
//
// A turn runs from the first event after the previous turn ended up to a `session.status_idle` whose stop reason
// is not `requires_action` (end_turn, retries_exhausted, refusal, budget_reached), a `session.status_terminated`
// or a `session.deleted`. A `requires_action` idle stays inside the turn: the time until the user answers
// (confirmation, custom tool result, message) is the turn's "waiting on the user" time.

import { estimateCost } from "./pricing.js";

const TOOL_USES = new Set(["agent.tool_use", "agent.mcp_tool_use"]);
const TRAILING = new Set(["session.updated", "session.usage", "session.deleted"]);
const RESULT_REF = {
  "agent.tool_result": "tool_use_id",
  "user.tool_result": "tool_use_id",
  "agent.mcp_tool_result": "mcp_tool_use_id",
  "user.custom_tool_result": "custom_tool_use_id",
};

export function endsTurn(ev) {
  if (ev.type === "session.status_idle") return !(ev.stop_reason && ev.stop_reason.type === "requires_action");
  return ev.type === "session.status_terminated" || ev.type === "session.deleted";
}

/** Total length of the union of [start, end] intervals (parallel tool calls are counted once). */
export function unionMs(intervals) {
  const xs = intervals.filter((i) => i.end > i.start).sort((a, b) => a.start - b.start);
  let total = 0;
  let curStart = null;
  let curEnd = null;
  for (const { start, end } of xs) {
    if (curEnd === null || start > curEnd) {
      if (curEnd !== null) total += curEnd - curStart;
      curStart = start;
      curEnd = end;
    } else if (end > curEnd) {
      curEnd = end;
    }
  }
  if (curEnd !== null) total += curEnd - curStart;
  return total;
}

/**
 * The waterfall boxes to draw for a turn's segments (sorted by start): segments that look the same (kind, open,
 * error) and start within `dur / slots` of the previous one's end are drawn as one box, with their count, total
 * time and (when they share it) tool name. A turn of thousands of calls then draws a few hundred boxes at most
 * per kind instead of thousands of sub-pixel ones; turns with fewer, longer segments are drawn as they are.
 */
export function coalesce(segments, dur, slots = 400) {
  const eps = Math.max(0, dur) / slots;
  const last = new Map(); // look -> the box being extended
  const out = [];
  for (const s of segments) {
    const look = `${s.kind}/${s.open ? 1 : 0}/${s.isError ? 1 : 0}`;
    const box = last.get(look);
    if (box && s.start - box.end <= eps) {
      box.end = Math.max(box.end, s.end);
      box.count += 1;
      box.busy += s.end - s.start;
      if (box.name !== s.name) box.name = null;
    } else {
      const fresh = { ...s, count: 1, busy: s.end - s.start };
      last.set(look, fresh);
      out.push(fresh);
    }
  }
  return out;
}

export class Turn {
  constructor(index) {
    this.index = index; // 1-based
    this.events = [];
    this.start = null;
    this.end = null;
    this.closed = false;
    this.requests = new Map(); // span.model_request_start id -> {start, end, usage, isError}
    this.tools = new Map(); // tool use event id -> {name, start, end, isError}
    this.threads = new Map(); // child thread id -> {name, start, end, status, isError}: one lane each (delegations)
    this.waits = []; // {start, end}
    this.waitStart = null;
    this.errors = [];
    this.interrupts = 0;
    this.compactions = 0;
    this.toolCalls = 0;
    this.tokens = { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 };
    this.cost = 0;
    this.priced = true;
    this.trigger = null; // the user event that started the turn
    this.stopReason = null;
  }

  get durationMs() {
    return this.start === null ? 0 : Math.max(0, this.end - this.start);
  }

  /** Waterfall segments, in time order. Open intervals end at the turn's last event. */
  segments() {
    const out = [];
    for (const r of this.requests.values()) {
      out.push({ kind: "model", start: r.start, end: r.end ?? this.end, open: r.end === null, isError: r.isError });
    }
    for (const t of this.tools.values()) {
      if (t.start === null) continue; // waiting for confirmation: counted as waiting on the user
      out.push({ kind: "tool", start: t.start, end: t.end ?? this.end, open: t.end === null, name: t.name });
    }
    for (const w of this.waits) out.push({ kind: "wait", start: w.start, end: w.end });
    let lane = 0;
    for (const [id, th] of this.threads) {
      lane += 1;
      const end = th.end ?? this.end;
      out.push({ kind: "thread", start: th.start, end, open: th.end === null, name: th.name, lane, id, isError: th.isError });
    }
    if (this.waitStart !== null) out.push({ kind: "wait", start: this.waitStart, end: this.end, open: true });
    return out.sort((a, b) => a.start - b.start);
  }

  totals() {
    const segs = this.segments();
    const by = (k) => unionMs(segs.filter((s) => s.kind === k));
    const model = by("model");
    const tool = by("tool");
    const wait = by("wait");
    const thread = by("thread");
    const other = Math.max(0, this.durationMs - unionMs(segs));
    return { model, tool, wait, thread, other, total: this.durationMs, segments: segs };
  }
}

export class Trace {
  constructor(modelId) {
    this.modelId = modelId;
    this.events = [];
    this.byId = new Map();
    this.turnOf = new Map(); // event id -> Turn
    this.turns = [];
    this.current = null;
    this.start = null;
    this.requestNo = new Map(); // span start id -> 1-based request number
    this.requestEnd = new Map(); // span start id -> end event
    this.uses = new Map(); // tool use event id -> use event (agent.tool_use, mcp, custom)
    this.results = new Map(); // tool use event id -> result event
    this.errors = [];
    this.totals = { requests: 0, toolCalls: 0, input: 0, output: 0, cacheRead: 0, cacheWrite: 0, cost: 0, priced: true };
    this.lastTime = null;
    this.lastStamp = undefined;
    this.lastParsed = NaN;
  }

  get size() {
    return this.events.length;
  }

  has(id) {
    return this.byId.has(id);
  }

  time(ev) {
    const stamp = ev.processed_at;
    // the events of one append share their processed_at: parse each distinct stamp once in a row
    if (stamp !== this.lastStamp) {
      this.lastStamp = stamp;
      this.lastParsed = stamp ? Date.parse(stamp) : NaN;
    }
    const t = this.lastParsed;
    return Number.isNaN(t) ? (this.lastTime ?? Date.now()) : t;
  }

  /** Add one event; returns its Turn, or null when the id is already known (de-duplication by id). */
  add(ev) {
    if (!ev || !ev.id || this.byId.has(ev.id)) return null;
    const t = this.time(ev);
    this.lastTime = t;
    if (this.start === null) this.start = t;
    // bookkeeping events after a turn ended (a title change, a usage report) belong to it without extending it
    const trailing = this.current && this.current.closed && TRAILING.has(ev.type);
    if (!this.current || (this.current.closed && !trailing)) {
      this.current = new Turn(this.turns.length + 1);
      this.turns.push(this.current);
    }
    const turn = this.current;
    this.events.push(ev);
    this.byId.set(ev.id, ev);
    this.turnOf.set(ev.id, turn);
    turn.events.push(ev);
    if (turn.start === null) turn.start = t;
    if (!trailing) turn.end = Math.max(turn.end ?? t, t);
    this.apply(turn, ev, t);
    if (endsTurn(ev) && !trailing) {
      turn.closed = true;
      turn.stopReason = ev.type === "session.status_idle" ? ev.stop_reason && ev.stop_reason.type : ev.type;
    }
    return turn;
  }

  apply(turn, ev, t) {
    const type = ev.type;
    if (type.startsWith("user.") && turn.waitStart !== null) {
      turn.waits.push({ start: turn.waitStart, end: t });
      turn.waitStart = null;
    }
    if (!turn.trigger && (type === "user.message" || type.startsWith("user."))) turn.trigger = ev;
    if (type === "span.model_request_start") {
      this.totals.requests += 1;
      this.requestNo.set(ev.id, this.totals.requests);
      turn.requests.set(ev.id, { start: t, end: null, usage: null, isError: false });
    } else if (type === "span.model_request_end") {
      let r = turn.requests.get(ev.model_request_start_id);
      if (!r) {
        r = { start: t, end: null, usage: null, isError: false };
        turn.requests.set(ev.model_request_start_id || ev.id, r);
      }
      r.end = t;
      r.isError = Boolean(ev.is_error);
      const u = ev.model_usage || {};
      r.usage = u;
      this.requestEnd.set(ev.model_request_start_id, ev);
      const add = (k, v) => {
        turn.tokens[k] += v || 0;
        this.totals[k] += v || 0;
      };
      add("input", u.input_tokens);
      add("output", u.output_tokens);
      add("cacheRead", u.cache_read_input_tokens);
      add("cacheWrite", u.cache_creation_input_tokens);
      const cost = estimateCost(this.modelId, u);
      if (cost === null) {
        turn.priced = false;
        this.totals.priced = false;
      } else {
        turn.cost += cost;
        this.totals.cost += cost;
      }
    } else if (TOOL_USES.has(type) || type === "agent.custom_tool_use") {
      this.uses.set(ev.id, ev);
      turn.toolCalls += 1;
      this.totals.toolCalls += 1;
      if (TOOL_USES.has(type)) {
        const gated = ev.evaluated_permission === "ask";
        turn.tools.set(ev.id, { name: ev.name, start: gated ? null : t, end: null, isError: false });
      }
    } else if (type === "user.tool_confirmation") {
      const tool = turn.tools.get(ev.tool_use_id);
      if (tool) {
        if (ev.result === "allow") tool.start = t;
        else tool.end = t;
      }
    } else if (type in RESULT_REF) {
      const ref = ev[RESULT_REF[type]];
      this.results.set(ref, ev);
      const tool = turn.tools.get(ref);
      if (tool && tool.end === null) {
        if (tool.start === null) tool.start = t;
        tool.end = t;
        tool.isError = Boolean(ev.is_error);
      }
    } else if (type === "agent.thread_message_sent" && ev.to_session_thread_id) {
      // a delegation: the child thread's lane runs until its answer comes back
      if (!turn.threads.has(ev.to_session_thread_id)) {
        const name = ev.to_agent_name || "thread";
        turn.threads.set(ev.to_session_thread_id, { name, start: t, end: null, status: "running", isError: false });
      }
    } else if (type.startsWith("session.thread_status_") && ev.session_thread_id) {
      const th = turn.threads.get(ev.session_thread_id);
      if (th) th.status = type.slice("session.thread_status_".length);
    } else if (type === "agent.thread_message_received" && ev.from_session_thread_id) {
      const th = turn.threads.get(ev.from_session_thread_id);
      if (th && th.end === null) th.end = t;
    } else if (type === "session.error") {
      turn.errors.push(ev);
      this.errors.push(ev);
    } else if (type === "user.interrupt") {
      turn.interrupts += 1;
    } else if (type === "agent.thread_context_compacted") {
      turn.compactions += 1;
    } else if (type === "session.status_idle" && ev.stop_reason && ev.stop_reason.type === "requires_action") {
      turn.waitStart = t;
    }
  }

  /** Latency of the model request a span.model_request_end closes, in ms (null if its start is unknown). */
  latency(endEv) {
    const turn = this.turnOf.get(endEv.id);
    const r = turn && turn.requests.get(endEv.model_request_start_id);
    if (!r || r.end === null) return null;
    return r.end - r.start;
  }

  toolName(useId) {
    const use = this.uses.get(useId);
    return use ? use.name : null;
  }
}
