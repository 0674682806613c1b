"""On the embedded store the session record is written in the same transaction as the events that change it: a
retrieve right after the stream delivered `session.status_idle` shows the session idle, every turn."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import pytest

from managed_agents.adapters.local.sqlite_store import SqliteResourceStore
from managed_agents.ports import Record
from tests.e2e.conftest import Server, embedded_only


@embedded_only("the record and the log share one SQLite transaction; DynamoDB writes the record after the append")
def test_retrieve_right_after_idle_shows_idle_and_the_turns_usage(
    server: Server, client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a session whose model answers every turn, and session record writes of their own that are slow (a
    # record written after the append would still say `running` when the client reads it)
    replace = SqliteResourceStore.replace

    def slow_replace(self: SqliteResourceStore, rec: Record, *, expected_rev: int) -> Any:
        if rec.kind == "session":
            time.sleep(0.3)
        return replace(self, rec, expected_rev=expected_rev)

    monkeypatch.setattr(SqliteResourceStore, "replace", slow_replace)
    server.model.push(*(f"answer {turn}" for turn in range(1, 6)))
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    with client.beta.sessions.events.stream(sid) as stream:
        events = iter(stream)
        for turn in range(1, 6):
            # When a turn ends (the stream delivers session.status_idle)
            client.beta.sessions.events.send(
                sid, events=[{"type": "user.message", "content": [{"type": "text", "text": f"turn {turn}"}]}]
            )
            while next(events).type != "session.status_idle":
                pass
            # Then the record, read at once, already says idle and counts this turn's tokens
            session = client.beta.sessions.retrieve(sid)
            assert session.status == "idle", f"turn {turn}: {session.status}"
            assert session.usage.output_tokens and session.usage.output_tokens >= turn
