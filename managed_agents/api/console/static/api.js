// The public JSON API, as the official SDK speaks it (shared/api-reference.md §1): Bearer key, bracketed array
// params, `page`/`next_page` cursors, the error envelope, and the SSE stream read with fetch() (EventSource
// cannot send an Authorization header, and the key must never be put in a URL).

// This module is served at <prefix>/console/static/api.js; the API lives at <prefix>/v1/...
const API_ROOT = new URL("../../", import.meta.url);
const KEY_STORAGE = "managed-agents-console:api-key";
const HEADERS = {
  "anthropic-version": "2026-10-21",
  "anthropic-beta": "managed-agents-2026-04-01",
  Accept: "application/json",
};

export class ApiError extends Error {
  constructor(status, type, message, requestId, code) {
    super(message);
    this.status = status;
    this.type = type;
    this.requestId = requestId;
    this.code = code;
  }
}

export const auth = {
  get: () => sessionStorage.getItem(KEY_STORAGE),
  set: (key) => sessionStorage.setItem(KEY_STORAGE, key),
  clear: () => sessionStorage.removeItem(KEY_STORAGE),
  hint(key = auth.get()) {
    if (!key) return "";
    return key.length > 16 ? `…${key.slice(-4)}` : "…"; // enough to tell keys apart, too little to matter
  },
};

export function apiUrl(path, params = {}) {
  const url = new URL(path.replace(/^\//, ""), API_ROOT);
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => url.searchParams.append(`${name}[]`, v));
    else url.searchParams.set(name, String(value));
  }
  return url;
}

function requestHeaders(key) {
  return { ...HEADERS, Authorization: `Bearer ${key}` };
}

async function errorFrom(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON: a proxy error page */
  }
  const err = body && body.error ? body.error : {};
  const message = err.message || `HTTP ${res.status} ${res.statusText}`;
  return new ApiError(
    res.status,
    err.type || "api_error",
    message,
    (body && body.request_id) || res.headers.get("request-id"),
    err.details && err.details.error_code,
  );
}

function unauthorized(err) {
  window.dispatchEvent(new CustomEvent("console:unauthorized", { detail: err }));
}

/** GET one JSON document. `key` overrides the stored key (sign-in checks a key before keeping it). */
export async function get(path, params = {}, options = {}) {
  return (await getWithHeaders(path, params, options)).body;
}

/** GET one JSON document, with the response headers: `{body, headers}`. `headers` adds request headers. */
export async function getWithHeaders(path, params = {}, { signal, key = auth.get(), quiet = false, headers } = {}) {
  if (!key) {
    const err = new ApiError(401, "authentication_error", "not signed in");
    if (!quiet) unauthorized(err);
    throw err;
  }
  const res = await fetch(apiUrl(path, params), {
    headers: { ...requestHeaders(key), ...headers }, // (a view may add a beta: webhooks)
    signal,
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401 && !quiet) unauthorized(err);
    throw err;
  }
  return { body: await res.json(), headers: res.headers };
}

/** Every item of a cursor-paged list (follows next_page), at most `max`. */
export async function getAll(path, params = {}, { signal, max = 10000, onPage } = {}) {
  const out = [];
  let page;
  for (;;) {
    const body = await get(path, { ...params, page }, { signal });
    out.push(...body.data);
    if (onPage) onPage(body.data, out);
    page = body.next_page;
    if (!page || out.length >= max) return out;
  }
}

function parseMessage(block) {
  const msg = { event: null, data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") msg.event = value;
    else if (field === "data") msg.data.push(value);
  }
  return msg;
}

/**
 * Read a session's live event stream until the server ends it. Calls onOpen() once the response is 200 and
 * onEvent(event) for every event; resolves on a clean end, rejects with ApiError on an HTTP or in-band error.
 * Framing per api-reference §5: messages without `event:` and `ping` are skipped, `event: error` is a failure.
 */
export async function readStream(sessionId, { signal, onOpen, onEvent }) {
  const key = auth.get();
  const res = await fetch(apiUrl(`v1/sessions/${encodeURIComponent(sessionId)}/events/stream`), {
    headers: requestHeaders(key),
    signal,
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401) unauthorized(err);
    throw err;
  }
  if (onOpen) onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const msg = parseMessage(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (!msg.event || msg.event === "ping" || msg.data.length === 0) continue;
      const data = JSON.parse(msg.data.join("\n"));
      if (msg.event === "error") {
        const e = data.error || {};
        throw new ApiError(0, e.type || "api_error", e.message || "stream error", data.request_id);
      }
      onEvent(data);
    }
  }
}

/** Download a file's content with the stored key (a plain link cannot send it) and hand it to the browser. */
export async function downloadFile(fileId, filename) {
  const key = auth.get();
  const res = await fetch(apiUrl(`v1/files/${encodeURIComponent(fileId)}/content`), {
    headers: requestHeaders(key),
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (!res.ok) throw await errorFrom(res);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename.split("/").pop() || fileId;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
