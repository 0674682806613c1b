"""Context compaction end to end, through the official SDK and the scripted model.

The compaction threshold is set to its minimum (1,000 tokens). The context crosses it mid-turn through a web_search
whose results are large (a platform-run tool: the turn goes on without an idle), or at a turn's start because the
previous turn's last request reported a large context (the scripted model's `usage`). Compaction requests are told
apart by their instruction ("about to be compacted"); the request after one starts with its summary ("Continue the
task from here"). Before the fix a compaction ended the turn without asking the model to go on, and the next message
compacted again and again without end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import anthropic
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import wait_idle, wait_until
from tests.e2e.loopback_http import serve

THRESHOLD = 1000
COMPACTING = "about to be compacted"  # in the compaction request's instruction
CONTINUING = "Continue the task from here"  # ends the summary the next request starts with
WEB_SEARCH_ONLY = {
    "type": "agent_toolset_20260401",
    "default_config": {"enabled": False},
    "configs": [{"name": "web_search", "enabled": True}],
}


class _BigResults(BaseHTTPRequestHandler):
    """A search provider whose ten results fill their snippets: ~5,500 characters, over the threshold."""

    def do_GET(self) -> None:
        results = [
            {"title": f"Result {i}", "url": f"https://docs.example.com/{i}", "content": f"fact{i} " * 100}
            for i in range(10)
        ]
        body = json.dumps({"results": results}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[str]:
    with serve(_BigResults) as url:
        yield url + "/search"


@pytest.fixture
def server_settings(server_settings: ServerSettings, provider: str) -> ServerSettings:
    update = {"compaction_threshold_tokens": THRESHOLD, "compaction_max_per_turn": 2, "web_search_url": provider}
    return server_settings.model_copy(update=update)


def _session(client: anthropic.Anthropic) -> str:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[WEB_SEARCH_ONLY])  # type: ignore[list-item]
    env = client.beta.environments.create(name="e", config={"type": "self_hosted"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _say(client: anthropic.Anthropic, sid: str, text: str) -> None:
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def _search(query: str, **step: Any) -> dict[str, Any]:
    return {"content": [{"type": "tool_use", "name": "web_search", "input": {"query": query}}], **step}


def _bodies(model_server: ScriptedModelServer) -> list[dict[str, Any]]:
    return [r["body"] for r in model_server.requests if r["path"] == "/v1/messages"]


def _texts(message: dict[str, Any]) -> list[str]:
    return [b.get("text", "") for b in message["content"] if b.get("type") == "text"]


def _assert_spans_closed(events: list[Any]) -> None:
    starts = [e.id for e in events if e.type == "span.model_request_start"]
    assert [e.model_request_start_id for e in events if e.type == "span.model_request_end"] == starts


def test_crossing_the_threshold_mid_turn_compacts_and_the_turn_goes_on(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a model that searches the web, whose results push the context over the threshold
    sid = _session(client)
    model_server.push(
        _search("everything"),
        {"match": COMPACTING, "content": [{"type": "text", "text": "SUMMARY-A: the user wants everything"}]},
        {"match": CONTINUING, "content": [{"type": "text", "text": "Here is everything."}]},
    )
    # When the user asks
    _say(client, sid, "find everything")
    events = wait_idle(client, sid)
    # Then the context is compacted once, and the turn continues from the summary to its answer
    assert [e.type for e in events] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "span.model_request_end",
        "agent.tool_result",
        "span.model_request_start",
        "span.model_request_end",
        "agent.thread_context_compacted",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert events[-1].stop_reason.type == "end_turn"
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Here is everything."]
    _assert_spans_closed(events)
    # And from the crossing to the idle the model was asked twice: one summary, one continuation
    first, compaction, continuation = _bodies(model_server)
    assert len(json.dumps(compaction)) > THRESHOLD * 4
    last = compaction["messages"][-1]
    assert last["role"] == "user" and [b["type"] for b in last["content"]] == ["tool_result", "text"]
    assert "fact9" in json.dumps(last["content"][0]) and COMPACTING in last["content"][1]["text"]
    assert compaction["tool_choice"] == {"type": "none"} and compaction["tools"] == first["tools"]
    # And the continuation carries the summary alone, not the history it replaced
    assert [m["role"] for m in continuation["messages"]] == ["user"]
    (summary,) = _texts(continuation["messages"][0])
    assert "SUMMARY-A" in summary and CONTINUING in summary and "fact9" not in json.dumps(continuation)
    # And the compaction's usage is counted in the session's
    usage = client.beta.sessions.retrieve(sid).usage
    ends = [e.model_usage for e in events if e.type == "span.model_request_end"]
    assert usage.input_tokens == sum(u.input_tokens for u in ends) and ends[1].input_tokens > 0
    model_server.assert_complete()


def test_crossing_the_threshold_at_a_turns_start_compacts_before_answering(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a first turn whose request reported a context over the threshold
    sid = _session(client)
    model_server.push({"content": [{"type": "text", "text": "first answer"}], "usage": {"input_tokens": 5000}})
    _say(client, sid, "first question")
    wait_idle(client, sid)
    # When the user asks again
    model_server.push(
        {"match": COMPACTING, "content": [{"type": "text", "text": "SUMMARY-B: one question answered"}]},
        {"match": "second question", "content": [{"type": "text", "text": "second answer"}]},
    )
    _say(client, sid, "second question")
    events = wait_idle(client, sid, count=2)
    # Then the context is compacted before the model answers, and the turn ends with that answer
    tail = [e.type for e in events][6:]
    assert tail == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "span.model_request_end",
        "agent.thread_context_compacted",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert events[-2].type == "span.model_request_end" and events[-1].stop_reason.type == "end_turn"
    _assert_spans_closed(events)
    # And the summary covers the history only: the new question goes verbatim after it
    _, compaction, continuation = _bodies(model_server)
    assert "second question" not in json.dumps(compaction)
    assert "first question" in json.dumps(compaction) and "first answer" in json.dumps(compaction)
    assert [m["role"] for m in continuation["messages"]] == ["user"]
    summary, question = _texts(continuation["messages"][0])
    assert "SUMMARY-B" in summary and question == "second question"
    assert "first question" not in json.dumps(continuation)
    # And the next turn does not compact again: the context is small now
    model_server.push("third answer")
    _say(client, sid, "third question")
    events = wait_idle(client, sid, count=3)
    assert [e.type for e in events].count("agent.thread_context_compacted") == 1
    assert len(_bodies(model_server)) == 4
    model_server.assert_complete()


def test_a_compaction_that_leaves_the_context_over_the_threshold_ends_the_turn(
    client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    # Given a session over the threshold whose context stays over it after compacting (the continuation's usage)
    sid = _session(client)
    model_server.push({"content": [{"type": "text", "text": "first answer"}], "usage": {"input_tokens": 5000}})
    _say(client, sid, "first question")
    wait_idle(client, sid)
    model_server.push(
        {"match": COMPACTING, "content": [{"type": "text", "text": "SUMMARY-C"}]},
        _search("more", match=CONTINUING, usage={"input_tokens": 5000}),
    )
    # When the next turn compacts, continues, and would have to compact again
    _say(client, sid, "go on")
    events = wait_idle(client, sid, count=2)
    # Then it stops with compaction_limit_reached_error and idles, instead of compacting again
    error = next(e for e in events if e.type == "session.error").error
    assert error.type == "compaction_limit_reached_error" and error.retry_status.type == "exhausted"
    assert str(THRESHOLD) in error.message and "5" in error.message
    assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == "retries_exhausted"
    assert [e.type for e in events].count("agent.thread_context_compacted") == 1
    _assert_spans_closed(events)
    # And from the crossing to the idle the model was asked twice: the summary and the continuation
    assert len(_bodies(model_server)) == 3
    assert wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle", timeout=30)
    model_server.assert_complete()


def test_compactions_per_turn_are_bounded(client: anthropic.Anthropic, model_server: ScriptedModelServer) -> None:
    # Given a model whose every search result pushes the context over the threshold again (at most 2 per turn here)
    sid = _session(client)
    model_server.push(
        _search("one"),
        {"match": COMPACTING, "content": [{"type": "text", "text": "SUMMARY-1"}]},
        _search("two", match=CONTINUING),
        {"match": COMPACTING, "content": [{"type": "text", "text": "SUMMARY-2"}]},
        _search("three", match=CONTINUING),
    )
    # When the user asks
    _say(client, sid, "search until done")
    events = wait_idle(client, sid)
    # Then the turn compacts twice, each time going on, and the third crossing ends it
    types = [e.type for e in events]
    assert types.count("agent.thread_context_compacted") == 2
    error = next(e for e in events if e.type == "session.error").error
    assert error.type == "compaction_limit_reached_error" and "2 times" in error.message
    assert events[-1].stop_reason.type == "retries_exhausted"
    _assert_spans_closed(events)
    assert len(_bodies(model_server)) == 5
    model_server.assert_complete()
