"""Long histories: the `x-next-pages` cursors of events.list, the console loading pages concurrently with them (and
one after another without them), the newest page shown meanwhile when loading is slow, and the waterfall of a
turn with thousands of calls."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from tests.browser.conftest import Console
from tests.e2e.conftest import Server

HEADERS = {"anthropic-version": "2026-10-21", "anthropic-beta": "managed-agents-2026-04-01"}


def _ev(type_: str, **payload: Any) -> NewEvent:
    return NewEvent(new_id("event"), type_, payload)


def _turns(n: int) -> list[NewEvent]:
    """Whole turns of 6 events (message, running, request start/end, answer, idle), then cut to n events."""
    out: list[NewEvent] = []
    i = 0
    while len(out) < n:
        i += 1
        start = _ev("span.model_request_start")
        usage = {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        out += [
            _ev("user.message", content=[{"type": "text", "text": f"question {i}"}]),
            _ev("session.status_running"),
            start,
            _ev("span.model_request_end", model_request_start_id=start.id, is_error=False, model_usage=usage),
            _ev("agent.message", content=[{"type": "text", "text": f"answer {i}"}]),
            _ev("session.status_idle", stop_reason={"type": "end_turn"}),
        ]
    return out[:n]


def _session_with(server: Server, client: anthropic.Anthropic, events: list[NewEvent]) -> str:
    agent = client.beta.agents.create(name="history", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="history-env")
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    for i in range(0, len(events), 1000):
        server.rt.events.append(sid, events[i : i + 1000])
    return sid


@pytest.fixture
def http(server: Server) -> httpx2.Client:
    return httpx2.Client(
        base_url=server.url, timeout=10, headers={**HEADERS, "authorization": f"Bearer {server.admin_key}"}
    )


def _page(http: httpx2.Client, sid: str, **params: Any) -> httpx2.Response:
    headers = params.pop("headers", {})
    resp = http.get(f"/v1/sessions/{sid}/events", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp


def test_next_pages_header_names_every_following_page(
    http: httpx2.Client, server: Server, client: anthropic.Anthropic
) -> None:
    # Given a session of 2,500 events
    events = _turns(2500)
    sid = _session_with(server, client, events)
    for limit, pages in ((1000, 3), (700, 4)):
        # When its newest page is listed with x-next-pages
        first = _page(http, sid, limit=limit, order="desc", headers={"x-next-pages": "8"})
        cursors = first.headers["x-next-pages"].split(",")
        # Then the header names the cursors of every following page, the first one being next_page
        assert len(cursors) == pages - 1
        assert cursors[0] == first.json()["next_page"]
        # And those pages, fetched in any order, hold every event exactly once, newest first
        got = {c: _page(http, sid, limit=limit, order="desc", page=c).json()["data"] for c in reversed(cursors)}
        ids = [e["id"] for e in first.json()["data"]] + [e["id"] for c in cursors for e in got[c]]
        assert ids == [e.id for e in reversed(events)]
    # And fewer cursors are given when fewer are asked for; the last page gets none
    one = _page(http, sid, limit=1000, order="desc", headers={"x-next-pages": "1"})
    assert one.headers["x-next-pages"] == one.json()["next_page"]
    last = _page(http, sid, limit=1000, order="desc", page=cursors_of(http, sid)[-1], headers={"x-next-pages": "8"})
    assert last.json()["next_page"] is None and "x-next-pages" not in last.headers


def cursors_of(http: httpx2.Client, sid: str) -> list[str]:
    return _page(http, sid, limit=1000, order="desc", headers={"x-next-pages": "32"}).headers["x-next-pages"].split(",")


def test_next_pages_only_for_unfiltered_newest_first_listings(
    http: httpx2.Client, server: Server, client: anthropic.Anthropic
) -> None:
    # Given a session of 1,500 events
    sid = _session_with(server, client, _turns(1500))
    ask = {"x-next-pages": "4"}
    # Then oldest-first, type-filtered and time-filtered listings get no cursors, nor a request without the header
    assert "x-next-pages" not in _page(http, sid, limit=1000, order="asc", headers=ask).headers
    assert "x-next-pages" not in _page(http, sid, limit=10, order="desc", **{"types[]": "agent.message"}).headers
    filtered = _page(http, sid, limit=10, order="desc", headers=ask, **{"types[]": "agent.message"})
    assert filtered.json()["next_page"] and "x-next-pages" not in filtered.headers
    timed = _page(http, sid, limit=10, order="desc", headers=ask, **{"created_at[gte]": "2000-01-01T00:00:00Z"})
    assert timed.json()["next_page"] and "x-next-pages" not in timed.headers
    assert "x-next-pages" not in _page(http, sid, limit=1000, order="desc").headers


@pytest.mark.parametrize("value", ["0", "33", "-1", "many", ""])
def test_next_pages_rejects_a_bad_count(
    http: httpx2.Client, server: Server, client: anthropic.Anthropic, value: str
) -> None:
    sid = _session_with(server, client, _turns(12))
    resp = http.get(f"/v1/sessions/{sid}/events", params={"order": "desc"}, headers={"x-next-pages": value})
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "x-next-pages" in body["error"]["message"]


def test_next_pages_of_another_workspace_session_is_not_found(http: httpx2.Client, server: Server) -> None:
    resp = http.get("/v1/sessions/sesn_nope/events", params={"order": "desc"}, headers={"x-next-pages": "4"})
    assert resp.status_code == 404 and "x-next-pages" not in resp.headers


def _history_requests(console: Console) -> list[dict[str, Any]]:
    return list(
        console.page.evaluate(
            """() => performance.getEntriesByType('resource')
                .filter((e) => /\\/events(\\?|$)/.test(e.name))
                .map((e) => ({ url: e.name, start: e.startTime, end: e.responseEnd }))"""
        )
    )


def _max_in_flight(reqs: list[dict[str, Any]]) -> int:
    return max(sum(1 for o in reqs if o["start"] <= r["start"] < o["end"]) for r in reqs)


def _trace_ids(console: Console) -> list[str]:
    """Every event id of the trace model, in log order (what the console built, rendered or not)."""
    return list(console.page.evaluate("() => window.__consoleTrace.events.map((e) => e.id)"))


def test_long_history_loads_its_pages_concurrently(
    console: Console, server: Server, client: anthropic.Anthropic
) -> None:
    # Given a session of 4,200 events (5 pages)
    events = _turns(4200)
    sid = _session_with(server, client, events)
    # When its trace is opened
    console.sign_in(fragment=f"#/sessions/{sid}")
    console.wait_trace()
    # Then the trace holds every event once, in log order
    assert console.page.locator("main").get_attribute("data-events") == "4200"
    assert _trace_ids(console) == [e.id for e in events]
    # And the 4 older pages were requested together after the newest one, each once
    reqs = _history_requests(console)
    assert len(reqs) == 5 and len({r["url"] for r in reqs}) == 5
    assert "page=" not in reqs[0]["url"] and all("page=" in r["url"] for r in reqs[1:])
    assert _max_in_flight(reqs[1:]) == 4
    # And the latest turn is open with its answer, the turn count and the figures are those of the whole session
    page = console.page
    assert page.locator("ol.turns > li").first.locator("details").get_attribute("open") is not None
    page.get_by_text("answer 700", exact=True).wait_for()
    assert "700" in page.get_by_role("region", name="Usage").inner_text()


def test_history_without_the_cursor_header_follows_next_page(
    console: Console, server: Server, client: anthropic.Anthropic
) -> None:
    # Given a session of 2,600 events, behind a proxy that drops the x-next-pages response header
    events = _turns(2600)
    sid = _session_with(server, client, events)

    def strip(route: Any) -> None:
        resp = route.fetch()
        headers = {k: v for k, v in resp.headers.items() if k.lower() != "x-next-pages"}
        route.fulfill(response=resp, headers=headers)

    console.page.route("**/v1/sessions/*/events?*", strip)
    # When its trace is opened
    console.sign_in(fragment=f"#/sessions/{sid}")
    console.wait_trace()
    # Then every page was still loaded, one after another, and every event is there once, in order
    reqs = _history_requests(console)
    assert len(reqs) == 3 and _max_in_flight(reqs) == 1
    assert _trace_ids(console) == [e.id for e in events]


def test_slow_history_shows_the_newest_page_meanwhile(
    console: Console, server: Server, client: anthropic.Anthropic
) -> None:
    # Given a session of 2,400 events, and a network where every older page takes 1.5 s
    events = _turns(2400)
    sid = _session_with(server, client, events)
    console.page.add_init_script(
        """(() => {
            const real = window.fetch;
            window.fetch = (input, init) => {
                const url = String(input instanceof Request ? input.url : input);
                const slow = url.includes('/events?') && url.includes('page=');
                return slow ? new Promise((r) => setTimeout(r, 1500)).then(() => real(input, init)) : real(input, init);
            };
        })()"""
    )
    # When its trace is opened
    console.sign_in(fragment=f"#/sessions/{sid}")
    page = console.page
    # Then the newest 1,000 events are shown while the rest loads, with a notice and the loading progress
    page.locator('main[data-trace-state="partial"]').wait_for(timeout=5_000)
    assert "Showing the newest 1,000 events" in page.locator(".trace-root.partial .notice").inner_text()
    assert "answer 400" in page.locator(".trace-root.partial").inner_text()  # the last turn, opened
    assert "events so far" in page.locator("#live-state").inner_text()
    console.screenshot("partial")
    # And then the complete trace replaces it
    console.wait_trace()
    assert page.locator(".trace-root.partial").count() == 0
    assert _trace_ids(console) == [e.id for e in events]
    timing = page.evaluate("window.__consoleTiming")
    assert timing["partial"] is True and timing["firstScreenMs"] < timing["traceMs"]


def test_fast_history_is_drawn_once(console: Console, server: Server, client: anthropic.Anthropic) -> None:
    # Given a session of 2,000 events on a fast network
    sid = _session_with(server, client, _turns(2000))
    # When its trace is opened
    console.sign_in(fragment=f"#/sessions/{sid}")
    console.wait_trace()
    # Then no partial view was drawn before the complete one
    timing = console.page.evaluate("window.__consoleTiming")
    assert timing["partial"] is False and timing["firstScreenMs"] == timing["traceMs"]


def test_waterfall_of_a_turn_with_thousands_of_calls_stays_small(
    console: Console, server: Server, client: anthropic.Anthropic
) -> None:
    # Given one turn of 1,500 model requests with tool calls (all appended at once: the same processed_at)
    events = [_ev("user.message", content=[{"type": "text", "text": "go"}]), _ev("session.status_running")]
    for i in range(1500):
        start = _ev("span.model_request_start")
        use = _ev("agent.tool_use", name="bash", input={"command": f"echo {i}"}, evaluated_permission="allow")
        events += [
            start,
            use,
            _ev("span.model_request_end", model_request_start_id=start.id, is_error=False, model_usage={}),
            _ev("agent.tool_result", tool_use_id=use.id, content=[{"type": "text", "text": str(i)}]),
        ]
    events.append(_ev("session.status_idle", stop_reason={"type": "end_turn"}))
    sid = _session_with(server, client, events)
    # When its trace is opened
    console.sign_in(fragment=f"#/sessions/{sid}")
    console.wait_trace()
    # Then its waterfall row draws one box per kind instead of 3,000, each telling how many calls it stands for
    row = console.page.locator("ol.waterfall li.wf-row").first
    titles = row.locator(".seg").evaluate_all("els => els.map((e) => e.title)")
    assert len(titles) == 2, titles
    times = "\N{MULTIPLICATION SIGN}"
    assert any(t.startswith(f"model {times}1,500") for t in titles)
    assert any(t.startswith(f"tool {times}1,500 bash") for t in titles)


def test_coalesce_merges_only_boxes_that_touch_at_the_drawn_scale(console: Console) -> None:
    # Given the console's trace module
    console.sign_in()
    result = console.page.evaluate(
        """async () => {
            const { coalesce } = await import('./static/trace.js');
            const seg = (kind, start, end, extra = {}) => ({ kind, start, end, ...extra });
            // 1,000 model calls of 9 ms, 1 ms apart, over 10 s: merged at 400 slots (25 ms)
            const dense = Array.from({ length: 1000 }, (_, i) => seg('model', i * 10, i * 10 + 9));
            // two model calls 4 s apart, an error between them, a tool call inside the first one
            const sparse = [
                seg('model', 0, 1000), seg('tool', 100, 200, { name: 'bash' }),
                seg('model', 2000, 2100, { isError: true }), seg('model', 5000, 6000),
            ];
            return { dense: coalesce(dense, 10000), sparse: coalesce(sparse, 6000) };
        }"""
    )
    # Then touching boxes of one kind become one, with their count and busy time
    assert len(result["dense"]) == 1
    assert result["dense"][0]["count"] == 1000 and result["dense"][0]["busy"] == 9000
    assert (result["dense"][0]["start"], result["dense"][0]["end"]) == (0, 9999)
    # And boxes far apart, of other kinds or in error are kept apart
    assert [(s["kind"], s["start"], s["count"]) for s in result["sparse"]] == [
        ("model", 0, 1),
        ("tool", 100, 1),
        ("model", 2000, 1),
        ("model", 5000, 1),
    ]
