// The console shell: sign-in state, hash routing (#/sessions, #/sessions/<id>, #/agents[/<id>],
// #/environments[/<id>], #/skills[/<id>], #/memory_stores[/<id>[/memories/<id>]], #/webhooks[/<id>]) and one view at
// a time (the previous view's requests and stream are aborted).
// Ids and filters live in the URL fragment; the API key never does.

import { ApiError, auth } from "./api.js";
import { announce, clear, h } from "./dom.js";
import { memoryStoresView, memoryStoreView, memoryView, skillsView, skillView } from "./know_how.js";
import { sessionView } from "./session_view.js";
import { webhooksView, webhookView } from "./webhooks.js";
import {
  agentView,
  agentsView,
  environmentView,
  environmentsView,
  resetCaches,
  sessionsView,
  signInView,
} from "./views.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const whoami = document.getElementById("whoami");
let current = null; // AbortController of the view on screen

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(qs || "") };
}

function setChrome(signedIn, section) {
  nav.hidden = !signedIn;
  whoami.hidden = !signedIn;
  document.getElementById("key-hint").textContent = signedIn ? `Key ${auth.hint()}` : "";
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function signIn(message) {
  if (current) current.abort();
  current = null;
  auth.clear();
  resetCaches();
  setChrome(false);
  document.title = "Sign in · Managed Agents console";
  signInView(main, {
    message,
    onSignedIn: () => {
      if (!location.hash || location.hash === "#/" || location.hash === "#") location.hash = "#/sessions";
      else route();
    },
  });
}

async function route() {
  if (!auth.get()) {
    signIn();
    return;
  }
  if (current) current.abort();
  const ctl = new AbortController();
  current = ctl;
  const { parts, query } = parseHash();
  const section = parts[0] || "sessions";
  const hash = location.hash;
  setChrome(true, section);
  const ctx = { signal: ctl.signal };
  delete main.dataset.rendered;
  try {
    if (section === "sessions" && parts[1]) {
      document.title = `Session ${parts[1]} · Managed Agents console`;
      await sessionView(main, parts[1], ctx);
    } else if (section === "sessions") {
      document.title = "Sessions · Managed Agents console";
      await sessionsView(main, query, ctx);
    } else if (section === "agents" && parts[1]) {
      document.title = `Agent ${parts[1]} · Managed Agents console`;
      await agentView(main, parts[1], query, ctx);
    } else if (section === "agents") {
      document.title = "Agents · Managed Agents console";
      await agentsView(main, query, ctx);
    } else if (section === "environments" && parts[1]) {
      document.title = `Environment ${parts[1]} · Managed Agents console`;
      await environmentView(main, parts[1], ctx);
    } else if (section === "environments") {
      document.title = "Environments · Managed Agents console";
      await environmentsView(main, query, ctx);
    } else if (section === "skills" && parts[1]) {
      document.title = `Skill ${parts[1]} · Managed Agents console`;
      await skillView(main, parts[1], ctx);
    } else if (section === "skills") {
      document.title = "Skills · Managed Agents console";
      await skillsView(main, query, ctx);
    } else if (section === "memory_stores" && parts[1] && parts[2] === "memories" && parts[3]) {
      document.title = `Memory ${parts[3]} · Managed Agents console`;
      await memoryView(main, parts[1], parts[3], ctx);
    } else if (section === "memory_stores" && parts[1]) {
      document.title = `Memory store ${parts[1]} · Managed Agents console`;
      await memoryStoreView(main, parts[1], query, ctx);
    } else if (section === "memory_stores") {
      document.title = "Memory stores · Managed Agents console";
      await memoryStoresView(main, query, ctx);
    } else if (section === "webhooks" && parts[1]) {
      document.title = `Webhook ${parts[1]} · Managed Agents console`;
      await webhookView(main, parts[1], query, ctx);
    } else if (section === "webhooks") {
      document.title = "Webhooks · Managed Agents console";
      await webhooksView(main, query, ctx);
    } else {
      clear(main).append(h("h1", "Page not found"), h("p", h("a", { href: "#/sessions" }, "Sessions")));
    }
    // the view for this fragment is on screen (tests and automation wait for it; live views keep streaming)
    if (!ctl.signal.aborted) main.dataset.rendered = hash;
  } catch (err) {
    if (ctl.signal.aborted || (err && err.name === "AbortError")) return;
    if (err instanceof ApiError && err.status === 401) return; // handled by the unauthorized listener
    clear(main).append(
      h("h1", "Something went wrong"),
      h("p", { role: "alert", class: "alert" }, err && err.message ? err.message : String(err)),
    );
  }
}

window.addEventListener("console:unauthorized", (e) => {
  const err = e.detail;
  signIn(`Signed out: ${err && err.message ? err.message : "the API key was rejected"}.`);
});

window.addEventListener("hashchange", () => {
  announce("");
  route(); // views put their <h1> up synchronously and keep that element: move focus to it for screen readers
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
});

document.getElementById("sign-out").addEventListener("click", () => signIn("Signed out."));

// The skip link's `#main` would be taken for a route: move the focus to the content instead, route unchanged.
document.querySelector("a.skip").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

route();
