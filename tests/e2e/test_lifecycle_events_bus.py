"""Session lifecycle events on the platform's EventBridge bus (AWS; adapters/aws/eventbridge_lifecycle.py).

moto delivers no events to targets, so the test reads what was put through the IAM-enforced platform's record of
checked calls (who put, allowed by the synthesized policy) and the publisher's entries themselves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import anthropic
import pytest

from managed_agents.adapters.aws.eventbridge_lifecycle import EventBridgeLifecyclePublisher
from managed_agents.domain.events import StoredEvent
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle


def test_the_session_turn_puts_its_lifecycle_events_on_the_bus(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    if server.platform is None or server.platform.iam is None:
        pytest.skip("embedded: there is no event bus; webhooks are its way out")
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model_server.push("done")
    client.beta.sessions.events.send(sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "x"}]}])
    wait_idle(client, sid, timeout=60)
    # Then the functions that appended the status events put them on the bus, allowed by their roles
    puts = {c.principal for c in server.platform.iam.checks if c.action == "events:PutEvents" and c.allowed}
    assert "ModelTurn" in puts
    assert not [c for c in server.platform.iam.checks if c.action == "events:PutEvents" and not c.allowed]


def test_the_entries_are_thin_webhook_events_with_the_webhook_type_as_detail_type() -> None:
    publisher = EventBridgeLifecyclePublisher(bus_name="bus")
    at = datetime(2027, 1, 1, tzinfo=UTC)
    idle = StoredEvent("sesn_1", 3, "sevt_1", "session.status_idle", at, {"stop_reason": {"type": "requires_action"}})
    other = StoredEvent("sesn_1", 4, "sevt_2", "agent.message", at, {})
    entries = publisher.entries("sesn_1", [idle, other])
    assert [e["DetailType"] for e in entries] == ["session.status_idled", "session.requires_action"]
    detail = json.loads(entries[0]["Detail"])
    assert detail["type"] == "event" and detail["data"]["id"] == "sesn_1"
    assert {e["Source"] for e in entries} == {"managed-agents"} and entries[0]["EventBusName"] == "bus"
