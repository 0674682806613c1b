// Webhook endpoints and each endpoint's delivery log (GET /v1/organizations/webhooks[/<id>[/deliveries]]).

import { get } from "./api.js";
import { badge, clear, dl, fmtMs, h, time } from "./dom.js";
import { orNotFound, table } from "./know_how.js";

const enc = encodeURIComponent;
// The webhooks API wants its own beta besides the managed agents one.
const BETA = { "anthropic-beta": "managed-agents-2026-04-01,webhooks-2026-10-07" };

function stateBadge(state) {
  return badge(state, { enabled: "ok", delivered: "ok", pending: "warn", disabled: "error", failed: "error" }[state] || "muted");
}

export async function webhooksView(main, query, { signal }) {
  const title = h("h1", "Webhooks");
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const body = await get(
    "v1/organizations/webhooks",
    { limit: 100, after_id: query.get("after") || undefined },
    { signal, headers: BETA },
  );
  const rows = body.data.map((w) =>
    h(
      "tr",
      h("th", { scope: "row" }, h("a", { href: `#/webhooks/${enc(w.id)}` }, w.name || w.url), h("div", h("code.muted", w.id))),
      h("td", h("code", w.url)),
      h("td", stateBadge(w.state), w.disabled_reason ? h("div.muted", w.disabled_reason) : null),
      h("td", w.enabled_events.join(", ")),
      h("td", time(w.created_at)),
    ),
  );
  const more = body.has_more ? h("nav.pager", { "aria-label": "Pages" }, h("a", { href: `#/webhooks?after=${enc(body.last_id)}`, rel: "next" }, "Next page")) : null;
  main.replaceChildren(
    title,
    h("p.muted", "Endpoints your workspace's events are posted to, signed (Standard Webhooks)."),
    table(`${body.data.length} endpoints on this page`, ["Endpoint", "URL", "State", "Events", "Created"], rows),
    ...(more ? [more] : []), // (replaceChildren would write a null as "null")
  );
}

function attemptsText(attempts) {
  return attempts.map((a) => `${a.status_code ?? "no answer"} (${fmtMs(a.latency_ms)})`).join(", ");
}

export async function webhookView(main, endpointId, query, { signal }) {
  const title = h("h1", "Webhook ", h("code", endpointId));
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const endpoint = await orNotFound(main, title, "Webhook", ["#/webhooks", "Webhooks"], () =>
    get(`v1/organizations/webhooks/${enc(endpointId)}`, {}, { signal, headers: BETA }),
  );
  if (!endpoint) return;
  const log = await get(
    `v1/organizations/webhooks/${enc(endpointId)}/deliveries`,
    { limit: 50, page: query.get("page") || undefined },
    { signal, headers: BETA },
  );
  title.replaceChildren("Webhook ", endpoint.name || endpoint.url, " ", h("code", endpoint.id));
  const rows = log.data.map((d) => {
    const attempts = d.attempts || [];
    const last = attempts[attempts.length - 1];
    return h(
      "tr",
      h("th", { scope: "row" }, h("code", d.event.type), h("div", h("code.muted", d.event.id))),
      h("td", stateBadge(d.state)),
      h("td", String(attempts.length), attempts.length ? h("div.muted", attemptsText(attempts)) : null),
      h("td", last && last.error ? last.error : "—"),
      h("td", last ? time(last.attempted_at) : "—"),
      h("td", d.next_attempt_at ? time(d.next_attempt_at) : "—"),
    );
  });
  const next = log.next_page
    ? h("nav.pager", { "aria-label": "Pages" }, h("a", { href: `#/webhooks/${enc(endpointId)}?page=${enc(log.next_page)}`, rel: "next" }, "Next page"))
    : null;
  main.replaceChildren(
    title,
    h("p", h("a", { href: "#/webhooks" }, "All webhooks")),
    dl([
      ["URL", h("code", endpoint.url)],
      ["State", [stateBadge(endpoint.state), endpoint.disabled_reason ? ` ${endpoint.disabled_reason}` : ""]],
      ["Events", endpoint.enabled_events.join(", ")],
      ["Created", time(endpoint.created_at)],
    ]),
    h("h2", "Delivery log"),
    table(
      `${log.data.length} deliveries on this page, newest first`,
      ["Event", "State", "Attempts (status, latency)", "Last error", "Last attempt", "Next attempt"],
      rows,
    ),
    ...(next ? [next] : []),
  );
}
