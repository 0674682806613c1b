"""Outcomes through the official SDK (api-reference §3.1 `user.define_outcome`, §3.2 `span.outcome_evaluation_*`,
§3.3 Outcomes): the agent works, a grader judges against the rubric, not-met verdicts go back to the agent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from managed_agents.harness.outcomes import GRADER_SYSTEM
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle, wait_until

LOOKUP_TOOL: Any = {
    "type": "custom",
    "name": "lookup",
    "description": "Look a word up",
    "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
}
RUBRIC = "The haiku has a title line and exactly three lines of verse."


def _verdict(result: str, why: str) -> str:
    return f"<verdict>{result}</verdict>\n<explanation>{why}</explanation>"


def _outcome(max_iterations: int | None = None) -> Any:
    event: dict[str, Any] = {
        "type": "user.define_outcome",
        "description": "A haiku about budgets",
        "rubric": {"type": "text", "content": RUBRIC},
    }
    if max_iterations is not None:
        event["max_iterations"] = max_iterations
    return event


def _session(client: anthropic.Anthropic, **kw: Any) -> Any:
    agent = client.beta.agents.create(name="poet", model="claude-sonnet-4-6", system="You are a poet.")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, **kw)


def _settled(client: anthropic.Anthropic, sid: str, check: Callable[[Any], bool]) -> Any:
    """The session once its record shows what the log says (the record is updated right after the append)."""

    def ready() -> Any:
        s = client.beta.sessions.retrieve(sid)
        return s if check(s) else None

    return wait_until(ready)


def _text(body: dict[str, Any]) -> str:
    return "\n".join(str(b.get("text", "")) for m in body["messages"] for b in m["content"] if isinstance(b, dict))


def test_outcome_met_on_the_second_evaluation(server: Server, model_server: ScriptedModelServer) -> None:
    client = server.client(_strict_response_validation=True)
    # Given an agent whose first draft misses the rubric and a grader that says so, then accepts the revision
    model_server.push(
        "Budgets: coins fall / into the jar",
        _verdict("needs_revision", "Missing a title line."),
        "Title: Thrift\ncoins fall / into the jar / slowly",
        _verdict("satisfied", "Titled, three lines."),
    )
    # When the session starts with an outcome
    session = _session(client, initial_events=[_outcome(max_iterations=3)])
    events = wait_idle(client, session.id)
    # Then the outcome is echoed with its id
    define = events[0]
    assert define.type == "user.define_outcome" and define.outcome_id.startswith("outc_")
    assert define.max_iterations == 3 and define.rubric.content == RUBRIC
    # And the agent works, the grader judges, the agent revises, the grader accepts
    assert [e.type for e in events] == [
        "user.define_outcome",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "span.outcome_evaluation_start",
        "span.outcome_evaluation_end",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "span.outcome_evaluation_start",
        "span.outcome_evaluation_end",
        "session.status_idle",
    ]
    starts = [e for e in events if e.type == "span.outcome_evaluation_start"]
    ends = [e for e in events if e.type == "span.outcome_evaluation_end"]
    assert [(s.outcome_id, s.iteration) for s in starts] == [(define.outcome_id, 0), (define.outcome_id, 1)]
    assert [(e.result, e.iteration, e.explanation) for e in ends] == [
        ("needs_revision", 0, "Missing a title line."),
        ("satisfied", 1, "Titled, three lines."),
    ]
    assert [e.outcome_evaluation_start_id for e in ends] == [s.id for s in starts]
    assert all(e.usage.output_tokens > 0 for e in ends)
    assert events[-1].stop_reason.type == "end_turn"
    # And the grader saw the rubric and the transcript, never the agent's own context
    agent_first, grader_first, agent_second, _ = (r["body"] for r in model_server.requests)
    assert agent_first["system"][0]["text"] == "You are a poet."
    assert grader_first["system"] == GRADER_SYSTEM and "tools" not in grader_first
    assert RUBRIC in _text(grader_first) and "coins fall / into the jar" in _text(grader_first)
    assert "You are a poet." not in _text(grader_first)
    # And the agent got the grader's explanation to revise by
    assert "Missing a title line." in _text(agent_second) and RUBRIC in _text(agent_second)
    # And the session tracks the evaluation
    got = _settled(client, session.id, lambda s: s.outcome_evaluations[0].result == "satisfied")
    [evaluation] = got.outcome_evaluations
    assert evaluation.outcome_id == define.outcome_id and evaluation.description == "A haiku about budgets"
    assert (evaluation.result, evaluation.iteration) == ("satisfied", 1)
    assert evaluation.explanation == "Titled, three lines." and evaluation.completed_at is not None
    model_server.assert_complete()


def test_outcome_exhausts_max_iterations(server: Server, model_server: ScriptedModelServer) -> None:
    client = server.client(_strict_response_validation=True)
    session = _session(client)
    # Given a grader that is never satisfied and two iterations allowed
    model_server.push(
        "draft one",
        _verdict("needs_revision", "No title."),
        "draft two",
        _verdict("needs_revision", "Still no title."),
        "Understood: the title is still missing.",
    )
    # When the outcome is defined through events.send
    sent = client.beta.sessions.events.send(session.id, events=[_outcome(max_iterations=2)])
    assert sent.data[0].type == "user.define_outcome" and sent.data[0].outcome_id.startswith("outc_")
    events = wait_idle(client, session.id)
    # Then the last evaluation ends max_iterations_reached, the agent acknowledges once, and the session idles
    ends = [e for e in events if e.type == "span.outcome_evaluation_end"]
    assert [(e.result, e.iteration) for e in ends] == [("needs_revision", 0), ("max_iterations_reached", 1)]
    tail = [e.type for e in events[events.index(ends[-1]) + 1 :]]
    assert tail == [
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert "Still no title." in _text(model_server.requests[-1]["body"])
    got = _settled(client, session.id, lambda s: s.outcome_evaluations[0].result == "max_iterations_reached")
    [evaluation] = got.outcome_evaluations
    assert (evaluation.result, evaluation.iteration) == ("max_iterations_reached", 1)
    model_server.assert_complete()


def test_one_outcome_at_a_time(server: Server, model_server: ScriptedModelServer) -> None:
    client = server.client(_strict_response_validation=True)
    agent = client.beta.agents.create(name="poet", model="claude-sonnet-4-6", tools=[LOOKUP_TOOL])
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    # Given an outcome the agent is working on (it waits for a custom tool's result)
    model_server.push(
        {"content": [{"type": "tool_use", "name": "lookup", "input": {"word": "haiku"}}]},
        "done",
        _verdict("satisfied", "ok"),
    )
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=[_outcome()])
    use = next(e for e in wait_idle(client, session.id) if e.type == "agent.custom_tool_use")
    _settled(client, session.id, lambda s: s.outcome_evaluations[0].result == "running")
    # When a second outcome is defined meanwhile, Then it is refused
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.events.send(session.id, events=[_outcome()])
    assert "still being worked on" in str(info.value)
    # When the tool result comes back, Then the agent finishes and the grader judges
    result = {
        "type": "user.custom_tool_result",
        "custom_tool_use_id": use.id,
        "content": [{"type": "text", "text": "5-7-5"}],
    }
    client.beta.sessions.events.send(session.id, events=[result])
    wait_idle(client, session.id, count=2)
    _settled(client, session.id, lambda s: s.outcome_evaluations[0].result == "satisfied")
    # And one request defines at most one outcome
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.events.send(session.id, events=[_outcome(), _outcome()])


def test_file_rubric_is_read_for_the_grader(server: Server, model_server: ScriptedModelServer) -> None:
    client = server.client(_strict_response_validation=True)
    # Given a rubric uploaded as a file
    rubric = client.beta.files.upload(file=("rubric.md", b"- must rhyme with 'jar'\n", "text/markdown"))
    model_server.push("far / jar", _verdict("satisfied", "Rhymes."))
    outcome = {
        "type": "user.define_outcome",
        "description": "A couplet",
        "rubric": {"type": "file", "file_id": rubric.id},
    }
    # When the outcome names it
    session = _session(client, initial_events=[outcome])
    events = wait_idle(client, session.id)
    # Then the echo keeps the file reference, and the grader (and the agent) read its text
    assert events[0].rubric.type == "file" and events[0].rubric.file_id == rubric.id
    assert "must rhyme with 'jar'" in _text(model_server.requests[0]["body"])
    assert "must rhyme with 'jar'" in _text(model_server.requests[1]["body"])
    # And a rubric file that does not exist is refused
    with pytest.raises(anthropic.NotFoundError):
        missing = {**outcome, "rubric": {"type": "file", "file_id": "file_01NOPE"}}
        client.beta.sessions.events.send(session.id, events=[missing])
