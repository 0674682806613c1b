// Sign-in, the sessions list, agents (versions and diff) and environments.

import { ApiError, auth, get, getAll } from "./api.js";
import { canonical, changedFields, diffLines } from "./diff.js";
import { badge, clear, collapsible, dl, fmtInt, h, json, statusBadge, time } from "./dom.js";
import { sessionCost } from "./pricing.js";

const STATUSES = ["idle", "running", "rescheduling", "terminated"];

function alertBox(err) {
  const extra = err instanceof ApiError && err.requestId ? ` (request ${err.requestId})` : "";
  return h("p", { role: "alert", class: "alert" }, `${err.message}${extra}`);
}

function pager(next, query, route) {
  const nav = h("nav.pager", { "aria-label": "Pages" });
  if (query.get("page")) {
    nav.append(h("button", { type: "button", onclick: () => history.back() }, "Previous page"), " ");
    const first = new URLSearchParams(query);
    first.delete("page");
    nav.append(h("a", { href: `#/${route}?${first}` }, "First page"), " ");
  }
  if (next) {
    const q = new URLSearchParams(query);
    q.set("page", next);
    nav.append(h("a", { href: `#/${route}?${q}`, rel: "next" }, "Next page"));
  }
  return nav;
}

// ---------------------------------------------------------------------------------------------------------------
// sign-in

export function signInView(main, { message, onSignedIn }) {
  const input = h("input#api-key", {
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-help",
  });
  const status = h("div#sign-in-status");
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form.sign-in",
    { "aria-labelledby": "sign-in-h", novalidate: true },
    h("h1#sign-in-h", "Sign in"),
    h("label", { for: "api-key" }, "API key"),
    input,
    h(
      "p#api-key-help.muted",
      "The key stays in this browser tab (sessionStorage) and is sent only as an Authorization header to this " +
        "server. You see the sessions, agents and environments of the key's workspace.",
    ),
    button,
    status,
  );
  if (message) status.append(h("p", { role: "alert", class: "alert" }, message));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    status.replaceChildren();
    if (!key) {
      status.append(h("p", { role: "alert", class: "alert" }, "Enter an API key."));
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      await get("v1/sessions", { limit: 1 }, { key, quiet: true });
      auth.set(key);
      input.value = "";
      onSignedIn();
    } catch (err) {
      status.append(alertBox(err));
      input.focus();
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  clear(main).append(form);
  input.focus();
}

// ---------------------------------------------------------------------------------------------------------------
// sessions list

let envNames = null;

async function environmentNames(signal) {
  if (!envNames) {
    const envs = await getAll("v1/environments", { limit: 100, include_archived: true }, { signal, max: 1000 });
    envNames = new Map(envs.map((e) => [e.id, e.name]));
  }
  return envNames;
}

export function resetCaches() {
  envNames = null;
}

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function parseMeta(text) {
  const out = [];
  for (const part of (text || "").split(",")) {
    const s = part.trim();
    if (!s) continue;
    const i = s.indexOf("=");
    out.push(i < 0 ? [s, null] : [s.slice(0, i).trim(), s.slice(i + 1).trim()]);
  }
  return out;
}

function metaMatches(session, wanted) {
  const md = session.metadata || {};
  return wanted.every(([k, v]) => (v === null ? k in md : md[k] === v));
}

