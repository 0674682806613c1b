"""Agents through the official SDK: create, versions, optimistic concurrency, patches, lists, validation."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.e2e.conftest import Server


def _error_code(exc: anthropic.APIStatusError) -> Any:
    body = exc.body
    assert isinstance(body, dict)
    return (
        (body.get("details") or {}).get("error_code") if "details" in body else body["error"]["details"]["error_code"]
    )


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    assert isinstance(body, dict)
    err = body.get("error", body)
    return str(err["message"])


def test_create_resolves_string_model_and_retrieve_returns_it(client: anthropic.Anthropic) -> None:
    # Given / When an agent is created with a string model
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", system="s", metadata={"team": "x"})
    # Then the response carries the object form of the model with a resolved effort
    assert agent.type == "agent"
    assert agent.version == 1
    assert agent.model.id == "claude-sonnet-4-6"
    assert agent.model.effort is not None
    assert agent.model.effort.type in ("low", "medium", "high", "xhigh", "max")
    assert agent.archived_at is None
    # And retrieve returns the same object
    got = client.beta.agents.retrieve(agent.id)
    assert got.id == agent.id and got.name == "a" and got.system == "s"
    assert got.metadata == {"team": "x"}
    assert got.model.id == "claude-sonnet-4-6"


def test_update_bumps_version_and_old_version_stays_retrievable(client: anthropic.Anthropic) -> None:
    # Given an agent at version 1
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", system="first")
    # When it is updated with the matching version
    updated = client.beta.agents.update(agent.id, version=1, system="second")
    # Then the version increments and version 1 keeps its old content
    assert updated.version == 2 and updated.system == "second"
    assert client.beta.agents.retrieve(agent.id).version == 2
    v1 = client.beta.agents.retrieve(agent.id, version=1)
    assert v1.version == 1 and v1.system == "first"
    # And versions.list lists newest first
    versions = list(client.beta.agents.versions.list(agent.id))
    assert [v.version for v in versions] == [2, 1]
    assert [v.system for v in versions] == ["second", "first"]


def test_update_with_stale_version_is_a_409_that_must_not_be_retried(client: anthropic.Anthropic) -> None:
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    client.beta.agents.update(agent.id, version=1, description="d")
    # When updating with a stale version
    with pytest.raises(anthropic.ConflictError) as info:
        client.beta.agents.update(agent.id, version=1, description="other")
    # Then the server answers 409 with x-should-retry false, and nothing changed
    assert info.value.status_code == 409
    assert info.value.response.headers.get("x-should-retry") == "false"
    assert "version" in _message(info.value)
    # And, as the hosted API does, its error type is invalid_request_error (api-reference §9)
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "invalid_request_error"
    got = client.beta.agents.retrieve(agent.id)
    assert got.version == 2 and got.description == "d"


def test_update_distinguishes_omitted_from_null_and_patches_metadata(client: anthropic.Anthropic) -> None:
    agent = client.beta.agents.create(
        name="a", model="claude-sonnet-4-6", system="keep me", description="desc", metadata={"k": "v", "j": "w"}
    )
    # When only the description is changed, the system prompt is kept
    a2 = client.beta.agents.update(agent.id, description="desc2")
    assert a2.system == "keep me" and a2.description == "desc2" and a2.version == 2
    # When system is sent as null, it is cleared; metadata {"k": None} deletes only k
    a3 = client.beta.agents.update(agent.id, system=None, metadata={"k": None, "n": "new"})
    assert a3.system is None
    assert a3.description == "desc2"
    assert a3.metadata == {"j": "w", "n": "new"}
    assert a3.version == 3
    # And a no-op update keeps the version
    a4 = client.beta.agents.update(agent.id, description="desc2")
    assert a4.version == 3
    assert [v.version for v in client.beta.agents.versions.list(agent.id)] == [3, 2, 1]


@pytest.mark.fresh_server("it lists every agent and expects only its own three")
def test_list_paginates_and_hides_archived(client: anthropic.Anthropic) -> None:
    # Given three agents
    ids = [client.beta.agents.create(name=f"a{i}", model="claude-sonnet-4-6").id for i in range(3)]
    # When listing one per page, following next_page (SDK auto-pagination)
    first = client.beta.agents.list(limit=1)
    assert len(first.data) == 1 and first.next_page
    listed = [a.id for a in client.beta.agents.list(limit=1)]
    # Then every agent is seen exactly once
    assert sorted(listed) == sorted(ids) and len(listed) == 3
    # When one is archived
    archived = client.beta.agents.archive(ids[0])
    assert archived.archived_at is not None
    # Then it is hidden unless include_archived
    assert ids[0] not in [a.id for a in client.beta.agents.list()]
    assert sorted(ids[1:]) == sorted(a.id for a in client.beta.agents.list())
    with_archived = [a.id for a in client.beta.agents.list(include_archived=True)]
    assert sorted(with_archived) == sorted(ids)


def test_create_rejects_missing_name(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        # the typed method insists on name, so use the SDK's generic request method
        client.post(
            "/v1/agents",
            body={"model": "claude-sonnet-4-6"},
            cast_to=object,
            options={"headers": {"anthropic-beta": "managed-agents-2026-04-01"}},
        )
    assert info.value.status_code == 400
    message = _message(info.value)
    assert "name" in message and "required" in message.lower()


def test_create_rejects_17_metadata_pairs(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.agents.create(name="a", model="claude-sonnet-4-6", metadata={f"k{i}": "v" for i in range(17)})
    body = info.value.body
    assert isinstance(body, dict)
    assert (
        body["details"]["error_code"] == "invalid_metadata"
        if "details" in body
        else False or (body["error"]["details"]["error_code"] == "invalid_metadata")
    )
    assert "16" in _message(info.value)


def test_create_rejects_unreferenced_mcp_server(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.agents.create(
            name="a",
            model="claude-sonnet-4-6",
            mcp_servers=[{"type": "url", "name": "docs", "url": "https://mcp.example.com/sse"}],
        )
    message = _message(info.value)
    assert "docs" in message and "mcp_toolset" in message


def test_create_rejects_unknown_field(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.agents.create(name="a", model="claude-sonnet-4-6", extra_body={"colour": "blue"})
    assert "colour" in _message(info.value)


def test_defaults_and_empty_strings_read_back_as_the_hosted_api_gives_them(server: Server) -> None:
    # Given a client that validates every response strictly
    client = server.client(_strict_response_validation=True)
    # When an agent is created with a string model and an empty description
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", system="s", description="")
    # Then the model reads back with speed "standard" and the empty description as null
    assert agent.model.speed == "standard" and agent.description is None
    # When system and description are updated with ""
    updated = client.beta.agents.update(agent.id, system="", description="")
    # Then both clear to null
    assert updated.system is None and updated.description is None
    # When the agent is archived, then its older versions show that too
    client.beta.agents.archive(agent.id)
    assert client.beta.agents.retrieve(agent.id, version=1).archived_at is not None
    assert all(v.archived_at is not None for v in client.beta.agents.versions.list(agent.id))


def test_a_coordinator_roster_is_validated_and_resolved_to_versions(server: Server) -> None:
    # Given two plain agents, one of them at version 2, and a strictly validating client
    client = server.client(_strict_response_validation=True)
    helper = client.beta.agents.create(name="helper", model="claude-sonnet-4-6")
    client.beta.agents.update(helper.id, system="v2")
    other = client.beta.agents.create(name="other", model="claude-haiku-4-5")
    # When a coordinator names them by id, by versioned reference and itself
    roster: list[Any] = [helper.id, {"type": "agent", "id": other.id, "version": 1}, {"type": "self"}]
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": roster}
    )
    # Then every entry reads back as {type: agent, id, version}, latest where none was given
    assert lead.multiagent is not None and lead.multiagent.type == "coordinator"
    assert [(a.type, a.id, a.version) for a in lead.multiagent.agents] == [  # type: ignore[union-attr]
        ("agent", helper.id, 2),
        ("agent", other.id, 1),
        ("agent", lead.id, 1),
    ]
    # And a list page holding it validates strictly
    assert lead.id in [a.id for a in client.beta.agents.list()]
    # And `self` follows the coordinator's own version when it changes
    lead2 = client.beta.agents.update(lead.id, system="changed")
    assert lead2.multiagent.agents[2].version == 2  # type: ignore[union-attr]
    # And a session copies the full definitions of its roster
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    session = client.beta.sessions.create(agent=lead.id, environment_id=env.id)
    members = session.agent.multiagent.agents  # type: ignore[union-attr]
    assert [(m.id, m.version, m.name) for m in members] == [  # type: ignore[union-attr]
        (helper.id, 2, "helper"),
        (other.id, 1, "other"),
        (lead.id, 2, "lead"),
    ]


@pytest.mark.parametrize(
    ("roster", "message"),
    [
        ([], "at least 1"),
        ([{"type": "self"}, {"type": "self"}], "at most one `self`"),
        (["HELPER", {"type": "agent", "id": "HELPER"}], "distinct agents"),
        (["agent_missing"], "not found"),
        (["NESTED"], "depth limit"),
        ([{"type": "agent", "id": "HELPER", "version": 9}], "no version 9"),
    ],
)
def test_invalid_coordinator_rosters_are_400s(client: anthropic.Anthropic, roster: list[Any], message: str) -> None:
    # Given a plain agent and one that is itself a coordinator
    helper = client.beta.agents.create(name="helper", model="claude-sonnet-4-6")
    nested = client.beta.agents.create(
        name="nested", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [helper.id]}
    )
    names = {"HELPER": helper.id, "NESTED": nested.id}

    def swap(entry: Any) -> Any:
        if isinstance(entry, str):
            return names.get(entry, entry)
        return {**entry, "id": names.get(entry["id"], entry["id"])} if "id" in entry else entry

    # When a coordinator is created with the roster, then it is refused with a precise message
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.agents.create(
            name="lead",
            model="claude-sonnet-4-6",
            multiagent={"type": "coordinator", "agents": [swap(e) for e in roster]},
        )
    assert message in _message(info.value)


def test_multiagent_20261001_defaults_merge_level_by_level_on_update(server: Server) -> None:
    # Given a strictly validating client and a helper agent
    client = server.client(_strict_response_validation=True)
    helper = client.beta.agents.create(name="helper", model="claude-sonnet-4-6")
    # When an agent enables an advisor only
    agent = client.beta.agents.create(
        name="lead",
        model="claude-sonnet-4-6",
        multiagent={"type": "multiagent_20261001", "advisor": {"type": "enabled", "model": "claude-opus-4-8"}},
    )
    # Then the other levels take their defaults
    ma = agent.multiagent
    assert ma is not None and ma.type == "multiagent_20261001"
    assert ma.advisor.type == "enabled" and ma.subagents.type == "enabled" and ma.workflows.type == "enabled"  # type: ignore[union-attr]
    assert ma.subagents.inline_agents.type == "enabled" and ma.subagents.predefined_agents == []  # type: ignore[union-attr]
    # When an update sends subagents with predefined agents and inline agents disabled
    updated = client.beta.agents.update(
        agent.id,
        multiagent={
            "type": "multiagent_20261001",
            "subagents": {"type": "enabled", "inline_agents": {"type": "disabled"}, "predefined_agents": [helper.id]},
        },
    )
    # Then that level merges, the advisor is kept, and the predefined agent is resolved to its version
    ma = updated.multiagent
    assert ma.advisor.type == "enabled"  # type: ignore[union-attr]
    assert ma.subagents.inline_agents.type == "disabled"  # type: ignore[union-attr]
    assert [(r.id, r.version) for r in ma.subagents.predefined_agents] == [(helper.id, 1)]  # type: ignore[union-attr]
    # When the advisor is sent as null, then it takes its default (disabled)
    reset = client.beta.agents.update(agent.id, multiagent={"type": "multiagent_20261001", "advisor": None})
    assert reset.multiagent.advisor.type == "disabled" and reset.multiagent.subagents.inline_agents.type == "disabled"  # type: ignore[union-attr]
    # And disabling inline agents with no predefined agent is refused
    with pytest.raises(anthropic.BadRequestError, match="predefined_agents must name at least one agent"):
        client.beta.agents.update(
            agent.id,
            multiagent={
                "type": "multiagent_20261001",
                "workflows": {"type": "enabled", "inline_agents": {"type": "disabled"}},
            },
        )
