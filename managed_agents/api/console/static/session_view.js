// One session: header, figures, errors, the waterfall of time per turn, and the trace grouped by turn, live.
//
// Live updates follow the SDK's own reconnect recipe (api-reference §0.6): open the stream first, then read the
// history with events.list, and merge the two de-duplicated by event id. After a disconnect the stream is
// re-opened first again and only the missing tail is listed (newest first, until an id already known), so
// nothing is lost and nothing shown twice.
//
// Rendering is incremental so 5,000-event sessions stay fast: turns, waterfall rows and the events of an open
// turn are rendered a chunk at a time as they scroll near the viewport, and large tool outputs are only put in
// the DOM when expanded.

import { ApiError, downloadFile, get, getAll, getWithHeaders, readStream } from "./api.js";
import {
  LazyList,
  announce,
  badge,
  blocksText,
  clear,
  collapsible,
  dl,
  fmtBytes,
  fmtDate,
  fmtInt,
  fmtMs,
  h,
  json,
  statusBadge,
  time,
} from "./dom.js";
import { estimateCost, formatCost, sessionCost } from "./pricing.js";
import { Trace, coalesce } from "./trace.js";

const PAGE = 1000; // events.list maximum
// events after which the header (status, usage, budget, outcomes) is fetched again
const HEADER_EVENTS = new Set(["span.model_request_end", "span.outcome_evaluation_end", "session.usage", "session.updated"]);
const AHEAD = 8; // page cursors asked for ahead of each history page (x-next-pages)
const IN_FLIGHT = 4; // history pages loading at once (a browser opens 6 connections per host; the stream holds one)
const PARTIAL_AFTER_MS = 400; // a long history still loading by then shows its newest page meanwhile
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10000;

// ---------------------------------------------------------------------------------------------------------------
// events

function offset(trace, ev) {
  const ms = trace.time(ev) - trace.start;
  const s = ms / 1000;
  const m = Math.floor(s / 60);
  return `+${m ? `${m}:${(s % 60).toFixed(3).padStart(6, "0")}` : `${s.toFixed(3)}s`}`;
}

function eventLink(trace, id, text) {
  return h("a", { href: `#ev-${id}`, dataset: { jump: id } }, text || id);
}

function toolInput(ev) {
  const text = json(ev.input ?? {});
  return collapsible(text, { label: "Input", fileName: `${ev.id}-input.json` });
}

function resultBody(trace, ev, ref) {
  const text = blocksText(ev.content);
  const name = trace.toolName(ref);
  return [
    h(
      "p.meta",
      "Result of ",
      eventLink(trace, ref, name ? `${name} (${ref})` : ref),
      ev.is_error ? [" ", badge("error", "error")] : null,
      (() => {
        const use = trace.uses.get(ref);
        return use ? ` after ${fmtMs(trace.time(ev) - trace.time(use))}` : null;
      })(),
    ),
    text
      ? collapsible(text, { label: `${name || "tool"} output`, fileName: `${ev.id}.txt` })
      : h("p.muted", "(no content)"),
  ];
}

function usageLine(u) {
  return [
    `in ${fmtInt(u.input_tokens)}`,
    `out ${fmtInt(u.output_tokens)}`,
    `cache read ${fmtInt(u.cache_read_input_tokens)}`,
    `cache write ${fmtInt(u.cache_creation_input_tokens)}`,
  ].join(" · ");
}

const TITLES = {
  "user.message": "User message",
  "user.interrupt": "Interrupt",
  "user.tool_confirmation": "Confirmation",
  "user.custom_tool_result": "Custom tool result",
  "user.tool_result": "Tool result (worker)",
  "user.define_outcome": "Outcome defined",
  "system.message": "System message",
  "agent.message": "Agent message",
  "agent.thinking": "Thinking",
  "agent.tool_use": "Tool use",
  "agent.tool_result": "Tool result",
  "agent.mcp_tool_use": "MCP tool use",
  "agent.mcp_tool_result": "MCP tool result",
  "agent.custom_tool_use": "Custom tool use",
  "agent.thread_context_compacted": "Context compacted",
  "agent.thread_message_sent": "Message to a thread",
  "agent.thread_message_received": "Message from a thread",
  "session.thread_created": "Thread created",
  "session.thread_status_running": "Thread running",
  "session.thread_status_idle": "Thread idle",
  "session.thread_status_rescheduled": "Thread rescheduled",
  "session.thread_status_terminated": "Thread terminated",
  "session.error": "Error",
  "session.status_running": "Running",
  "session.status_idle": "Idle",
  "session.status_rescheduled": "Rescheduled",
  "session.status_terminated": "Terminated",
  "session.updated": "Session updated",
  "session.usage": "Usage",
  "session.deleted": "Session deleted",
  "span.model_request_start": "Model request",
  "span.model_request_end": "Model response",
  "span.outcome_evaluation_start": "Outcome evaluation",
  "span.outcome_evaluation_ongoing": "Grader still judging",
  "span.outcome_evaluation_end": "Outcome verdict",
};

/** Minor units ("2500", USD) as money: "$25.00". */
function money(amount, currency = "USD") {
  const n = Number(amount);
  if (!Number.isFinite(n)) return "—";
  return currency === "USD" ? `$${(n / 100).toFixed(2)}` : `${(n / 100).toFixed(2)} ${currency}`;
}

