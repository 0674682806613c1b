"""Session threads through the official SDK with strict response validation (api-reference §2.3.3): every session
has a primary thread whose events are the session's log; child threads come from a coordinator's delegations."""

from __future__ import annotations

import threading
from typing import Any

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, all_events, error_body, wait_idle, wait_until


def _msg(text: str) -> Any:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _session(client: anthropic.Anthropic, **agent_kw: Any) -> str:
    agent = client.beta.agents.create(name="solo", model="claude-sonnet-4-6", **agent_kw)
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def test_a_session_has_a_primary_thread_whose_events_are_the_session_log(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client)
    # Given a new session: one primary thread, idle, running the session's agent
    listed = list(client.beta.sessions.threads.list(sid))
    assert len(listed) == 1
    primary = listed[0]
    assert primary.id.startswith("sthr_") and primary.session_id == sid
    assert primary.parent_thread_id is None and primary.status == "idle"
    assert primary.agent.type == "agent" and primary.agent.name == "solo"
    session = client.beta.sessions.retrieve(sid)
    assert primary.agent.id == session.agent.id and primary.agent.version == session.agent.version
    # When the session runs a turn, watched on the primary thread's stream
    model_server.push("hello back")
    seen: list[Any] = []
    with client.beta.sessions.threads.events.stream(primary.id, session_id=sid) as stream:
        reader = threading.Thread(target=lambda: [seen.append(e) for e in _until_idle(stream)], daemon=True)
        reader.start()
        client.beta.sessions.events.send(sid, events=[_msg("hello")])
        reader.join(30)
    wait_idle(client, sid)
    # Then the thread's events, its stream and the session's events agree, event for event
    session_events = all_events(client, sid)
    thread_events = list(client.beta.sessions.threads.events.list(primary.id, session_id=sid))
    assert [e.id for e in thread_events] == [e.id for e in session_events]
    assert [e.id for e in seen] == [e.id for e in session_events]
    # And the thread reports the session's status and usage
    again = client.beta.sessions.threads.retrieve(primary.id, session_id=sid)
    assert again.status == "idle" and again.usage is not None and again.usage.output_tokens
    # (its startup is the session's: from the first message to the first running)
    first = next(e for e in session_events if e.type == "user.message").processed_at
    began = next(e for e in session_events if e.type == "session.status_running").processed_at
    assert again.stats is not None and again.stats.startup_seconds is not None and began > first
    assert abs(again.stats.startup_seconds - (began - first).total_seconds()) < 0.002
    assert [t.id for t in client.beta.sessions.threads.list(sid, statuses=["idle"])] == [primary.id]
    assert list(client.beta.sessions.threads.list(sid, statuses=["running"])) == []


def _until_idle(stream: Any) -> Any:
    for ev in stream:
        yield ev
        if ev.type == "session.status_idle":
            return


