"""Trace console render time: a 5,000-event session vs a 500-event session, in headless chromium, same run.

Both sessions are written straight into the event store (runtime.events) of an in-process server, in two shapes:
`turns` (10 events per turn: 50 vs 500 turns) and `single_turn` (one long agent turn of tool calls, the latest
turn opened in full). Each sample loads the console page for the session from scratch (about:blank first) and
waits for `main[data-trace-state="complete"]`, which the console sets only once the whole trace is rendered and
usable: every events.list page fetched (newest first, up to 4 at once with the server's `x-next-pages` cursors),
the trace model built from all of them, the usage figures, error list, waterfall and turn list built from the
complete model, the latest turn opened, and a frame painted (requestAnimationFrame, then a task). Older turns and
the events of closed turns are rendered as they scroll into view (not counted: they are not on screen).
Reported per shape, medians over REPEAT alternating samples:

* trace_ms: from the session view starting (modules loaded, key known) to that complete state: the goal figure;
* model_ms: from the session view starting to every page fetched and the trace model built (trace_ms minus
  this is building the view and painting it);
* first_screen_ms: from the session view starting to the first trace on screen: the complete trace, or, when
  the history is still loading 400 ms after its newest page came in, that newest page shown meanwhile;
* page_ms: from navigation start to the trace complete (adds HTML, CSS and module loading);
* pages, max_in_flight: events.list requests of one load and how many of them were in flight at once (counts);
* dom_nodes: elements in the document when complete (a count: what incremental rendering keeps out of the DOM);
* ratio = large / small for each time (goal: trace_ratio <= 2).

Run: ``uv run --frozen python bench/console_render.py`` (needs /usr/bin/chromium).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
from typing import Any

from _common import emit, stack

from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id

SMALL, LARGE = 500, 5_000
REPEAT = int(os.environ.get("CONSOLE_BENCH_REPEAT", "7"))
CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")
KEY_STORAGE = "managed-agents-console:api-key"


def _ev(type_: str, **payload: Any) -> NewEvent:
    return NewEvent(new_id("event"), type_, payload)


def _request(output: str, tool_input: dict[str, Any] | None) -> list[NewEvent]:
    start = _ev("span.model_request_start")
    evs = [start, _ev("agent.thinking")]
    use = None
    if tool_input is not None:
        use = _ev("agent.tool_use", name="bash", input=tool_input, evaluated_permission="allow")
        evs.append(use)
    else:
        evs.append(_ev("agent.message", content=[{"type": "text", "text": output}]))
    usage = {
        "input_tokens": 1800,
        "output_tokens": 120,
        "cache_read_input_tokens": 9000,
        "cache_creation_input_tokens": 0,
    }
    evs.append(_ev("span.model_request_end", model_request_start_id=start.id, is_error=False, model_usage=usage))
    if use is not None:
        text = output * (40 if len(evs) % 7 == 0 else 1)
        evs.append(_ev("agent.tool_result", tool_use_id=use.id, content=[{"type": "text", "text": text}]))
    return evs


def turns_shape(n: int) -> list[NewEvent]:
    """10 events per turn: message, running, a request with a tool call and its result, a final answer, idle."""
    out: list[NewEvent] = []
    i = 0
    while len(out) < n:
        i += 1
        turn = [_ev("user.message", content=[{"type": "text", "text": f"step {i}: run the checks"}])]
        turn.append(_ev("session.status_running"))
        turn += _request(f"ok {i}\n" * 3, {"command": f"make check-{i}"})[:-1]  # start, thinking, use, end
        turn.append(_ev("agent.tool_result", tool_use_id=turn[-2].id, content=[{"type": "text", "text": "passed"}]))
        turn += [e for e in _request(f"All checks of step {i} passed.", None) if e.type != "agent.thinking"]
        turn.append(_ev("session.status_idle", stop_reason={"type": "end_turn"}))
        out += turn
    return out[:n]


def single_turn_shape(n: int) -> list[NewEvent]:
    """One user message, then model requests with tool calls until n events, then an answer and idle."""
    out = [
        _ev("user.message", content=[{"type": "text", "text": "fix every failing test"}]),
        _ev("session.status_running"),
    ]
    i = 0
    while len(out) < n - 6:
        i += 1
        out += _request(f"test_{i} output line\n" * 4, {"command": f"pytest -k test_{i}"})
    out += _request("All tests pass now.", None)
    out.append(_ev("session.status_idle", stop_reason={"type": "end_turn"}))
    return out[:n]


def fill(st: Any, session_id: str, events: list[NewEvent]) -> None:
    for i in range(0, len(events), 1000):
        st.rt.events.append(session_id, events[i : i + 1000])


def sample(page: Any, url: str) -> dict[str, float]:
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_selector('main[data-trace-state="complete"]', timeout=120_000)
    return page.evaluate(
        """() => {
            const lists = performance.getEntriesByType('resource').filter((e) => /\\/events(\\?|$)/.test(e.name));
            const inFlight = (t) => lists.filter((e) => e.startTime <= t && t < e.responseEnd).length;
            return {
                trace_ms: window.__consoleTiming.traceMs,
                model_ms: window.__consoleTiming.modelMs,
                first_screen_ms: window.__consoleTiming.firstScreenMs,
                page_ms: performance.now(),
                events: window.__consoleTiming.events,
                pages: lists.length,
                max_in_flight: Math.max(0, ...lists.map((e) => inFlight(e.startTime))),
                dom_nodes: document.getElementsByTagName('*').length,
            };
        }"""
    )


def main() -> int:
    exe = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if exe is None:
        emit(bench="console_render", skipped=f"chromium not found at {CHROMIUM}")
        return 0
    from playwright.sync_api import sync_playwright

    with stack() as st, sync_playwright() as pw:
        client = st.client()
        agent_id, env_id = st.agent_env(client)
        sessions: dict[tuple[str, int], str] = {}
        for shape, build in (("turns", turns_shape), ("single_turn", single_turn_shape)):
            for n in (SMALL, LARGE):
                sid = client.beta.sessions.create(agent=agent_id, environment_id=env_id, title=f"{shape} {n}").id
                fill(st, sid, build(n))
                sessions[(shape, n)] = sid
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(f"sessionStorage.setItem({json.dumps(KEY_STORAGE)}, {json.dumps(st.admin_key)})")
        page = context.new_page()
        for shape in ("turns", "single_turn"):
            urls = {n: f"{st.url}/console/#/sessions/{sessions[(shape, n)]}" for n in (SMALL, LARGE)}
            for n in (SMALL, LARGE):  # warm-up: HTTP cache, SQLite pages, JIT
                sample(page, urls[n])
            got: dict[int, list[dict[str, float]]] = {SMALL: [], LARGE: []}
            for r in range(REPEAT):
                order = (SMALL, LARGE) if r % 2 == 0 else (LARGE, SMALL)
                for n in order:
                    got[n].append(sample(page, urls[n]))
            med = {n: {k: statistics.median(s[k] for s in got[n]) for k in got[n][0]} for n in got}
            for n in (SMALL, LARGE):
                assert med[n]["events"] == n, (shape, n, med[n])
            times = {}
            for key in ("trace_ms", "model_ms", "first_screen_ms", "page_ms"):
                name = key.removesuffix("_ms")
                times[f"small_{key}"] = round(med[SMALL][key], 1)
                times[f"large_{key}"] = round(med[LARGE][key], 1)
                times[f"{name}_ratio"] = round(med[LARGE][key] / med[SMALL][key], 2)
            emit(
                bench="console_render",
                shape=shape,
                repeat=REPEAT,
                small_events=SMALL,
                large_events=LARGE,
                **times,
                small_pages=int(med[SMALL]["pages"]),
                large_pages=int(med[LARGE]["pages"]),
                large_max_in_flight=int(med[LARGE]["max_in_flight"]),
                small_dom_nodes=int(med[SMALL]["dom_nodes"]),
                large_dom_nodes=int(med[LARGE]["dom_nodes"]),
                goal_ratio=2.0,
            )
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