/** The budget's use: "$0.02 of $0.03 (67%)" with a meter, or null when the session has none. */
function budgetUse(budget, usage) {
  if (!budget || !budget.max_list_cost) return null;
  const limit = Number(budget.max_list_cost.amount);
  const spent = Number((usage && usage.list_cost && usage.list_cost.amount) || 0);
  const pct = limit > 0 ? Math.round((100 * spent) / limit) : 100;
  return h(
    "span.budget-use",
    h("meter.budget-meter", { min: "0", max: String(Math.max(limit, 1)), value: String(Math.min(spent, limit)) }),
    ` ${money(spent, budget.max_list_cost.currency)} of ${money(limit, budget.max_list_cost.currency)} (${pct}%)`,
  );
}

function verdictBadge(result) {
  return badge(result, `verdict-${result}`);
}

function eventBody(trace, ev) {
  switch (ev.type) {
    case "user.message":
    case "agent.message":
    case "system.message": {
      const text = blocksText(ev.content);
      return collapsible(text, { label: "Message", fileName: `${ev.id}.txt` });
    }
    case "agent.thinking":
      return h("p.muted", "The model was thinking (the API does not expose thinking content).");
    case "span.model_request_start":
      return h("p.meta", `Request #${trace.requestNo.get(ev.id) ?? "?"} started`);
    case "span.model_request_end": {
      const lat = trace.latency(ev);
      const u = ev.model_usage || {};
      const cost = formatCost(trace.modelId ? estimateFor(trace, u) : null);
      return h(
        "p.meta",
        `Request #${trace.requestNo.get(ev.model_request_start_id) ?? "?"}: `,
        h("strong", fmtMs(lat)),
        ` · ${usageLine(u)} · ${cost}`,
        ev.is_error ? [" ", badge("failed", "error")] : null,
      );
    }
    case "agent.tool_use":
    case "agent.mcp_tool_use":
    case "agent.custom_tool_use": {
      const perm = ev.evaluated_permission;
      const result = trace.results.get(ev.id);
      return [
        h(
          "p.meta",
          h("code.tool-name", ev.name),
          ev.mcp_server_name ? ` on MCP server ${ev.mcp_server_name}` : null,
          perm ? [" ", badge(`permission: ${perm}`, `perm-${perm}`)] : null,
          result ? [" → ", eventLink(trace, result.id, "result")] : null,
        ),
        toolInput(ev),
      ];
    }
    case "agent.tool_result":
    case "user.tool_result":
      return resultBody(trace, ev, ev.tool_use_id);
    case "agent.mcp_tool_result":
      return resultBody(trace, ev, ev.mcp_tool_use_id);
    case "user.custom_tool_result":
      return resultBody(trace, ev, ev.custom_tool_use_id);
    case "user.tool_confirmation": {
      const name = trace.toolName(ev.tool_use_id);
      return h(
        "p.meta",
        badge(ev.result, `confirm-${ev.result}`),
        " for ",
        eventLink(trace, ev.tool_use_id, name ? `${name} (${ev.tool_use_id})` : ev.tool_use_id),
        ev.deny_message ? `: “${ev.deny_message}”` : null,
      );
    }
    case "user.interrupt":
      return h("p.meta", "The user interrupted the session", ev.session_thread_id ? ` (thread ${ev.session_thread_id})` : "");
    case "agent.thread_context_compacted":
      return h("p.meta", "The context was compacted: earlier turns were replaced by a summary.");
    case "agent.thread_message_sent":
      return [
        h("p.meta", "To ", h("strong", ev.to_agent_name || "the primary thread"), " ", h("code", ev.to_session_thread_id)),
        h("p.message", blocksText(ev.content)),
      ];
    case "agent.thread_message_received":
      return [
        h(
          "p.meta",
          "From ",
          h("strong", ev.from_agent_name || "the primary thread"),
          " ",
          h("code", ev.from_session_thread_id),
        ),
        h("p.message", blocksText(ev.content)),
      ];
    case "session.thread_created":
    case "session.thread_status_running":
    case "session.thread_status_rescheduled":
    case "session.thread_status_terminated":
      return h("p.meta", h("strong", ev.agent_name || "thread"), " ", h("code", ev.session_thread_id));
    case "session.thread_status_idle":
      return h(
        "p.meta",
        h("strong", ev.agent_name || "thread"),
        " ",
        h("code", ev.session_thread_id),
        ev.stop_reason ? [" ", badge(ev.stop_reason.type, "stop")] : null,
      );
    case "session.error": {
      const e = ev.error || {};
      const retry = e.retry_status && e.retry_status.type;
      return [
        h("p.meta", h("code", e.type || "error"), " ", retry ? badge(retry, `retry-${retry}`) : null),
        h("p.error-message", e.message || ""),
      ];
    }
    case "session.status_idle": {
      const sr = ev.stop_reason || {};
      const ids = sr.event_ids || [];
      return h(
        "p.meta",
        `Stop reason: ${sr.type || "—"}`,
        ids.length ? [" — waiting for ", ids.map((id, i) => [i ? ", " : "", eventLink(trace, id)])] : null,
        ev.stop_details && ev.stop_details.explanation ? ` (${ev.stop_details.explanation})` : null,
      );
    }
    case "session.status_running":
    case "session.status_rescheduled":
    case "session.status_terminated":
    case "session.deleted":
      return null;
    case "session.usage": {
      const u = ev.usage || {};
      const cc = u.cache_creation || {};
      const line = usageLine({ ...u, cache_creation_input_tokens: (cc.ephemeral_5m_input_tokens || 0) + (cc.ephemeral_1h_input_tokens || 0) });
      const cost = u.list_cost ? ` · list cost ${money(u.list_cost.amount, u.list_cost.currency)}` : "";
      const use = budgetUse(ev.budget, u);
      return h("p.meta", line, cost, use ? [" · budget ", use] : null);
    }
    case "user.define_outcome": {
      const rubric = ev.rubric || {};
      return [
        h(
          "p.meta",
          ev.description || "",
          ` · up to ${fmtInt(ev.max_iterations)} iterations · `,
          h("code", ev.outcome_id || ""),
        ),
        rubric.type === "file"
          ? h("p.meta", "Rubric: file ", h("code", rubric.file_id || ""))
          : collapsible(rubric.content || "", { label: "Rubric", fileName: `${ev.id}-rubric.txt` }),
      ];
    }
    case "span.outcome_evaluation_start":
      return h("p.meta", `The grader judges iteration ${fmtInt((ev.iteration || 0) + 1)} of `, h("code", ev.outcome_id || ""));
    case "span.outcome_evaluation_ongoing":
      return h("p.meta", `The grader is still judging iteration ${fmtInt((ev.iteration || 0) + 1)}`);
    case "span.outcome_evaluation_end": {
      const u = ev.usage || {};
      return [
        h(
          "p.meta",
          verdictBadge(ev.result),
          ` iteration ${fmtInt((ev.iteration || 0) + 1)} · ${usageLine(u)} · ${formatCost(trace.modelId ? estimateFor(trace, u) : null)}`,
        ),
        ev.explanation ? h("p.verdict-explanation", ev.explanation) : null,
      ];
    }
    default: {
      const { id, type, processed_at, ...rest } = ev;
      return Object.keys(rest).length ? collapsible(json(rest), { label: "Fields", fileName: `${id}.json` }) : null;
    }
  }
}

