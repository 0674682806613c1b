"""Resource caps of deployments and sessions agree (api-reference §2.8: a deployment's `resources` "Maximum 500"; the
reference gives sessions none): every deployment the reference accepts can create its sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.deployments import DeploymentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from managed_agents.wiring import Runtime, build_local_runtime

WS = "wrkspc_caps"
HELLO = [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]


def repositories(n: int) -> list[dict[str, Any]]:
    return [{"type": "github_repository", "url": f"http://127.0.0.1:9/octo/repo{i}.git"} for i in range(n)]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)
    yield rt
    rt.close()


def test_a_deployment_with_the_maximum_500_resources_runs_a_session_with_all_of_them(runtime: Runtime) -> None:
    # Given an agent, an environment and a deployment with 500 resources (the reference's maximum)
    agent = runtime.agents.create(WS, AgentCreateParams(name="a", model="claude-sonnet-4-6"))
    env = runtime.environments.create(WS, EnvironmentCreateParams(name="e"))
    params = {"agent": agent["id"], "environment_id": env["id"], "name": "wide", "initial_events": HELLO}
    dep = runtime.deployments.create(
        WS, DeploymentCreateParams.model_validate({**params, "resources": repositories(500)})
    )
    # When it runs
    run = runtime.deployments.run_now(WS, str(dep["id"]))
    # Then its session was created with the 500 resources
    assert run["error"] is None and run["session_id"]
    session = runtime.sessions.get(WS, str(run["session_id"]))
    assert len(session["resources"]) == 500
    # And one more is refused, for a deployment and for a session alike
    with pytest.raises(pydantic.ValidationError, match="at most 500"):
        DeploymentCreateParams.model_validate({**params, "resources": repositories(501)})
    with pytest.raises(pydantic.ValidationError, match="at most 500"):
        SessionCreateParams.model_validate(
            {"agent": agent["id"], "environment_id": env["id"], "resources": repositories(501)}
        )