function filtersForm(query, agents) {
  const statuses = new Set((query.get("status") || "").split(",").filter(Boolean));
  const agentSel = h(
    "select#f-agent",
    h("option", { value: "" }, "Any agent"),
    agents.map((a) => h("option", { value: a.id, selected: query.get("agent") === a.id }, `${a.name} (${a.id})`)),
  );
  const from = h("input#f-from", { type: "datetime-local", value: localInput(query.get("from")) });
  const to = h("input#f-to", { type: "datetime-local", value: localInput(query.get("to")) });
  const meta = h("input#f-meta", { type: "text", value: query.get("meta") || "", placeholder: "team=search, env" });
  const archived = h("input#f-archived", { type: "checkbox", checked: query.get("archived") === "1" });
  const form = h(
    "form.filters",
    { role: "search", "aria-label": "Filter sessions" },
    h(
      "fieldset",
      h("legend", "Status"),
      STATUSES.map((s) =>
        h(
          "label.check",
          h("input", { type: "checkbox", name: "status", value: s, checked: statuses.has(s) }),
          ` ${s}`,
        ),
      ),
    ),
    h("div.field", h("label", { for: "f-agent" }, "Agent"), agentSel),
    h("div.field", h("label", { for: "f-from" }, "Created from"), from),
    h("div.field", h("label", { for: "f-to" }, "Created until"), to),
    h(
      "div.field",
      h("label", { for: "f-meta" }, "Metadata"),
      meta,
      h("small.muted", "key=value or key, comma separated; filters the listed page"),
    ),
    h("label.check", archived, " Include archived"),
    h("div.actions", h("button", { type: "submit" }, "Apply filters"), " ", h("a", { href: "#/sessions" }, "Reset")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    const st = [...form.querySelectorAll("input[name=status]:checked")].map((i) => i.value);
    if (st.length) q.set("status", st.join(","));
    if (agentSel.value) q.set("agent", agentSel.value);
    if (from.value) q.set("from", new Date(from.value).toISOString());
    if (to.value) q.set("to", new Date(to.value).toISOString());
    if (meta.value.trim()) q.set("meta", meta.value.trim());
    if (archived.checked) q.set("archived", "1");
    location.hash = `#/sessions${q.toString() ? `?${q}` : ""}`;
  });
  return form;
}

function searchForm() {
  const input = h("input#find-id", { type: "search", placeholder: "sesn_…", autocomplete: "off", spellcheck: "false" });
  const form = h(
    "form.find",
    { role: "search", "aria-label": "Open a session by id" },
    h("label", { for: "find-id" }, "Session id"),
    input,
    h("button", { type: "submit" }, "Open"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const id = input.value.trim();
    if (id) location.hash = `#/sessions/${encodeURIComponent(id)}`;
  });
  return form;
}

async function errorCell(cell, session, signal) {
  try {
    const body = await get(
      `v1/sessions/${encodeURIComponent(session.id)}/events`,
      { types: ["session.error"], order: "desc", limit: 1 },
      { signal },
    );
    const ev = body.data[0];
    if (ev) {
      const e = ev.error || {};
      const retry = e.retry_status && e.retry_status.type;
      cell.replaceChildren(
        h(
          "a.badge.badge-error",
          { href: `#/sessions/${encodeURIComponent(session.id)}`, title: e.message || "" },
          `error: ${e.type || "error"}${retry ? ` (${retry})` : ""}`,
        ),
      );
    } else {
      cell.replaceChildren(h("span.muted", "none"));
    }
  } catch {
    cell.replaceChildren(h("span.muted", "?"));
  }
}