function estimateFor(trace, usage) {
  return estimateCost(trace.modelId, usage);
}

function kindOf(type) {
  if (type === "session.error") return "error";
  if (type.startsWith("span.")) return "span";
  if (type.startsWith("session.")) return "status";
  if (type.endsWith("tool_use") || type.endsWith("tool_result")) return "tool";
  if (type.startsWith("user.")) return "user";
  return "agent";
}

export function renderEvent(trace, ev) {
  const isErr = ev.type === "session.error" || ev.is_error === true;
  const li = h(
    "li",
    { class: `ev ev-${kindOf(ev.type)}${isErr ? " ev-err" : ""}`, id: `ev-${ev.id}`, dataset: { type: ev.type } },
    h(
      "div.ev-head",
      h("span.ev-offset", { title: fmtDate(ev.processed_at) }, offset(trace, ev)),
      h("span.ev-title", TITLES[ev.type] || ev.type),
      h("code.ev-type", ev.type),
      h("code.ev-id", ev.id),
    ),
  );
  const body = eventBody(trace, ev);
  if (body) li.append(h("div.ev-body", body));
  return li;
}

// ---------------------------------------------------------------------------------------------------------------
// the trace view

function turnLabel(turn) {
  const t = turn.trigger;
  if (!t) return "Turn";
  if (t.type === "user.message") {
    const text = blocksText(t.content).replace(/\s+/g, " ").trim();
    return `“${text.length > 80 ? `${text.slice(0, 80)}…` : text}”`;
  }
  return TITLES[t.type] || t.type;
}

function turnSummary(turn) {
  const tot = turn.totals();
  const parts = [
    h("span.turn-no", `Turn ${turn.index}`),
    h("span.turn-label", turnLabel(turn)),
    h(
      "span.turn-figures",
      `${fmtInt(turn.events.length)} events · ${fmtMs(tot.total)} · ${turn.requests.size} requests · ` +
        `${turn.toolCalls} tool calls · ${fmtInt(turn.tokens.input + turn.tokens.output)} tokens`,
    ),
  ];
  if (turn.errors.length) parts.push(badge(`${turn.errors.length} error${turn.errors.length > 1 ? "s" : ""}`, "error"));
  if (turn.interrupts) parts.push(badge("interrupted", "interrupt"));
  if (turn.compactions) parts.push(badge("compacted", "compaction"));
  if (!turn.closed) parts.push(badge("in progress", "live"));
  else if (turn.stopReason && turn.stopReason !== "end_turn") parts.push(badge(turn.stopReason, "stop"));
  return parts;
}

const SEG_LABEL = { model: "model", tool: "tool", wait: "waiting on the user", thread: "thread" };

