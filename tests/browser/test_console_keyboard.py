"""Keyboard only: the skip link, tab order with a visible focus ring, Enter to sign in, to open a session from its
row, to expand a turn or an output, and Escape to close an expanded output again. (The console has no modal
dialogs; expanded outputs are the closable panels.)"""

from __future__ import annotations

from typing import Any

import anthropic

from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from tests.browser.conftest import Console
from tests.e2e.conftest import Server

# what the focused element is, whether it is on screen, and whether it shows a focus ring
FOCUSED = """() => {
    const el = document.activeElement;
    const label = el.labels && el.labels.length ? el.labels[0].textContent : '';
    const text = (el.getAttribute('aria-label') || label || el.textContent || el.value || '').trim();
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return {
        tag: el.tagName.toLowerCase(),
        text: text.replace(/\\s+/g, ' ').slice(0, 80),
        visible: box.width > 0 && box.height > 0,
        ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
    };
}"""


def _ev(type_: str, **payload: Any) -> NewEvent:
    return NewEvent(new_id("event"), type_, payload)


def _finished_session(server: Server, client: anthropic.Anthropic) -> tuple[str, str]:
    agent = client.beta.agents.create(name="kbd-agent", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="kbd-env")
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id, title="keyboard run").id
    start = _ev("span.model_request_start")
    use = _ev("agent.tool_use", name="bash", input={"command": "make test"}, evaluated_permission="allow")
    big = "\n".join(f"test {i} passed" for i in range(300))
    server.rt.events.append(
        sid,
        [
            _ev("user.message", content=[{"type": "text", "text": "run the tests"}]),
            _ev("session.status_running"),
            start,
            use,
            _ev("span.model_request_end", model_request_start_id=start.id, is_error=False, model_usage={}),
            _ev("agent.tool_result", tool_use_id=use.id, content=[{"type": "text", "text": big}]),
            _ev("agent.message", content=[{"type": "text", "text": "All 300 tests pass."}]),
            _ev("session.status_idle", stop_reason={"type": "end_turn"}),
        ],
    )
    return sid, big


def _tab_until(console: Console, wanted: str, *, limit: int = 60) -> list[dict[str, Any]]:
    """Press Tab until the focused element's text starts with `wanted`; every stop on the way is returned."""
    stops: list[dict[str, Any]] = []
    for _ in range(limit):
        console.page.keyboard.press("Tab")
        stop = console.page.evaluate(FOCUSED)
        stops.append(stop)
        if stop["text"].startswith(wanted):
            return stops
    raise AssertionError(f"{wanted!r} never got the focus; stops: {[s['text'] for s in stops]}")


def _from_top(console: Console) -> None:
    """Put the sequential focus navigation starting point at the top of the document, as after a fresh load."""
    console.page.evaluate(
        """() => {
            document.body.tabIndex = -1;
            document.body.focus();
            document.body.removeAttribute('tabindex');
        }"""
    )


def _texts(stops: list[dict[str, Any]]) -> list[str]:
    return [s["text"] for s in stops]


def test_keyboard_walk_through(console: Console, server: Server, client: anthropic.Anthropic) -> None:
    # Given a finished session with a large tool output
    sid, big = _finished_session(server, client)
    page = console.page
    # When the console is opened and Tab pressed: the skip link comes first, then the key field and the button
    console.open()
    page.get_by_label("API key").wait_for()
    _from_top(console)
    stops = _tab_until(console, "Sign in")
    assert _texts(stops) == ["Skip to content", "API key", "Sign in"]
    assert all(s["visible"] and s["ring"] for s in stops), stops
    # And the key is typed and Enter pressed in the field: signed in, on the sessions list
    page.keyboard.press("Shift+Tab")
    page.keyboard.type(server.admin_key)
    page.keyboard.press("Enter")
    page.get_by_role("navigation", name="Main").wait_for()
    page.locator(f'tr[data-session="{sid}"]').wait_for()

    # When the page is walked from the top with Tab
    _from_top(console)
    stops = _tab_until(console, sid)
    texts = _texts(stops)
    # Then the order follows the page: skip link, main navigation, sign out, search, filters, then the rows
    nav = ["Sessions", "Agents", "Environments", "Skills", "Memory", "Webhooks"]
    assert texts[: len(nav) + 3] == ["Skip to content", *nav, "Sign out", "Session id"]
    assert texts.index("Open") < texts.index("Apply filters") < texts.index("Reset") < len(texts) - 1
    # And every stop is on screen with a visible focus ring
    assert all(s["visible"] and s["ring"] for s in stops), repr([s for s in stops if not (s["visible"] and s["ring"])])

    # When Enter is pressed on the session's row link
    page.keyboard.press("Enter")
    console.wait_trace()
    # Then the trace opens and the focus is on its heading
    assert page.evaluate("document.activeElement.tagName") == "H1"
    assert sid in page.evaluate("document.activeElement.textContent")

    # When Tab reaches the latest turn (open) and Enter is pressed on it: it closes; Enter again opens it
    _tab_until(console, "Turn 1")  # the waterfall row's link comes first
    stops = _tab_until(console, "Turn 1")
    assert stops[-1]["tag"] == "summary" and stops[-1]["ring"]
    turn = page.locator("ol.turns > li details.turn").first
    page.keyboard.press("Enter")
    assert turn.get_attribute("open") is None
    page.keyboard.press("Enter")
    assert turn.get_attribute("open") is not None

    # When Tab reaches the large output and Enter is pressed on it
    stops = _tab_until(console, "bash output")
    assert stops[-1]["tag"] == "summary"
    result = page.locator('li.ev[data-type="agent.tool_result"]')
    page.keyboard.press("Enter")
    # Then the whole output is shown
    result.get_by_text("test 299 passed").wait_for()
    console.screenshot("keyboard-expanded")
    # And Escape closes it again and leaves the focus on its summary
    page.keyboard.press("Escape")
    assert result.locator("details.collapsible").get_attribute("open") is None
    assert page.evaluate(FOCUSED)["text"].startswith("bash output")
    # And Escape from its download button closes it too
    page.keyboard.press("Enter")
    result.get_by_text("test 299 passed").wait_for()
    stops = _tab_until(console, "Download bash output")
    page.keyboard.press("Escape")
    assert result.locator("details.collapsible").get_attribute("open") is None
    assert page.evaluate(FOCUSED)["text"].startswith("bash output")
    assert len(big.splitlines()) == 300


def test_skip_link_moves_the_focus_to_the_content_without_leaving_the_page(
    console: Console, server: Server, client: anthropic.Anthropic
) -> None:
    # Given a signed-in console on a session's trace
    sid, _ = _finished_session(server, client)
    console.sign_in(fragment=f"#/sessions/{sid}")
    console.wait_trace()
    page = console.page
    # When the skip link is reached with Tab from the top and followed with Enter
    _from_top(console)
    stops = _tab_until(console, "Skip to content")
    assert len(stops) == 1
    page.keyboard.press("Enter")
    # Then the focus is in the content, the route has not changed and the trace is still on screen
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.evaluate("location.hash") == f"#/sessions/{sid}"
    assert page.locator('main[data-trace-state="complete"]').count() == 1
    # And the next Tab goes on inside the content, not back to the navigation
    page.keyboard.press("Tab")
    assert page.evaluate("document.getElementById('main').contains(document.activeElement)")
