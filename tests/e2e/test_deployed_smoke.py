"""The post-deploy smoke check's own tests: a real session on the deployment, with its real model and sandbox.

Run with the rest of the suite's `[deployed]` leg (docs/deploy-aws.md, last deploy step):
`MANAGED_AGENTS_E2E_BASE_URL=<ApiUrl> MANAGED_AGENTS_E2E_KEY=<admin key> uv run pytest -m deployed tests/e2e`.
Without those variables they skip. The session's model calls are the deployment's, with its own model key: a few
hundred tokens per test.
"""

from __future__ import annotations

import uuid

import anthropic
import pytest

from tests.e2e.conftest import deployed_only, wait_idle

pytestmark = [
    deployed_only("the deployment's real model answers; elsewhere the scripted model is tested by every other module"),
    pytest.mark.live_model,
]
MODEL = "claude-haiku-4-5"


def _session(client: anthropic.Anthropic, *, tools: list[dict[str, str]], cloud: bool) -> str:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    agent = client.beta.agents.create(name=name, model=MODEL, system="Be brief.", tools=tools)  # type: ignore[arg-type]
    config: dict[str, object] = {"type": "cloud"} if cloud else {"type": "self_hosted"}
    env = client.beta.environments.create(name=name, config=config)  # type: ignore[arg-type]
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    return session.id


def test_a_message_runs_a_model_turn_and_the_session_goes_idle(client: anthropic.Anthropic) -> None:
    # Given a session on the deployment
    sid = _session(client, tools=[], cloud=False)
    # When the user says something
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "Reply with the word pong."}]}]
    )
    # Then the run (Step Functions, ModelTurn, the model key) answers and the session goes idle without an error
    events = wait_idle(client, sid, timeout=180)
    types = [e.type for e in events]
    assert "agent.message" in types and "session.error" not in types, types


def test_a_bash_call_runs_in_a_fargate_sandbox(client: anthropic.Anthropic) -> None:
    # Given a cloud session whose agent has the built-in tools
    sid = _session(client, tools=[{"type": "agent_toolset_20260401"}], cloud=True)
    # When the model is asked to run a command
    text = "Use the bash tool to run `echo smoke-$((40+2))`, then reply with its output only."
    client.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )
    # Then a sandbox task starts (cold: up to a few minutes), runs it, and its result reaches the model
    events = wait_idle(client, sid, timeout=600)
    results = [e for e in events if e.type == "user.tool_result"]
    assert results and not results[0].is_error, [e.type for e in events]
    assert "smoke-42" in str(results[0].content)
