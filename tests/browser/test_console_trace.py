"""The session trace: turns, model requests, tools and their results, errors, the waterfall, and live updates."""

from __future__ import annotations

import threading
from typing import Any

import anthropic

from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.browser.conftest import Console
from tests.e2e.conftest import Server, all_events, wait_idle, wait_until

WEATHER_TOOL = {
    "type": "custom",
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _msg(text: str) -> list[dict[str, Any]]:
    return [{"type": "user.message", "content": [{"type": "text", "text": text}]}]


def _session(client: anthropic.Anthropic, tools: list[Any] | None = None, **kw: Any) -> str:
    agent = client.beta.agents.create(name="tracer", model="claude-sonnet-4-6", tools=tools or [])
    env = client.beta.environments.create(name="trace-env", config={"type": kw.pop("env_type", "cloud")})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, **kw).id


def _newest_turn_first(history: list[Any]) -> list[str]:
    """Event ids as the console lists them: turns newest first, events in log order inside a turn."""
    turns: list[list[str]] = [[]]
    for e in history:
        turns[-1].append(e.id)
        if e.type == "session.status_idle" and e.stop_reason.type != "requires_action":
            turns.append([])
    return [i for turn in reversed(turns) for i in turn]


def _rendered_ids(console: Console) -> list[str]:
    return list(console.page.locator("li.ev").evaluate_all("els => els.map(e => e.id.slice(3))"))


