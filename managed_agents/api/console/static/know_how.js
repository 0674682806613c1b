// Skills (with their versions) and memory stores (their memories, and each memory's version history).

import { ApiError, get } from "./api.js";
import { clear, dl, fmtBytes, h, time } from "./dom.js";

export function alertBox(err) {
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

export function table(caption, columns, rows) {
  return h(
    "div.table-wrap",
    h(
      "table",
      h("caption", caption),
      h("thead", h("tr", columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", rows),
    ),
  );
}

export async function orNotFound(main, title, what, back, load) {
  try {
    return await load();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      title.textContent = `${what} not found`;
      main.replaceChildren(title, alertBox(err), h("p", h("a", { href: back[0] }, back[1])));
      return null;
    }
    throw err;
  }
}

function actor(a) {
  if (!a) return "—";
  if (a.type === "session_actor") return h("a", { href: `#/sessions/${encodeURIComponent(a.session_id)}` }, a.session_id);
  return a.api_key_id || a.user_id || a.service_account_id || a.type;
}

const enc = encodeURIComponent;

// -------------------------------------------------------------------------------------------------------------
// skills

export async function skillsView(main, query, { signal }) {
  const title = h("h1", "Skills");
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const body = await get("v1/skills", { limit: 50, page: query.get("page") || undefined }, { signal });
  main.replaceChildren(
    title,
    h("p.muted", "Folders of instructions and scripts an agent loads when relevant (skills/<name>/ in a sandbox)."),
    table(
      `${body.data.length} skills on this page`,
      ["Skill", "Latest version", "Source", "Created", "Updated"],
      body.data.map((s) =>
        h(
          "tr",
          h("th", { scope: "row" }, h("a", { href: `#/skills/${enc(s.id)}` }, s.display_name), h("div", h("code.muted", s.id))),
          h("td", h("code", s.latest_version_id)),
          h("td", (s.source && s.source.type) || "—"),
          h("td", time(s.created_at)),
          h("td", time(s.updated_at)),
        ),
      ),
    ),
    pager(body.next_page, query, "skills"),
  );
}

export async function skillView(main, skillId, { signal }) {
  const title = h("h1", "Skill ", h("code", skillId));
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const skill = await orNotFound(main, title, "Skill", ["#/skills", "Skills"], () =>
    get(`v1/skills/${enc(skillId)}`, {}, { signal }),
  );
  if (!skill) return;
  const versions = await get(`v1/skills/${enc(skillId)}/versions`, { limit: 100 }, { signal });
  title.replaceChildren("Skill ", skill.display_name, " ", h("code", skill.id));
  main.replaceChildren(
    title,
    dl([
      ["Source", (skill.source && skill.source.type) || "—"],
      ["Latest version", h("code", skill.latest_version_id)],
      ["Created", time(skill.created_at)],
      ["Updated", time(skill.updated_at)],
    ]),
    h("h2", "Versions"),
    table(
      `${versions.data.length} versions, newest first`,
      ["Version", "Name", "Description", "Created"],
      versions.data.map((v) =>
        h(
          "tr",
          h("th", { scope: "row" }, h("code", v.id), v.id === skill.latest_version_id ? " (latest)" : ""),
          h("td", h("code", v.name)),
          h("td", v.description),
          h("td", time(v.created_at)),
        ),
      ),
    ),
  );
}

// -------------------------------------------------------------------------------------------------------------
// memory stores

export async function memoryStoresView(main, query, { signal }) {
  const title = h("h1", "Memory stores");
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const body = await get(
    "v1/memory_stores",
    { limit: 50, page: query.get("page") || undefined, include_archived: "true" },
    { signal },
  );
  main.replaceChildren(
    title,
    h("p.muted", "Stores agents read and write across sessions (mounted at /mnt/memory/<name> in a sandbox)."),
    table(
      `${body.data.length} memory stores on this page`,
      ["Store", "Description", "Created", "Updated", "Archived"],
      body.data.map((s) =>
        h(
          "tr",
          h("th", { scope: "row" }, h("a", { href: `#/memory_stores/${enc(s.id)}` }, s.name), h("div", h("code.muted", s.id))),
          h("td", s.description || "—"),
          h("td", time(s.created_at)),
          h("td", time(s.updated_at)),
          h("td", s.archived_at ? time(s.archived_at) : "no"),
        ),
      ),
    ),
    pager(body.next_page, query, "memory_stores"),
  );
}

export async function memoryStoreView(main, storeId, query, { signal }) {
  const title = h("h1", "Memory store ", h("code", storeId));
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const store = await orNotFound(main, title, "Memory store", ["#/memory_stores", "Memory stores"], () =>
    get(`v1/memory_stores/${enc(storeId)}`, {}, { signal }),
  );
  if (!store) return;
  const memories = await get(
    `v1/memory_stores/${enc(storeId)}/memories`,
    { limit: 100, page: query.get("page") || undefined },
    { signal },
  );
  title.replaceChildren("Memory store ", store.name, " ", h("code", store.id));
  main.replaceChildren(
    title,
    dl([
      ["Description", store.description || "—"],
      ["Created", time(store.created_at)],
      ["Updated", time(store.updated_at)],
      ["Archived", store.archived_at ? time(store.archived_at) : "no"],
    ]),
    h("h2", "Memories"),
    table(
      `${memories.data.length} memories on this page, by path`,
      ["Path", "Size", "SHA-256", "Updated"],
      memories.data.map((m) =>
        h(
          "tr",
          h(
            "th",
            { scope: "row" },
            h("a", { href: `#/memory_stores/${enc(storeId)}/memories/${enc(m.id)}` }, h("code", m.path)),
          ),
          h("td", fmtBytes(m.content_size_bytes)),
          h("td", h("code.muted", (m.content_sha256 || "").slice(0, 12))),
          h("td", time(m.updated_at)),
        ),
      ),
    ),
    pager(memories.next_page, query, `memory_stores/${enc(storeId)}`),
  );
}

export async function memoryView(main, storeId, memoryId, { signal }) {
  const title = h("h1", "Memory ", h("code", memoryId));
  clear(main).append(title, h("p.muted", { role: "status" }, "Loading…"));
  const back = [`#/memory_stores/${enc(storeId)}`, "Memory store"];
  const memory = await orNotFound(main, title, "Memory", back, () =>
    get(`v1/memory_stores/${enc(storeId)}/memories/${enc(memoryId)}`, { view: "full" }, { signal }),
  );
  if (!memory) return;
  const versions = await get(
    `v1/memory_stores/${enc(storeId)}/memory_versions`,
    { memory_id: memoryId, view: "full", limit: 20 },
    { signal },
  );
  title.replaceChildren("Memory ", h("code", memory.path));
  main.replaceChildren(
    title,
    h("p", h("a", { href: back[0] }, "Back to the store")),
    dl([
      ["Id", h("code", memory.id)],
      ["Size", fmtBytes(memory.content_size_bytes)],
      ["SHA-256", h("code", memory.content_sha256)],
      ["Current version", h("code", memory.memory_version_id)],
      ["Created", time(memory.created_at)],
      ["Updated", time(memory.updated_at)],
    ]),
    h("h2", "Content"),
    h("pre.content", memory.content || ""),
    h("h2", "Version history"),
    table(
      `${versions.data.length} versions, newest first`,
      ["Version", "Operation", "Path", "By", "Created", "Content"],
      versions.data.map((v) =>
        h(
          "tr",
          h("th", { scope: "row" }, h("code", v.id)),
          h("td", v.operation),
          h("td", v.path ? h("code", v.path) : "—"),
          h("td", actor(v.created_by)),
          h("td", time(v.created_at)),
          h("td", v.redacted_at ? `redacted ${new Date(v.redacted_at).toLocaleString()}` : h("pre.content", v.content ?? "—")),
        ),
      ),
    ),
  );
}