export async function sessionsView(main, query, { signal }) {
  const title = h("h1", "Sessions");
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const agents = await getAll("v1/agents", { limit: 100, include_archived: true }, { signal, max: 500 });
  const envs = await environmentNames(signal);
  const wantedMeta = parseMeta(query.get("meta"));
  const params = {
    limit: wantedMeta.length ? 100 : 20,
    page: query.get("page") || undefined,
    statuses: (query.get("status") || "").split(",").filter(Boolean),
    agent_id: query.get("agent") || undefined,
    "created_at[gte]": query.get("from") || undefined,
    "created_at[lte]": query.get("to") || undefined,
    include_archived: query.get("archived") === "1" ? "true" : undefined,
  };
  let body;
  try {
    body = await get("v1/sessions", params, { signal });
  } catch (err) {
    main.replaceChildren(title, searchForm(), filtersForm(query, agents), alertBox(err));
    return;
  }
  const rows = wantedMeta.length ? body.data.filter((s) => metaMatches(s, wantedMeta)) : body.data;
  const tbody = h("tbody");
  for (const s of rows) {
    const agent = s.agent || {};
    const u = s.usage || {};
    const cc = u.cache_creation || {};
    const cost = sessionCost(s);
    const errCell = h("td.errors", h("span.muted", "…"));
    tbody.append(
      h(
        "tr",
        { dataset: { session: s.id } },
        h(
          "th",
          { scope: "row" },
          h("a", { href: `#/sessions/${encodeURIComponent(s.id)}` }, h("code", s.id)),
          s.title ? h("div.title", s.title) : null,
          s.archived_at ? badge("archived") : null,
        ),
        h("td", statusBadge(s.status)),
        h(
          "td",
          agent.id
            ? h("a", { href: `#/agents/${encodeURIComponent(agent.id)}` }, `${agent.name || agent.id} v${agent.version}`)
            : "—",
        ),
        h("td", envs.get(s.environment_id) || h("code", s.environment_id)),
        h("td", time(s.created_at)),
        h("td", time(s.updated_at)),
        h(
          "td.num",
          `${fmtInt(u.input_tokens)} / ${fmtInt(u.output_tokens)}`,
          h(
            "div.muted",
            `cache ${fmtInt(u.cache_read_input_tokens)} r / ${fmtInt(
              (cc.ephemeral_5m_input_tokens || 0) + (cc.ephemeral_1h_input_tokens || 0),
            )} w`,
          ),
        ),
        h("td.num", { title: cost.estimated ? "estimate from the console's price table" : null }, cost.text),
        errCell,
      ),
    );
    errorCell(errCell, s, signal);
  }
  const table = h(
    "table.sessions",
    h(
      "caption",
      `${rows.length} session${rows.length === 1 ? "" : "s"} on this page` +
        (wantedMeta.length ? ` matching the metadata filter (of ${body.data.length} listed)` : ""),
    ),
    h(
      "thead",
      h(
        "tr",
        ["Session", "Status", "Agent", "Environment", "Created", "Updated", "Tokens in / out", "Cost", "Errors"].map(
          (c) => h("th", { scope: "col" }, c),
        ),
      ),
    ),
    tbody,
  );
  main.replaceChildren(
    title,
    searchForm(),
    filtersForm(query, agents),
    h("div.table-wrap", table),
    pager(body.next_page, query, "sessions"),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// agents

function modelName(m) {
  return (m && (m.id || m)) || "—";
}

export async function agentsView(main, query, { signal }) {
  const title = h("h1", "Agents");
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const body = await get(
    "v1/agents",
    { limit: 50, page: query.get("page") || undefined, include_archived: "true" },
    { signal },
  );
  const table = h(
    "table",
    h("caption", `${body.data.length} agents on this page`),
    h(
      "thead",
      h(
        "tr",
        ["Agent", "Model", "Version", "Tools", "Updated", "Archived"].map((c) => h("th", { scope: "col" }, c)),
      ),
    ),
    h(
      "tbody",
      body.data.map((a) =>
        h(
          "tr",
          h(
            "th",
            { scope: "row" },
            h("a", { href: `#/agents/${encodeURIComponent(a.id)}` }, a.name),
            h("div", h("code.muted", a.id)),
          ),
          h("td", modelName(a.model)),
          h("td.num", String(a.version)),
          h("td.num", String((a.tools || []).length)),
          h("td", time(a.updated_at)),
          h("td", a.archived_at ? time(a.archived_at) : "no"),
        ),
      ),
    ),
  );
  main.replaceChildren(title, h("div.table-wrap", table), pager(body.next_page, query, "agents"));
}

function renderDiff(a, b) {
  const lines = diffLines(canonical(a).split("\n"), canonical(b).split("\n"));
  const added = lines.filter((l) => l.op === "add").length;
  const removed = lines.filter((l) => l.op === "del").length;
  const fields = changedFields(a, b);
  const pre = h("pre.diff", { "aria-label": `Diff of version ${a.version} and version ${b.version}` });
  for (const l of lines) {
    if (l.op === "add") pre.append(h("ins", `+ ${l.text}\n`));
    else if (l.op === "del") pre.append(h("del", `- ${l.text}\n`));
    else pre.append(h("span.same", `  ${l.text}\n`));
  }
  return h(
    "div.diff-wrap",
    h(
      "p#diff-summary",
      { role: "status" },
      `Version ${a.version} → ${b.version}: ${added} line${added === 1 ? "" : "s"} added, ${removed} removed.`,
      fields.length ? ` Changed fields: ${fields.join(", ")}.` : " No differences.",
    ),
    pre,
  );
}

export async function agentView(main, agentId, query, { signal }) {
  const title = h("h1", "Agent ", h("code", agentId));
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  let agent;
  try {
    agent = await get(`v1/agents/${encodeURIComponent(agentId)}`, {}, { signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      title.textContent = "Agent not found";
      main.replaceChildren(title, alertBox(err), h("p", h("a", { href: "#/agents" }, "Agents")));
      return;
    }
    throw err;
  }
  const versions = await getAll(`v1/agents/${encodeURIComponent(agentId)}/versions`, { limit: 100 }, { signal });
  versions.sort((x, y) => x.version - y.version);
  const nums = versions.map((v) => v.version);
  const latest = nums[nums.length - 1] ?? agent.version;
  const defA = Number(query.get("a")) || (nums.length > 1 ? nums[nums.length - 2] : latest);
  const defB = Number(query.get("b")) || latest;
  const selA = h("select#diff-a", nums.map((n) => h("option", { value: n, selected: n === defA }, `v${n}`)));
  const selB = h("select#diff-b", nums.map((n) => h("option", { value: n, selected: n === defB }, `v${n}`)));
  const out = h("div#diff-out");
  const compare = h(
    "form.compare",
    { "aria-labelledby": "cmp-h" },
    h("h2#cmp-h", "Compare versions"),
    h("div.field", h("label", { for: "diff-a" }, "From version"), selA),
    h("div.field", h("label", { for: "diff-b" }, "To version"), selB),
    h("button", { type: "submit" }, "Show diff"),
    out,
  );
  const show = async () => {
    out.replaceChildren(h("p.muted", "Loading…"));
    try {
      // each version fetched as the SDK does: GET /v1/agents/{id}?version=N
      const [a, b] = await Promise.all(
        [selA.value, selB.value].map((v) => get(`v1/agents/${encodeURIComponent(agentId)}`, { version: v }, { signal })),
      );
      out.replaceChildren(renderDiff(a, b));
    } catch (err) {
      out.replaceChildren(alertBox(err));
    }
  };
  compare.addEventListener("submit", (e) => {
    e.preventDefault();
    history.replaceState(null, "", `#/agents/${encodeURIComponent(agentId)}?a=${selA.value}&b=${selB.value}`);
    show();
  });
  const versionsTable = h(
    "table",
    h("caption", `${versions.length} version${versions.length === 1 ? "" : "s"}`),
    h(
      "thead",
      h("tr", ["Version", "Updated", "Model", "Tools", "Definition"].map((c) => h("th", { scope: "col" }, c))),
    ),
    h(
      "tbody",
      versions
        .slice()
        .reverse()
        .map((v) =>
          h(
            "tr",
            h("th", { scope: "row" }, `v${v.version}`),
            h("td", time(v.updated_at)),
            h("td", modelName(v.model)),
            h("td.num", String((v.tools || []).length)),
            h(
              "td",
              collapsible(json(v), { label: `Version ${v.version}`, fileName: `${agentId}-v${v.version}.json`, force: true }),
            ),
          ),
        ),
    ),
  );
  title.replaceChildren("Agent ", agent.name, " ", h("code", agent.id));
  main.replaceChildren(
    title,
    dl([
      ["Latest version", String(agent.version)],
      ["Model", modelName(agent.model)],
      ["Description", agent.description || "—"],
      ["Created", time(agent.created_at)],
      ["Updated", time(agent.updated_at)],
      ["Archived", agent.archived_at ? time(agent.archived_at) : "no"],
      ["Sessions", h("a", { href: `#/sessions?agent=${encodeURIComponent(agent.id)}` }, "Sessions of this agent")],
    ]),
    compare,
    h("section", { "aria-labelledby": "versions-h" }, h("h2#versions-h", "Versions"), h("div.table-wrap", versionsTable)),
  );
  if (nums.length > 1 || query.get("a")) show();
}

// ---------------------------------------------------------------------------------------------------------------
// environments

function networking(cfg) {
  const n = cfg && cfg.networking;
  if (!n) return "—";
  if (n.type !== "limited") return n.type;
  const hosts = (n.allowed_hosts || []).join(", ");
  return `limited${hosts ? `: ${hosts}` : ""}${n.allow_mcp_servers ? ", MCP servers" : ""}${
    n.allow_package_managers ? ", package managers" : ""
  }`;
}

function packages(cfg) {
  const p = cfg && cfg.packages;
  if (!p) return "—";
  const parts = Object.entries(p)
    .filter(([k, v]) => k !== "type" && Array.isArray(v) && v.length)
    .map(([k, v]) => `${k}: ${v.join(" ")}`);
  return parts.length ? parts.join("; ") : "—";
}

export async function environmentsView(main, query, { signal }) {
  const title = h("h1", "Environments");
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const body = await get(
    "v1/environments",
    { limit: 50, page: query.get("page") || undefined, include_archived: "true" },
    { signal },
  );
  const table = h(
    "table",
    h("caption", `${body.data.length} environments on this page`),
    h(
      "thead",
      h(
        "tr",
        ["Environment", "Type", "Networking", "Packages", "Created", "Updated", "Archived"].map((c) =>
          h("th", { scope: "col" }, c),
        ),
      ),
    ),
    h(
      "tbody",
      body.data.map((e) =>
        h(
          "tr",
          h(
            "th",
            { scope: "row" },
            h("a", { href: `#/environments/${encodeURIComponent(e.id)}` }, e.name),
            h("div", h("code.muted", e.id)),
          ),
          h("td", (e.config && e.config.type) || "—"),
          h("td", networking(e.config)),
          h("td", packages(e.config)),
          h("td", time(e.created_at)),
          h("td", time(e.updated_at)),
          h("td", e.archived_at ? time(e.archived_at) : "no"),
        ),
      ),
    ),
  );
  main.replaceChildren(
    title,
    h("p.muted", "Environments are not versioned by the API: each shows its current configuration."),
    h("div.table-wrap", table),
    pager(body.next_page, query, "environments"),
  );
}

export async function environmentView(main, envId, { signal }) {
  const title = h("h1", "Environment ", h("code", envId));
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  let env;
  try {
    env = await get(`v1/environments/${encodeURIComponent(envId)}`, {}, { signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      title.textContent = "Environment not found";
      main.replaceChildren(
        title,
        alertBox(err),
        h("p", h("a", { href: "#/environments" }, "Environments")),
      );
      return;
    }
    throw err;
  }
  title.replaceChildren("Environment ", env.name, " ", h("code", env.id));
  main.replaceChildren(
    title,
    dl([
      ["Type", (env.config && env.config.type) || "—"],
      ["Networking", networking(env.config)],
      ["Packages", packages(env.config)],
      ["Description", env.description || "—"],
      ["Scope", env.scope || "—"],
      ["Created", time(env.created_at)],
      ["Updated", time(env.updated_at)],
      ["Archived", env.archived_at ? time(env.archived_at) : "no"],
    ]),
    h("h2", "Configuration"),
    h("pre.content", json({ config: env.config, metadata: env.metadata })),
  );
}