def test_finished_session_trace_with_tool_result(
    console: Console, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a finished session: thinking, a custom tool call answered with a large output, then an answer
    sid = _session(client, [WEATHER_TOOL], title="weather run")
    model_server.push(
        {
            "content": [
                {"type": "thinking", "thinking": "need weather", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
            "usage": {"input_tokens": 500, "output_tokens": 40, "cache_read_input_tokens": 100},
            "delay_ms": 120,
        },
        {"content": [{"type": "text", "text": "It is sunny in Oslo."}], "delay_ms": 80},
    )
    client.beta.sessions.events.send(sid, events=_msg("weather in Oslo?"))
    events = wait_idle(client, sid)
    use = next(e for e in events if e.type == "agent.custom_tool_use")
    big = "\n".join(f"line {i}: sunny, 21C, wind 3 m/s" for i in range(400))
    client.beta.sessions.events.send(
        sid,
        events=[
            {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": use.id,
                "content": [{"type": "text", "text": big}],
            }
        ],
    )
    history = wait_idle(client, sid, count=2)
    # When the trace is opened
    console.sign_in(fragment=f"#/sessions/{sid}")
    console.wait_trace()
    page = console.page
    main = page.locator("main")
    # Then it holds every event once, in one turn (the requires_action idle does not end it)
    assert main.get_attribute("data-events") == str(len(history))
    assert page.locator("ol.turns > li").count() == 1
    assert _rendered_ids(console) == [e.id for e in history]
    text = main.inner_text()
    # And the model requests show latency and tokens including cache reads
    end = page.locator('li.ev[data-type="span.model_request_end"]').first
    end_text = end.inner_text()
    assert "Request #1" in end_text and "in 500" in end_text and "out 40" in end_text and "cache read 100" in end_text
    assert " ms" in end_text or " s" in end_text
    # And thinking, messages, the tool call with its input, and the waiting time are there
    assert "Thinking" in text and "Let me check." in text and "It is sunny in Oslo." in text
    assert '"city": "Oslo"' in page.locator(f"#ev-{use.id}").inner_text()
    wf = page.locator("ol.waterfall li.wf-row").first.inner_text()
    assert "model" in wf and "waiting" in wf
    assert page.locator("ol.waterfall .seg-model").count() == 2
    assert page.locator("ol.waterfall .seg-wait").count() == 1
    # And the large tool output is collapsed, with a preview and a download button
    result = page.locator('li.ev[data-type="user.custom_tool_result"]')
    assert result.locator("details.collapsible").get_attribute("open") is None
    assert result.get_by_role("button", name="Download get_weather output").is_visible()
    assert "line 399" not in result.inner_text()
    console.screenshot("finished-collapsed")
    # When the result is expanded
    result.locator("details.collapsible > summary").click()
    # Then the full output is shown
    result.get_by_text("line 399: sunny").wait_for()
    console.screenshot("finished-expanded")
    # And the download carries the full output
    with page.expect_download() as dl:
        result.get_by_role("button", name="Download get_weather output").click()
    path = dl.value.path()
    assert path is not None and open(path, encoding="utf-8").read() == big


def test_live_session_events_arrive_without_loss_or_repeats(
    console: Console, server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given an idle session open in the console (streams last 2 s on this server: the console reconnects)
    sid = _session(client)
    console.sign_in(fragment=f"#/sessions/{sid}")
    console.wait_trace()
    page = console.page
    page.locator('#live-state[data-state="live"]').wait_for()
    assert page.locator("main").get_attribute("data-events") == "0"
    # When a turn runs
    model_server.push({"content": [{"type": "text", "text": "first answer"}], "delay_ms": 300})
    client.beta.sessions.events.send(sid, events=_msg("first question"))
    # Then its events arrive live
    page.get_by_text("first answer").wait_for()
    console.screenshot("live-first-turn")
    # When the stream is cut and stays down while more happens
    page.route("**/events/stream*", lambda route: route.abort())
    page.locator('#live-state[data-state="reconnecting"]').wait_for(timeout=10_000)
    model_server.push("second answer", "third answer")
    client.beta.sessions.events.send(sid, events=_msg("second question"))
    wait_idle(client, sid, count=2)
    # And then comes back (a stream that writes while the history is being read)
    page.unroute("**/events/stream*")
    writer = threading.Thread(target=lambda: client.beta.sessions.events.send(sid, events=_msg("third question")))
    writer.start()
    writer.join(10)
    history = wait_idle(client, sid, count=3)
    page.get_by_text("third answer").wait_for(timeout=15_000)
    # Then every event is shown exactly once, in log order, after the reconnects
    page.wait_for_function(f"() => document.querySelector('main').dataset.events === '{len(history)}'")
    page.get_by_role("button", name="Expand all turns").click()
    wait_until(lambda: len(_rendered_ids(console)) >= len(history))
    ids = _rendered_ids(console)
    assert ids == _newest_turn_first(history)
    assert int(page.locator("main").get_attribute("data-reconnects") or 0) >= 1
    assert page.locator("ol.turns > li").count() == 3
    # And the header followed the session
    page.locator("#session-status").get_by_text("idle").wait_for()
    console.screenshot("live-after-reconnect")
    assert _newest_turn_first(all_events(client, sid)) == ids


def test_every_kind_of_event_is_rendered(console: Console, server: Server, client: anthropic.Anthropic) -> None:
    # Given a log with MCP calls, a denied confirmation, retrying and exhausted errors, an interrupt and a compaction
    # (appended straight to the event store: the platform does not produce all of them yet)
    sid = _session(client)

    def ev(type_: str, **payload: Any) -> NewEvent:
        return NewEvent(new_id("event"), type_, payload)

    start = ev("span.model_request_start")
    mcp = ev(
        "agent.mcp_tool_use",
        name="search_issues",
        mcp_server_name="github",
        input={"q": "bug"},
        evaluated_permission="allow",
    )
    ask = ev("agent.tool_use", name="bash", input={"command": "rm -rf /"}, evaluated_permission="ask")
    start2 = ev("span.model_request_start")
    err = {"type": "model_overloaded_error", "message": "Overloaded, retrying", "retry_status": {"type": "retrying"}}
    fatal = {
        "type": "model_request_failed_error",
        "message": "gave up after 4 attempts",
        "retry_status": {"type": "exhausted"},
    }
    batch = [
        ev("user.message", content=[{"type": "text", "text": "find bugs"}]),
        ev("session.status_running"),
        start,
        ev("agent.thinking"),
        mcp,
        ev(
            "span.model_request_end",
            model_request_start_id=start.id,
            is_error=False,
            model_usage={
                "input_tokens": 10,
                "output_tokens": 5,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 7,
            },
        ),
        ev("agent.mcp_tool_result", mcp_tool_use_id=mcp.id, content=[{"type": "text", "text": "3 issues"}]),
        ask,
        ev("session.status_idle", stop_reason={"type": "requires_action", "event_ids": [ask.id]}),
        ev("user.tool_confirmation", tool_use_id=ask.id, result="deny", deny_message="never"),
        ev("session.status_running"),
        ev("agent.thread_context_compacted"),
        start2,
        ev(
            "span.model_request_end",
            model_request_start_id=start2.id,
            is_error=True,
            model_usage={"input_tokens": 0, "output_tokens": 0},
        ),
        ev("session.error", error=err),
        ev("session.status_rescheduled"),
        ev("user.interrupt"),
        ev("session.error", error=fatal),
        ev("session.status_idle", stop_reason={"type": "retries_exhausted"}),
    ]
    server.rt.events.append(sid, batch)
    # When the trace is opened
    console.sign_in(fragment=f"#/sessions/{sid}")
    console.wait_trace()
    page = console.page
    text = page.locator("main").inner_text()
    # Then each kind is shown for what it is
    assert "MCP tool use" in text and "on MCP server github" in text and "3 issues" in text
    assert "Confirmation" in page.locator('li.ev[data-type="user.tool_confirmation"]').inner_text()
    assert "never" in page.locator('li.ev[data-type="user.tool_confirmation"]').inner_text()
    assert "permission: ask" in page.locator(f"#ev-{ask.id}").inner_text()
    assert "Context compacted" in text and "Interrupt" in text
    assert "cache write 7" in text
    # And errors carry their retry status, are listed at the top, and jump to the event
    errors = page.get_by_role("region", name="Errors")
    assert errors.locator(".badge-retry-retrying").inner_text() == "retrying"
    assert errors.locator(".badge-retry-exhausted").inner_text() == "exhausted"
    errors.get_by_role("link", name="model_request_failed_error").click()
    assert page.evaluate("document.activeElement.id") == f"ev-{batch[-2].id}"
    # And the turn summary flags errors, the interrupt and the compaction
    summary = page.locator("ol.turns > li summary").first.inner_text()
    assert (
        "2 errors" in summary and "interrupted" in summary and "compacted" in summary and "retries_exhausted" in summary
    )
    console.screenshot("every-kind")