function waterfallRow(turn) {
  const tot = turn.totals();
  const dur = Math.max(1, tot.total);
  const track = h("div.wf-track", { "aria-hidden": "true" });
  track.style.setProperty("--dur", String(dur));
  const boxes = [];
  const lanes = [];
  for (const s of tot.segments.filter((x) => x.kind === "thread")) {
    // each child thread (a delegation) on a lane of its own under the turn's track, named after its agent
    const lane = h("div.wf-track.wf-lane", { dataset: { thread: s.id } });
    lane.style.setProperty("--dur", String(dur));
    const left = ((s.start - turn.start) / dur) * 100;
    const width = ((s.end - s.start) / dur) * 100;
    lane.append(
      h("span", {
        class: `seg seg-thread${s.open ? " seg-open" : ""}${s.isError ? " seg-error" : ""}`,
        style: { left: `${left}%`, width: `${width}%` },
        title: `thread ${s.name}: ${fmtMs(s.end - s.start)}`,
      }),
      h("span.wf-lane-name", s.name),
    );
    lanes.push(lane);
  }
  for (const s of coalesce(
    tot.segments.filter((x) => x.kind !== "thread"),
    dur,
  )) {
    const left = ((s.start - turn.start) / dur) * 100;
    const width = ((s.end - s.start) / dur) * 100;
    const what = `${SEG_LABEL[s.kind]}${s.count > 1 ? ` ×${fmtInt(s.count)}` : ""}${s.name ? ` ${s.name}` : ""}`;
    boxes.push(
      h("span", {
        class: `seg seg-${s.kind}${s.open ? " seg-open" : ""}${s.isError ? " seg-error" : ""}`,
        style: { left: `${left}%`, width: `${width}%` },
        title: s.count > 1 ? `${what}: ${fmtMs(s.busy)} in ${fmtMs(s.end - s.start)}` : `${what}: ${fmtMs(s.busy)}`,
      }),
    );
  }
  track.append(...boxes);
  return [
    h("a.wf-label", { href: `#turn-${turn.index}`, dataset: { turn: String(turn.index) } }, `Turn ${turn.index}`),
    h("div.wf-bar", track, ...lanes),
    h(
      "span.wf-totals",
      `${fmtMs(tot.total)}: model ${fmtMs(tot.model)}, tool ${fmtMs(tot.tool)}, waiting ${fmtMs(tot.wait)}` +
        (lanes.length ? `, ${lanes.length} thread${lanes.length > 1 ? "s" : ""} ${fmtMs(tot.thread)}` : ""),
    ),
  ];
}

export class TraceView {
  constructor(root, trace) {
    this.root = root;
    this.trace = trace;
    this.parts = new Map(); // Turn -> {li, details, summary, events: LazyList|null, wf: li|null}
    this.maxDur = 1;
    this.follow = false; // set once the history is loaded: live turns then open as they start
    this.figures = h("div.figures");
    this.errorList = h("ol.error-list");
    this.errorSection = h(
      "section.errors",
      { "aria-labelledby": "errors-h", hidden: true },
      h("h2#errors-h", "Errors"),
      this.errorList,
    );
    this.errorsShown = 0;
    this.wfList = h("ol.waterfall");
    this.turnList = h("ol.turns", { reversed: true });
    root.append(
      h("section", { "aria-labelledby": "figures-h" }, h("h2#figures-h", "Usage"), this.figures),
      this.errorSection,
      h(
        "section",
        { "aria-labelledby": "wf-h" },
        h("h2#wf-h", "Where the time went"),
        h(
          "p.legend",
          h("span.key.key-model", "model"),
          h("span.key.key-tool", "tool"),
          h("span.key.key-wait", "waiting on the user"),
          h("span.key.key-thread", "child thread (one lane each)"),
          h("span.key.key-none", "other (platform, queue)"),
        ),
        this.wfList,
      ),
      h(
        "section",
        { "aria-labelledby": "trace-h" },
        h(
          "div.trace-head",
          h("h2#trace-h", "Trace"),
          h("button", { type: "button", onclick: () => this.setAll(true) }, "Expand all turns"),
          h("button", { type: "button", onclick: () => this.setAll(false) }, "Collapse all turns"),
        ),
        h("p.muted", "Newest turn first; events inside a turn in the order they happened."),
        this.turnList,
      ),
    );
    this.wfLazy = new LazyList(this.wfList, trace.turns, (t) => this.renderWf(t), { chunk: 60 });
    // turns newest first: the latest turn (usually the one to look at) renders at once whatever the session's
    // length; older turns render as they scroll into view; turns that start live are put on top
    this.turnOrder = trace.turns.slice().reverse();
    this.turnLazy = new LazyList(this.turnList, this.turnOrder, (t) => this.renderTurn(t), { chunk: 40 });
    root.addEventListener("click", (e) => this.onClick(e));
    root.addEventListener("keydown", (e) => this.onKey(e));
    this.refreshFigures();
  }

  renderWf(turn) {
    const li = h("li.wf-row", waterfallRow(turn));
    this.part(turn).wf = li;
    this.noteDuration(turn);
    return li;
  }

  part(turn) {
    let p = this.parts.get(turn);
    if (!p) {
      p = { li: null, details: null, summary: null, events: null, wf: null };
      this.parts.set(turn, p);
    }
    return p;
  }

  noteDuration(turn) {
    const d = Math.max(1, turn.durationMs);
    if (d > this.maxDur) {
      this.maxDur = d;
      this.wfList.style.setProperty("--max", String(d));
    }
  }

  renderTurn(turn) {
    const p = this.part(turn);
    const summary = h("summary", turnSummary(turn));
    const body = h("ol.events", { "aria-label": `Events of turn ${turn.index}` });
    const details = h("details.turn", summary, body);
    details.addEventListener("toggle", () => {
      if (details.open && !p.events) p.events = new LazyList(body, turn.events, (ev) => renderEvent(this.trace, ev));
    });
    p.li = h("li", { id: `turn-${turn.index}`, class: turn.errors.length ? "has-errors" : null }, details);
    p.details = details;
    p.summary = summary;
    return p.li;
  }

  open(turn) {
    const p = this.part(turn);
    if (!p.details) this.turnLazy.ensure(this.turnOrder.length - turn.index);
    p.details.open = true;
    if (!p.events) p.events = new LazyList(p.details.lastChild, turn.events, (ev) => renderEvent(this.trace, ev));
    return p;
  }

  setAll(open) {
    if (open) this.turnLazy.renderTo(this.turnOrder.length);
    for (const turn of this.trace.turns) {
      const p = this.parts.get(turn);
      if (!p || !p.details) continue;
      if (open) this.open(turn);
      else p.details.open = false;
    }
  }