def test_thread_errors(server: Server) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _session(client)
    primary = next(iter(client.beta.sessions.threads.list(sid)))
    # An unknown thread, or a thread of another session, is a 404
    other = _session(client)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.retrieve(primary.id, session_id=other)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.events.list("sthr_nope", session_id=sid)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.list("sesn_nope")
    # The primary thread is archived with its session, not on its own
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.threads.archive(primary.id, session_id=sid)
    assert "primary thread" in error_body(info.value)["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.threads.list(sid, statuses=["sleeping"])  # type: ignore[list-item]


def _coordinator(client: anthropic.Anthropic) -> tuple[str, str]:
    flights = client.beta.agents.create(name="flights", model="claude-sonnet-4-6", description="Finds flights")
    hotels = client.beta.agents.create(name="hotels", model="claude-sonnet-4-6")
    lead = client.beta.agents.create(
        name="lead",
        model="claude-sonnet-4-6",
        multiagent={"type": "coordinator", "agents": [flights.id, hotels.id]},
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return lead.id, client.beta.sessions.create(agent=lead.id, environment_id=env.id).id


def _delegate(agent: str, message: str) -> dict[str, Any]:
    return {"type": "tool_use", "name": f"delegate_to_{agent}", "input": {"message": message}}


def test_a_coordinator_delegates_to_two_subagents_in_parallel(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    _, sid = _coordinator(client)
    primary = next(iter(client.beta.sessions.threads.list(sid)))
    # Given a coordinator that delegates to both subagents in one turn, and subagents that each take a while
    model_server.push(
        {
            "match": "plan the trip",
            "content": [_delegate("flights", "find flights"), _delegate("hotels", "find hotels")],
        },
        {"match": "find flights", "content": [{"type": "text", "text": "flight AB123"}], "delay_ms": 600},
        {"match": "find hotels", "content": [{"type": "text", "text": "hotel Ritz"}], "delay_ms": 600},
        {"match": "AB123", "content": [{"type": "text", "text": "Booked AB123 and the Ritz."}]},
    )
    client.beta.sessions.events.send(sid, events=[_msg("plan the trip")])
    # When a child thread appears, its stream is watched until it stops
    children = wait_until(lambda: [t for t in client.beta.sessions.threads.list(sid) if t.parent_thread_id], 30)
    streamed: list[Any] = []
    with client.beta.sessions.threads.events.stream(children[0].id, session_id=sid) as stream:
        for ev in stream:
            streamed.append(ev)
            if ev.type == "session.thread_status_idle":
                break
    events = wait_idle(client, sid)
    # Then the session ends its turn with the coordinator's answer, written from both subagents' answers
    messages = [e for e in events if e.type == "agent.message"]
    assert messages[-1].content[0].text == "Booked AB123 and the Ritz."
    final_request = model_server.requests[-1]["body"]["messages"]
    results = [b for b in final_request[-1]["content"] if b["type"] == "tool_result"]
    assert [r["content"][0]["text"] for r in results] == ["flight AB123", "hotel Ritz"]
    # And the session's log shows each delegation: sent, thread created, running, idle, answer received
    sent = [e for e in events if e.type == "agent.thread_message_sent"]
    assert [e.to_agent_name for e in sent] == ["flights", "hotels"]
    threads_ = {t.id: t for t in client.beta.sessions.threads.list(sid)}
    assert len(threads_) == 3 and primary.id in threads_
    child_ids = {e.to_session_thread_id for e in sent}
    assert child_ids == set(threads_) - {primary.id}
    created = [e for e in events if e.type == "session.thread_created"]
    assert {e.session_thread_id for e in created} == child_ids
    assert {e.agent_name for e in created} == {"flights", "hotels"}
    received = [e for e in events if e.type == "agent.thread_message_received"]
    assert {(e.from_session_thread_id, e.from_agent_name) for e in received} == {
        (e.to_session_thread_id, e.to_agent_name) for e in sent
    }
    for tid in child_ids:
        child = threads_[tid]
        assert child.parent_thread_id == primary.id and child.status == "idle" and child.agent.type == "agent"
        assert child.usage is not None and child.usage.output_tokens
        assert child.stats is not None and child.stats.startup_seconds == 0  # (child threads start immediately)
        own = list(client.beta.sessions.threads.events.list(tid, session_id=sid))
        assert [e.type for e in own] == [
            "agent.thread_message_received",
            "session.thread_status_running",
            "span.model_request_start",
            "agent.message",
            "span.model_request_end",
            "session.thread_status_idle",
            "agent.thread_message_sent",
        ]
        assert own[0].from_session_thread_id == primary.id
        assert own[-1].to_session_thread_id == primary.id
        # the thread's status changes are cross-posted to the session's log, naming the thread
        statuses = [e for e in events if e.type.startswith("session.thread_status_") and e.session_thread_id == tid]
        assert [e.type for e in statuses] == ["session.thread_status_running", "session.thread_status_idle"]
        assert [e.type for e in statuses] == [e.type for e in own if e.type.startswith("session.thread_status_")]
        if tid == children[0].id:  # the stream showed the tail of the thread's own events, in order
            assert streamed and [e.id for e in streamed] == [e.id for e in own[: len(own) - 1]][-len(streamed) :]
    # And the two subagents ran at once: each one's model request started before the other's ended
    spans = {
        tid: [e for e in client.beta.sessions.threads.events.list(tid, session_id=sid) if e.type.startswith("span.")]
        for tid in child_ids
    }
    a, b = spans.values()
    assert a[0].processed_at < b[1].processed_at and b[0].processed_at < a[1].processed_at
    # And the primary thread's events are still exactly the session's
    assert [e.id for e in client.beta.sessions.threads.events.list(primary.id, session_id=sid)] == [
        e.id for e in all_events(client, sid)
    ]


def test_an_agent_consults_its_advisor_in_a_thread_of_the_advisor_model(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    agent = client.beta.agents.create(
        name="worker",
        model="claude-sonnet-4-6",
        multiagent={
            "type": "multiagent_20261001",
            "advisor": {"type": "enabled", "model": "claude-opus-4-8"},
            "subagents": {"type": "disabled"},
        },
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    # Given an agent that consults its advisor
    ask = {"type": "tool_use", "name": "consult_advisor", "input": {"message": "Deploy on a Friday?"}}
    model_server.push(
        {"match": "release", "content": [ask]},
        {"match": "Friday?", "content": [{"type": "text", "text": "No: wait for Monday."}]},
        {"match": "Monday", "content": [{"type": "text", "text": "Releasing on Monday."}]},
    )
    client.beta.sessions.events.send(sid, events=[_msg("plan the release")])
    events = wait_idle(client, sid)
    # Then the advisor's answer comes back as the tool result and the agent acts on it
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Releasing on Monday."]
    first, advice, last = (r["body"] for r in model_server.requests if r["path"] == "/v1/messages")
    assert [t["name"] for t in first["tools"]] == ["consult_advisor"]
    # And the advisor is a request to the advisor's model, without tools, under its own system prompt
    assert advice["model"] == "claude-opus-4-8" and "tools" not in advice
    assert "advisor" in advice["system"][0]["text"]
    assert last["messages"][-1]["content"][0]["content"][0]["text"] == "No: wait for Monday."
    # And its thread shows the advisor as its agent
    (thread,) = [t for t in client.beta.sessions.threads.list(sid) if t.parent_thread_id]
    assert thread.agent.type == "advisor" and thread.agent.model == "claude-opus-4-8"
    created = next(e for e in events if e.type == "session.thread_created")
    assert created.agent_name == "advisor" and created.session_thread_id == thread.id


TICKET = {
    "type": "custom",
    "name": "ticket",
    "description": "Open a ticket",
    "input_schema": {"type": "object", "properties": {"title": {"type": "string"}}},
}


def _ops_session(client: anthropic.Anthropic, *tools: Any) -> str:
    """A session of a coordinator whose one subagent, "ops", has `tools`."""
    ops = client.beta.agents.create(name="ops", model="claude-sonnet-4-6", tools=list(tools))
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [ops.id]}
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=lead.id, environment_id=env.id).id


def test_a_child_threads_confirmation_and_custom_tool_call_are_answered_through_the_session(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    asks = {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}
    sid = _ops_session(client, asks, TICKET)
    model_server.push(
        {"match": "clean up", "content": [_delegate("ops", "clean the disk")]},
        {
            "match": "clean the disk",
            "content": [{"type": "tool_use", "name": "bash", "input": {"command": "rm -rf /x"}}],
        },
        {"match": "not allowed", "content": [{"type": "tool_use", "name": "ticket", "input": {"title": "disk"}}]},
        {"match": "TICKET-7 filed", "content": [{"type": "text", "text": "opened TICKET-7 instead"}]},
        {"match": "instead", "content": [{"type": "text", "text": "Cleanup handed to TICKET-7."}]},
    )
    client.beta.sessions.events.send(sid, events=[_msg("clean up")])
    # When the subagent's ask-gated call reaches the session, the session waits on the user for it
    events = wait_idle(client, sid)
    idle = [e for e in events if e.type == "session.status_idle"][-1]
    use = next(e for e in events if e.type == "agent.tool_use")
    (child,) = [t for t in client.beta.sessions.threads.list(sid) if t.parent_thread_id]
    assert idle.stop_reason.type == "requires_action" and idle.stop_reason.event_ids == [use.id]
    assert use.session_thread_id == child.id and use.evaluated_permission == "ask" and use.name == "bash"
    # And the user's denial, sent to the session, is routed to the subagent's thread
    deny = {"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "deny", "deny_message": "not allowed"}
    echo = client.beta.sessions.events.send(sid, events=[deny])  # type: ignore[list-item]
    assert echo.data[0].session_thread_id == child.id  # type: ignore[union-attr]
    # Then the subagent calls its custom tool, which the session's client answers the same way
    events = wait_idle(client, sid, count=2)
    custom = next(e for e in events if e.type == "agent.custom_tool_use")
    assert custom.session_thread_id == child.id
    assert [e for e in events if e.type == "session.status_idle"][-1].stop_reason.event_ids == [custom.id]
    result = {
        "type": "user.custom_tool_result",
        "custom_tool_use_id": custom.id,
        "content": [{"type": "text", "text": "TICKET-7 filed"}],
    }
    client.beta.sessions.events.send(sid, events=[result])  # type: ignore[list-item]
    events = wait_idle(client, sid, count=3)
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Cleanup handed to TICKET-7."]
    assert events[-1].stop_reason.type == "end_turn"
    # And the thread's own log holds its calls and the answers it got, under the same ids
    own = list(client.beta.sessions.threads.events.list(child.id, session_id=sid))
    by_id = {e.id: e for e in own}
    assert by_id[use.id].type == "agent.tool_use" and by_id[custom.id].type == "agent.custom_tool_use"
    answers = [e for e in own if e.type in ("user.tool_confirmation", "user.custom_tool_result")]
    assert [e.type for e in answers] == ["user.tool_confirmation", "user.custom_tool_result"]
    denied = model_server.requests[2]["body"]["messages"][-1]["content"][0]
    assert denied["type"] == "tool_result" and denied["is_error"] and denied["content"][0]["text"] == "not allowed"


def test_interrupting_one_child_thread_ends_its_turn_and_the_coordinator_goes_on(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    _, sid = _coordinator(client)
    # Given a coordinator waiting on a subagent whose model request takes long
    model_server.push(
        {"match": "book it", "content": [_delegate("flights", "slow job")]},
        {"match": "slow job", "content": [{"type": "text", "text": "too late"}], "delay_ms": 20_000},
        {"match": "without a message", "content": [{"type": "text", "text": "Stopped the search."}]},
    )
    client.beta.sessions.events.send(sid, events=[_msg("book it")])
    (child,) = wait_until(lambda: [t for t in client.beta.sessions.threads.list(sid) if t.parent_thread_id], 30)
    wait_until(lambda: len([r for r in model_server.requests if r["path"] == "/v1/messages"]) == 2, 30)
    # When the user interrupts that thread only
    interrupt = {"type": "user.interrupt", "session_thread_id": child.id}
    echo = client.beta.sessions.events.send(sid, events=[interrupt])  # type: ignore[list-item]
    assert echo.data[0].session_thread_id == child.id  # type: ignore[union-attr]
    # Then the thread stops without an answer, and the coordinator carries on with that and ends its turn
    events = wait_idle(client, sid)
    assert [e.content[0].text for e in events if e.type == "agent.message"] == ["Stopped the search."]
    assert [e.stop_reason.type for e in events if e.type == "session.status_idle"] == ["end_turn"]
    own = [e.type for e in client.beta.sessions.threads.events.list(child.id, session_id=sid)]
    assert "user.interrupt" in own and own[-2:] == ["session.thread_status_idle", "agent.thread_message_sent"]
    assert "agent.message" not in own
    # And an interrupt naming a thread the session does not have is refused
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.events.send(
            sid,
            events=[{"type": "user.interrupt", "session_thread_id": "sthr_nope"}],  # type: ignore[list-item]
        )


def test_archiving_a_child_thread_and_deleting_the_session_with_its_threads(
    server: Server, model_server: ScriptedModelServer
) -> None:
    client = server.client(_strict_response_validation=True)
    sid = _ops_session(client, TICKET)
    model_server.push(
        {"match": "clean up", "content": [_delegate("ops", "clean the disk")]},
        {"match": "clean the disk", "content": [{"type": "tool_use", "name": "ticket", "input": {"title": "disk"}}]},
        {"match": "TICKET-7", "content": [{"type": "text", "text": "filed TICKET-7"}]},
        {"match": "filed TICKET-7", "content": [{"type": "text", "text": "Done."}]},
    )
    client.beta.sessions.events.send(sid, events=[_msg("clean up")])
    events = wait_idle(client, sid)
    (child,) = [t for t in client.beta.sessions.threads.list(sid) if t.parent_thread_id]
    custom = next(e for e in events if e.type == "agent.custom_tool_use")
    # Given a child thread idle on a call that waits on the user: archiving it is refused (its coordinator waits)
    wait_until(lambda: client.beta.sessions.threads.retrieve(child.id, session_id=sid).status == "idle")
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.threads.archive(child.id, session_id=sid)
    assert "requires_action" in error_body(info.value)["message"]
    # When the call is answered and the child finishes, Then it is archived, once, its figures frozen
    result = {"type": "user.custom_tool_result", "custom_tool_use_id": custom.id, "content": [_text("TICKET-7")]}
    client.beta.sessions.events.send(sid, events=[result])  # type: ignore[list-item]
    wait_idle(client, sid, count=2)
    archived = client.beta.sessions.threads.archive(child.id, session_id=sid)
    assert archived.archived_at is not None and archived.status == "idle"
    again = client.beta.sessions.threads.archive(child.id, session_id=sid)
    assert again.archived_at == archived.archived_at
    assert archived.stats is not None and again.stats is not None
    assert again.stats.duration_seconds == archived.stats.duration_seconds
    # And it is still listed and readable, but an interrupt can no longer name it
    assert child.id in [t.id for t in client.beta.sessions.threads.list(sid)]
    assert list(client.beta.sessions.threads.events.list(child.id, session_id=sid))
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.events.send(
            sid,
            events=[{"type": "user.interrupt", "session_thread_id": child.id}],  # type: ignore[list-item]
        )
    assert "archived" in error_body(info.value)["message"]
    # When the session is deleted, Then its child thread's record and log go with it
    wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle")
    assert server.rt.events.last_seq(child.id) > 0
    client.beta.sessions.delete(sid)
    assert server.rt.events.last_seq(child.id) == 0
    assert server.rt.resources.get_by_id("session_thread", child.id) is None


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}
