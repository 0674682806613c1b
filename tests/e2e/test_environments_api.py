"""Environments through the official SDK: configs, updates, archive, delete, not-found."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    err = body.get("error", body)
    assert isinstance(err, dict)
    return err


def test_create_cloud_with_limited_networking_and_packages(client: anthropic.Anthropic) -> None:
    # When a cloud environment with limited networking and packages is created
    env = client.beta.environments.create(
        name="build",
        description="ci",
        metadata={"team": "a"},
        config={
            "type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": ["pypi.org"], "allow_package_managers": True},
            "packages": {"pip": ["requests"], "npm": ["left-pad"]},
        },
    )
    # Then the config comes back resolved
    assert env.type == "environment" and env.id.startswith("env_")
    assert env.config.type == "cloud"
    assert env.config.networking.type == "limited"
    assert env.config.networking.allowed_hosts == ["pypi.org"]
    assert env.config.networking.allow_package_managers is True
    assert env.config.networking.allow_mcp_servers is False
    assert env.config.packages.pip == ["requests"]
    assert env.config.packages.npm == ["left-pad"]
    # And retrieve agrees
    got = client.beta.environments.retrieve(env.id)
    assert got.config.networking.allowed_hosts == ["pypi.org"]
    assert got.metadata == {"team": "a"} and got.description == "ci"


def test_create_self_hosted(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    assert env.config.type == "self_hosted"
    assert client.beta.environments.retrieve(env.id).config.type == "self_hosted"


def test_update_cannot_change_config_type(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    # When the config type is switched
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.environments.update(env.id, config={"type": "self_hosted"})
    # Then it is rejected with the documented code and nothing changed
    assert info.value.status_code == 400
    assert _error(info.value)["details"]["error_code"] == "invalid_config_type_change"
    assert client.beta.environments.retrieve(env.id).config.type == "cloud"


def test_update_deletes_metadata_key_with_null_and_keeps_the_rest(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="c", metadata={"a": "1", "b": "2"}, description="d")
    updated = client.beta.environments.update(env.id, metadata={"a": None, "c": "3"})
    assert updated.metadata == {"b": "2", "c": "3"}
    assert updated.description == "d" and updated.name == "c"
    assert client.beta.environments.retrieve(env.id).metadata == {"b": "2", "c": "3"}


def test_archive_hides_from_list_and_blocks_new_sessions(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="c")
    archived = client.beta.environments.archive(env.id)
    assert archived.archived_at is not None
    assert env.id not in [e.id for e in client.beta.environments.list()]
    assert env.id in [e.id for e in client.beta.environments.list(include_archived=True)]
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    assert _error(info.value)["details"]["error_code"] == "environment_archived"


def test_delete_returns_marker_and_then_404(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="c")
    deleted = client.beta.environments.delete(env.id)
    assert deleted.id == env.id and deleted.type == "environment_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.retrieve(env.id)


def test_unknown_id_is_404_environment_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.environments.retrieve("env_doesnotexist")
    assert info.value.status_code == 404
    err = _error(info.value)
    assert err["type"] == "not_found_error"
    assert err["details"]["error_code"] == "environment_not_found"
    assert "env_doesnotexist" in err["message"]


def test_environments_carry_their_state(client: anthropic.Anthropic) -> None:
    # Given an environment
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    # Then it is active, and archived once archived, as the hosted API reports (api-reference §9)
    assert env.to_dict()["state"] == "active"
    assert client.beta.environments.archive(env.id).to_dict()["state"] == "archived"
    assert client.beta.environments.retrieve(env.id).to_dict()["state"] == "archived"