  /** Scroll to and focus an event, rendering whatever is needed on the way. */
  jump(eventId) {
    const turn = this.trace.turnOf.get(eventId);
    if (!turn) {
      announce(`Event ${eventId} is not in this trace`);
      return;
    }
    const p = this.open(turn);
    p.events.ensure(turn.events.findIndex((e) => e.id === eventId));
    const el = document.getElementById(`ev-${eventId}`);
    if (el) {
      el.tabIndex = -1;
      el.scrollIntoView({ block: "center" });
      el.focus({ preventScroll: true });
      el.classList.add("flash");
      setTimeout(() => el.classList.remove("flash"), 1500);
    }
  }

  onClick(e) {
    const a = e.target.closest("a");
    if (!a) return;
    if (a.dataset.jump) {
      e.preventDefault();
      this.jump(a.dataset.jump);
    } else if (a.dataset.turn) {
      e.preventDefault();
      const turn = this.trace.turns[Number(a.dataset.turn) - 1];
      const p = this.open(turn);
      p.li.scrollIntoView({ block: "start" });
      p.details.querySelector("summary").focus();
    }
  }

  /** Escape closes the expanded output the focus is in (its summary or download button) and focuses its summary. */
  onKey(e) {
    if (e.key !== "Escape" || e.defaultPrevented) return;
    const wrap = e.target.closest(".collapsible-wrap");
    const details = wrap && wrap.querySelector(":scope > details[open]");
    if (!details) return;
    e.preventDefault();
    details.open = false;
    details.querySelector(":scope > summary").focus();
  }

  /** New events were added to the trace (history page or live): update what is on screen. */
  update(added) {
    const dirty = new Set();
    let newTurns = false;
    for (const { turn, isNewTurn } of added) {
      dirty.add(turn);
      if (isNewTurn) newTurns = true;
    }
    if (newTurns) {
      this.wfLazy.grew();
      const turns = this.trace.turns;
      const fresh = added.filter((a) => a.isNewTurn).map((a) => a.turn);
      const before = turns[turns.length - 1 - fresh.length];
      const prev = before && this.parts.get(before);
      const following = !before || (prev && prev.details && prev.details.open);
      for (const turn of fresh) this.turnList.prepend(this.renderTurn(turn));
      // live: a new turn opens when the reader was following the previous one (or there was none)
      if (this.follow && following) this.open(turns[turns.length - 1]);
    }
    for (const turn of dirty) {
      const p = this.parts.get(turn);
      if (!p) continue;
      if (p.summary) {
        p.summary.replaceChildren(...turnSummary(turn));
        p.li.classList.toggle("has-errors", turn.errors.length > 0);
      }
      if (p.events) p.events.grew();
      if (p.wf) {
        p.wf.replaceChildren(...waterfallRow(turn));
        this.noteDuration(turn);
      }
    }
    this.refreshFigures();
  }

  refreshFigures() {
    const t = this.trace.totals;
    const turns = this.trace.turns;
    let model = 0;
    let tool = 0;
    let wait = 0;
    for (const turn of turns) {
      const x = turn.totals();
      model += x.model;
      tool += x.tool;
      wait += x.wait;
    }
    this.figures.replaceChildren(
      dl([
        ["Events", fmtInt(this.trace.size)],
        ["Turns", fmtInt(turns.length)],
        ["Model requests", fmtInt(t.requests)],
        ["Tool calls", fmtInt(t.toolCalls)],
        ["Input tokens", fmtInt(t.input)],
        ["Output tokens", fmtInt(t.output)],
        ["Cache read tokens", fmtInt(t.cacheRead)],
        ["Cache write tokens", fmtInt(t.cacheWrite)],
        ["Cost estimate", t.priced ? formatCost(t.cost) : `${formatCost(t.cost)} (model not in the price table)`],
        ["Time in model", fmtMs(model)],
        ["Time in tools", fmtMs(tool)],
        ["Waiting on the user", fmtMs(wait)],
      ]),
    );
    const errors = this.trace.errors;
    if (errors.length !== this.errorsShown) {
      for (const ev of errors.slice(this.errorsShown)) {
        const e = ev.error || {};
        const retry = e.retry_status && e.retry_status.type;
        this.errorList.append(
          h(
            "li",
            eventLink(this.trace, ev.id, `${e.type || "error"} at ${offset(this.trace, ev)}`),
            retry ? [" ", badge(retry, `retry-${retry}`)] : null,
            h("span.error-message", ` ${(e.message || "").slice(0, 240)}`),
          ),
        );
      }
      this.errorsShown = errors.length;
      this.errorSection.hidden = errors.length === 0;
    }
  }

