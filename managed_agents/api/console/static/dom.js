// Small DOM helpers: element builder, formatting, incremental (chunked) lists and collapsible long text.

/** h("a.cls#id", {href}, child...) — children may be strings, nodes, arrays, null/false (skipped). */
export function h(tag, attrs, ...children) {
  const m = /^([a-z0-9-]+)((?:[.#][\w-]+)*)$/i.exec(tag);
  const el = document.createElement(m ? m[1] : tag);
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function announce(text) {
  const el = document.getElementById("announcer");
  if (el) el.textContent = text;
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function fmtDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateFmt.format(d);
}

export function time(iso) {
  return h("time", { datetime: iso || "" }, fmtDate(iso));
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function fmtInt(n) {
  return (n || 0).toLocaleString("en-US");
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function badge(text, kind = text) {
  return h("span", { class: `badge badge-${String(kind).replace(/[^\w-]/g, "_")}` }, text);
}

export function statusBadge(status) {
  return badge(status || "unknown", `status-${status}`);
}

/** A scrollable definition list of key/value pairs. */
export function dl(pairs) {
  const el = h("dl.kv");
  for (const [k, v] of pairs) {
    if (v === undefined) continue;
    el.append(h("dt", k), h("dd", v === null || v === "" ? "—" : v));
  }
  return el;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

/** Text of content blocks (text, tool results); non-text blocks are summarised. */
export function blocksText(content) {
  if (content === undefined || content === null) return "";
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return json(content);
  return content
    .map((b) => {
      if (!b || typeof b !== "object") return String(b);
      if (b.type === "text") return b.text || "";
      if (b.type === "image") return `[image${b.source && b.source.media_type ? ` ${b.source.media_type}` : ""}]`;
      if (b.type === "document") return `[document${b.title ? ` ${b.title}` : ""}]`;
      if (b.type === "redacted") return "[redacted]";
      if (b.type === "search_result") return `[search result: ${b.title || b.source || ""}]\n${blocksText(b.content)}`;
      return json(b);
    })
    .join("\n");
}

export const LARGE_CHARS = 2000;
export const LARGE_LINES = 24;
const PREVIEW_CHARS = 600;

/**
 * Long text collapsed behind a <details>, with a preview and a download button (Blob URL, nothing leaves the
 * browser). Short text is shown as is. `label` names the content for screen readers and the file name.
 */
export function collapsible(text, { label, fileName, open, force } = {}) {
  const lines = text.split("\n").length;
  const large = text.length > LARGE_CHARS || lines > LARGE_LINES;
  if (!large && !open && !force) return h("pre.content", text);
  const size = fmtBytes(new Blob([text]).size);
  const details = h("details.collapsible", { dataset: { large: String(large) } });
  const body = h("div.collapsible-body");
  let filled = false;
  details.addEventListener("toggle", () => {
    if (!details.open || filled) return;
    filled = true; // render the full text only when asked: keeps 5,000-event traces light
    body.append(h("pre.content", text));
  });
  const download = h(
    "button",
    {
      type: "button",
      class: "link",
      onclick: () => {
        const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
        const a = h("a", { href: url, download: fileName || "output.txt" });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      },
    },
    `Download ${label || "output"} (${size})`,
  );
  details.append(
    h("summary", `${label || "Output"}: ${size}, ${fmtInt(lines)} lines`),
    body,
  );
  const preview = large ? h("pre.content.preview", { "aria-hidden": "true" }, text.slice(0, PREVIEW_CHARS) + "…") : null;
  const wrap = h("div.collapsible-wrap", details, preview, download);
  details.addEventListener("toggle", () => {
    if (preview) preview.hidden = details.open;
  });
  if (open) details.open = true;
  return wrap;
}

/**
 * Incremental list: renders `items` into `container` `chunk` at a time; the next chunk is rendered when a
 * sentinel at the end scrolls near the viewport. `ensure(i)` renders up to item i (for jumps). New items can be
 * pushed later with `push(item)`: they render at once if the list is fully rendered.
 */
export class LazyList {
  constructor(container, items, render, { chunk = 100, rootMargin = "1200px" } = {}) {
    this.container = container;
    this.items = items;
    this.render = render;
    this.chunk = chunk;
    this.rendered = 0;
    this.sentinel = h("li.sentinel", { "aria-hidden": "true" });
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) this.renderMore();
      },
      { rootMargin },
    );
    this.renderMore();
  }

  renderMore() {
    const end = Math.min(this.items.length, this.rendered + this.chunk);
    this.renderTo(end);
  }

  renderTo(end) {
    if (end <= this.rendered) return;
    const frag = document.createDocumentFragment();
    for (let i = this.rendered; i < end; i++) frag.append(this.render(this.items[i], i));
    this.rendered = end;
    this.sentinel.remove();
    this.container.append(frag);
    if (this.rendered < this.items.length) {
      this.container.append(this.sentinel);
      this.observer.observe(this.sentinel);
    } else {
      this.observer.disconnect();
    }
  }

  ensure(index) {
    this.renderTo(Math.min(this.items.length, index + 1));
  }

  /** Call after items were appended to the array. */
  grew() {
    if (this.rendered === this.items.length - 1 || this.rendered >= this.items.length - this.chunk) {
      this.renderTo(this.items.length);
    } else if (!this.sentinel.isConnected) {
      this.container.append(this.sentinel);
      this.observer.observe(this.sentinel);
    }
  }

  get complete() {
    return this.rendered >= this.items.length;
  }

  destroy() {
    this.observer.disconnect();
  }
}