  destroy() {
    this.wfLazy.destroy();
    this.turnLazy.destroy();
    for (const p of this.parts.values()) if (p.events) p.events.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// live feed

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

export class LiveFeed {
  constructor(sessionId, trace, { signal, onEvents, onState, live = true }) {
    this.sessionId = sessionId;
    this.trace = trace;
    this.signal = signal;
    this.onEvents = onEvents;
    this.onState = onState;
    this.live = live;
    this.reconnects = 0;
  }

  deliver(events) {
    const added = [];
    for (const ev of events) {
      const before = this.trace.turns.length;
      const turn = this.trace.add(ev);
      if (turn) added.push({ ev, turn, isNewTurn: this.trace.turns.length > before });
    }
    if (added.length) this.onEvents(added);
    return added.length;
  }

  /** Events after the last one known, oldest first (newest-first pages until a known id). */
  async tail() {
    const out = [];
    let page;
    for (;;) {
      const body = await get(
        `v1/sessions/${encodeURIComponent(this.sessionId)}/events`,
        { limit: PAGE, order: "desc", page },
        { signal: this.signal },
      );
      let reachedKnown = false;
      for (const ev of body.data) {
        if (this.trace.has(ev.id)) {
          reachedKnown = true;
          break;
        }
        out.push(ev);
      }
      page = body.next_page;
      if (reachedKnown || !page) return out.reverse();
    }
  }

  /**
   * The whole history, oldest first. Pages are listed newest first. The server names the cursors of the pages
   * ahead (the `x-next-pages` header, an extension of ours: see api/routes/sessions.py), so up to IN_FLIGHT pages
   * load at once; a server without it gets next_page followed one page at a time. Cursors stay opaque here.
   * A session that fits in one page is complete at once. When a longer one is still loading PARTIAL_AFTER_MS
   * after its newest page came in, that page is shown meanwhile (onPartial): the end of a session, where failures
   * usually are, is on screen early whatever its length, and a history that loads quickly is not drawn twice.
   */
  async history(onPartial, onProgress) {
    const path = `v1/sessions/${encodeURIComponent(this.sessionId)}/events`;
    const batch = new AbortController(); // one failed page ends the others
    const stop = () => batch.abort();
    this.signal.addEventListener("abort", stop, { once: true });
    const headers = { "x-next-pages": String(AHEAD) };
    const fetchPage = (page) =>
      getWithHeaders(path, { limit: PAGE, order: "desc", page }, { signal: batch.signal, headers });
    const cursors = []; // the pages after the newest one, in listing order (newest to oldest)
    const known = new Set();
    const learn = (res) => {
      const ahead = (res.headers.get("x-next-pages") || "").split(",").map((c) => c.trim());
      for (const c of [res.body.next_page, ...ahead]) {
        if (c && !known.has(c)) {
          known.add(c);
          cursors.push(c);
        }
      }
    };
    let timer = null;
    try {
      const newest = await fetchPage(undefined);
      learn(newest);
      const pages = new Map(); // cursor -> events, newest first
      let count = newest.body.data.length;
      if (cursors.length) {
        if (onPartial) timer = setTimeout(() => onPartial(newest.body.data.slice().reverse()), PARTIAL_AFTER_MS);
        if (onProgress) onProgress(count);
        await new Promise((resolve, reject) => {
          let next = 0;
          let inFlight = 0;
          const pump = () => {
            for (; inFlight < IN_FLIGHT && next < cursors.length; next++) {
              const cursor = cursors[next];
              inFlight += 1;
              fetchPage(cursor).then((res) => {
                inFlight -= 1;
                pages.set(cursor, res.body.data);
                count += res.body.data.length;
                learn(res);
                if (onProgress) onProgress(count);
                if (inFlight === 0 && next === cursors.length) resolve();
                else pump();
              }, reject);
            }
          };
          pump();
        });
      }
      const all = [];
      for (let i = cursors.length - 1; i >= -1; i--) {
        const data = i < 0 ? newest.body.data : pages.get(cursors[i]);
        for (let j = data.length - 1; j >= 0; j--) all.push(data[j]);
      }
      this.deliver(all);
    } finally {
      clearTimeout(timer);
      this.signal.removeEventListener("abort", stop);
      batch.abort(); // nothing is in flight by now unless a page failed
    }
  }

  /**
   * Loads history (calling onLoaded once it is complete; onPartial and onProgress as in history()) and then
   * follows the stream until aborted.
   */
  async run(onLoaded, { onPartial, onProgress } = {}) {
    let loaded = false;
    let delay = RETRY_MIN_MS;
    while (!this.signal.aborted) {
      const attempt = new AbortController(); // ends this attempt's stream when the attempt fails
      const stopAttempt = () => attempt.abort();
      this.signal.addEventListener("abort", stopAttempt, { once: true });
      const buffer = [];
      let merging = true;
      let opened;
      const openedP = new Promise((resolve) => {
        opened = resolve;
      });
      const done = this.live
        ? readStream(this.sessionId, {
            signal: attempt.signal,
            onOpen: () => opened(null),
            onEvent: (ev) => {
              if (merging) buffer.push(ev);
              else this.deliver([ev]);
            },
          }).then(
            () => null,
            (err) => err,
          )
        : Promise.resolve(null);
      // 1. the stream is open (or failed to open): from here on it sees every later append
      const openErr = this.live ? await Promise.race([openedP, done]) : null;
      if (isFatal(openErr)) {
        this.onState("stopped", openErr);
        return;
      }
      // 2. history (all of it the first time, else the missing tail), then what the stream buffered meanwhile
      try {
        if (!loaded) {
          await this.history(onPartial, onProgress);
          loaded = true;
          onLoaded();
        } else {
          this.deliver(await this.tail());
        }
        merging = false;
        this.deliver(buffer);
        if (!this.live) return;
        if (!openErr) {
          delay = RETRY_MIN_MS;
          this.onState("live");
        }
      } catch (err) {
        attempt.abort();
        if (this.signal.aborted) return;
        if (isFatal(err)) {
          this.onState("stopped", err);
          return;
        }
      }
      // 3. follow the stream until the server ends it (or it breaks), then go round again
      const err = await done;
      this.signal.removeEventListener("abort", stopAttempt);
      if (this.signal.aborted) return;
      if (isFatal(err)) {
        this.onState("stopped", err);
        return;
      }
      const last = this.trace.events[this.trace.events.length - 1];
      if (last && (last.type === "session.deleted" || last.type === "session.status_terminated")) {
        this.onState("ended");
        return;
      }
      this.reconnects += 1;
      this.onState("reconnecting", err && err.name !== "AbortError" ? err : null);
      await sleep(err ? delay : RETRY_MIN_MS, this.signal);
      if (err) delay = Math.min(RETRY_MAX_MS, delay * 2);
    }
  }
}

function isFatal(err) {
  return err instanceof ApiError && [401, 403, 404].includes(err.status);
}

// ---------------------------------------------------------------------------------------------------------------
// the page

/** Each outcome with its iterations' verdicts (from the trace) and its current result (from the session). */
function outcomesList(session, trace) {
  const outcomes = session.outcome_evaluations || [];
  if (!outcomes.length) return "—";
  const ends = trace ? trace.events.filter((e) => e.type === "span.outcome_evaluation_end") : [];
  return h(
    "ul.outcomes",
    outcomes.map((o) =>
      h(
        "li.outcome",
        { dataset: { outcome: o.outcome_id } },
        h("span.outcome-description", o.description || o.outcome_id),
        " ",
        verdictBadge(o.result),
        ` after ${fmtInt((o.iteration || 0) + 1)} iteration${o.iteration ? "s" : ""}`,
        h(
          "ol.outcome-iterations",
          ends
            .filter((e) => e.outcome_id === o.outcome_id)
            .map((e) =>
              h(
                "li.outcome-iteration",
                { dataset: { iteration: String(e.iteration) } },
                `Iteration ${fmtInt((e.iteration || 0) + 1)}: `,
                verdictBadge(e.result),
                e.explanation ? ` ${e.explanation}` : null,
              ),
            ),
        ),
      ),
    ),
  );
}

/** The session's resources: what each is and where the sandbox sees it (a repository's token is never shown). */
function resourcesList(session) {
  const resources = session.resources || [];
  if (!resources.length) return "—";
  const what = (r) => {
    if (r.type === "file") return ["file ", h("code", r.file_id)];
    if (r.type === "github_repository") {
      const at = r.checkout ? ` @ ${r.checkout.type} ${r.checkout.name || r.checkout.sha}` : "";
      return ["repository ", h("code", r.url), at];
    }
    return [`${r.type} `, h("code", r.name || r.memory_store_id || "")];
  };
  return h(
    "ul.resources",
    resources.map((r) =>
      h(
        "li.resource",
        { dataset: { resource: r.id || r.memory_store_id || "", type: r.type } },
        h("code", r.mount_path || "—"),
        ": ",
        what(r),
      ),
    ),
  );
}

/** The files the session wrote under /mnt/session/outputs, each a download link. */
async function outputsList(sessionId, signal) {
  const files = await getAll("v1/files", { scope_id: sessionId, limit: 1000 }, { signal });
  if (!files.length) return h("p.muted", "None yet.");
  return h(
    "ul.outputs",
    files.map((f) =>
      h(
        "li.output-file",
        { dataset: { file: f.id } },
        h(
          "a",
          {
            href: "#",
            onclick: (e) => {
              e.preventDefault();
              downloadFile(f.id, f.filename).catch((err) => announce(`Download failed: ${err.message}`));
            },
          },
          f.filename,
        ),
        ` (${fmtBytes(f.size_bytes)})`,
      ),
    ),
  );
}

function header(session, env, trace = null) {
  const agent = session.agent || {};
  const model = agent.model && (agent.model.id || agent.model);
  const cost = sessionCost(session);
  const u = session.usage || {};
  const cc = u.cache_creation || {};
  return dl([
    ["Status", h("span#session-status", statusBadge(session.status))],
    ["Title", session.title || "—"],
    [
      "Agent",
      agent.id
        ? h("a", { href: `#/agents/${encodeURIComponent(agent.id)}` }, `${agent.name || agent.id} v${agent.version}`)
        : "—",
    ],
    ["Model", model || "—"],
    [
      "Environment",
      h(
        "a",
        { href: `#/environments/${encodeURIComponent(session.environment_id)}` },
        env ? `${env.name} (${session.environment_id})` : session.environment_id,
      ),
    ],
    ["Created", time(session.created_at)],
    ["Updated", time(session.updated_at)],
    ["Active time", fmtMs((session.stats && session.stats.active_seconds) * 1000)],
    [
      "Tokens",
      `in ${fmtInt(u.input_tokens)} · out ${fmtInt(u.output_tokens)} · cache read ${fmtInt(u.cache_read_input_tokens)}` +
        ` · cache write ${fmtInt((cc.ephemeral_5m_input_tokens || 0) + (cc.ephemeral_1h_input_tokens || 0))}`,
    ],
    ["Cost", cost.estimated ? `${cost.text} (estimate)` : cost.text],
    ["Budget", h("span#session-budget", budgetUse(session.budget, session.usage) || "none")],
    ["Outcomes", h("div#session-outcomes", outcomesList(session, trace))],
    ["Resources", h("div#session-resources", resourcesList(session))],
    [
      "Metadata",
      Object.keys(session.metadata || {}).length
        ? h(
            "ul.inline",
            Object.entries(session.metadata).map(([k, v]) => h("li", h("code", `${k}=${v}`))),
          )
        : "—",
    ],
    ["Archived", session.archived_at ? time(session.archived_at) : "no"],
  ]);
}

export function notFound(main, err, what) {
  const title = main.querySelector("h1") || h("h1");
  title.textContent = `${what} not found`;
  main.replaceChildren(
    title,
    h("p", { role: "alert", class: "alert" }, err.message),
    h("p", h("a", { href: "#/sessions" }, "Back to sessions")),
  );
}

export async function sessionView(main, sessionId, { signal }) {
  const started = performance.now();
  const h1 = h("h1", "Session ", h("code", sessionId));
  const liveState = h("p#live-state.live-state", { role: "status" }, "Loading…");
  clear(main).append(h1, liveState);
  main.dataset.traceState = "loading";
  let session;
  try {
    session = await get(`v1/sessions/${encodeURIComponent(sessionId)}`, {}, { signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      notFound(main, err, "Session");
      main.dataset.traceState = "not-found";
      return;
    }
    throw err;
  }
  const agent = session.agent || {};
  const modelId = agent.model && (agent.model.id || agent.model);
  let env = null;
  const trace = new Trace(modelId);
  const headerSlot = h("section", { "aria-label": "Session details" }, header(session, env, trace));
  get(`v1/environments/${encodeURIComponent(session.environment_id)}`, {}, { signal }).then(
    (e) => {
      env = e;
      headerSlot.replaceChildren(header(session, env, trace));
    },
    () => {},
  );
  const traceRoot = h("div.trace-root");
  const outputsBody = h("div#session-outputs", "Loading…");
  const outputsSlot = h("section", { "aria-label": "Output files" }, h("h2", "Output files"), outputsBody);
  const refreshOutputs = () =>
    outputsList(sessionId, signal).then(
      (list) => outputsBody.replaceChildren(list),
      (err) => outputsBody.replaceChildren(h("p.muted", `Output files could not be listed: ${err.message}`)),
    );
  refreshOutputs();
  main.append(headerSlot, outputsSlot, traceRoot);
  let view = null; // built once the whole history is in; a partial view shows the newest page until then
  let partial = null;
  signal.addEventListener("abort", () => {
    if (view) view.destroy();
    if (partial) partial.view.destroy();
  });
  const painted = (fn) => requestAnimationFrame(() => setTimeout(fn, 0));
  const timing = { firstScreenMs: null, modelMs: null, traceMs: null, events: 0, turns: 0, partial: false };

  let refreshTimer = null;
  const refreshHeader = () => {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      try {
        session = await get(`v1/sessions/${encodeURIComponent(sessionId)}`, {}, { signal });
        headerSlot.replaceChildren(header(session, env, trace));
        if (session.status === "idle") refreshOutputs(); // outputs are collected when the session idles
      } catch {
        /* the trace stays; the header refreshes on the next event */
      }
    }, 500);
  };

  const live = session.status !== "terminated";
  const feed = new LiveFeed(sessionId, trace, {
    signal,
    live,
    onEvents: (added) => {
      if (!view) return; // history still loading: the view is built from the complete trace
      view.update(added);
      main.dataset.events = String(trace.size);
      if (added.some((a) => a.ev.type.startsWith("session.status_") || HEADER_EVENTS.has(a.ev.type))) {
        refreshHeader();
      }
    },
    onState: (state, err) => {
      const text = {
        live: "Live: new events appear as they happen.",
        reconnecting: `Connection lost${err ? ` (${err.message})` : ""}; reconnecting…`,
        ended: "The session has ended; no more events will arrive.",
        stopped: `Live updates stopped: ${err ? err.message : ""}`,
      }[state];
      liveState.textContent = text;
      liveState.dataset.state = state;
      main.dataset.reconnects = String(feed.reconnects);
    },
  });
  const onPartial = (newest) => {
    const pTrace = new Trace(modelId);
    for (const ev of newest) pTrace.add(ev);
    const root = h(
      "div.trace-root.partial",
      h("p.notice", { role: "status" }, `Showing the newest ${fmtInt(newest.length)} events; older events are loading…`),
    );
    main.append(root);
    traceRoot.hidden = true;
    partial = { root, view: new TraceView(root, pTrace) };
    const lastTurn = pTrace.turns[pTrace.turns.length - 1];
    if (lastTurn) partial.view.open(lastTurn);
    main.dataset.traceState = "partial";
    painted(() => {
      timing.firstScreenMs = performance.now() - started;
      timing.partial = true;
    });
  };
  const onProgress = (count) => {
    liveState.textContent = `Loading the trace: ${fmtInt(count)} events so far…`;
  };
  await feed.run(() => {
    // the whole history is in: replace the partial view, open the latest turn, record the time it took
    timing.modelMs = performance.now() - started; // every page fetched, the trace model built
    if (partial) {
      partial.view.destroy();
      partial.root.remove();
      partial = null;
    }
    traceRoot.hidden = false;
    headerSlot.replaceChildren(header(session, env, trace)); // the outcomes' iterations come from the trace
    view = new TraceView(traceRoot, trace);
    const lastTurn = trace.turns[trace.turns.length - 1];
    if (lastTurn) view.open(lastTurn);
    view.follow = true;
    main.dataset.events = String(trace.size);
    painted(() => {
      const ms = performance.now() - started;
      Object.assign(timing, { traceMs: ms, events: trace.size, turns: trace.turns.length });
      if (timing.firstScreenMs === null) timing.firstScreenMs = ms;
      window.__consoleTiming = timing; // read by bench/console_render.py and the browser tests
      window.__consoleTrace = trace;
      main.dataset.traceState = "complete";
      main.dataset.traceMs = ms.toFixed(1);
      if (!live) liveState.textContent = "The session has terminated; showing its full history.";
      announce(`Trace loaded: ${trace.size} events in ${trace.turns.length} turns`);
    });
  }, { onPartial, onProgress });
}
