"""Shared setup of the MCP proxy tests: an embedded runtime (no orchestrator) and helpers to make sessions."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from managed_agents.mcp_proxy import McpProxy, McpProxySettings
from managed_agents.services.vaults import VaultService
from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from managed_agents.wire.vaults import CredentialCreateParams, VaultCreateParams
from managed_agents.wiring import Runtime, build_local_runtime

WS = "wrkspc_mcp_tests"


@dataclass
class World:
    rt: Runtime
    proxy: McpProxy

    @property
    def vaults(self) -> VaultService:
        assert self.rt.vaults is not None
        return self.rt.vaults

    def vault(self) -> str:
        return str(self.vaults.create(WS, VaultCreateParams(display_name="user"))["id"])

    def credential(self, vault_id: str, auth: dict[str, Any]) -> str:
        params = CredentialCreateParams.model_validate({"auth": auth})
        return str(self.vaults.create_credential(WS, vault_id, params)["id"])

    def session(self, servers: dict[str, str], vault_ids: list[str]) -> str:
        agent = self.rt.agents.create(
            WS,
            AgentCreateParams.model_validate(
                {
                    "name": "mcp",
                    "model": "claude-sonnet-4-6",
                    "mcp_servers": [{"type": "url", "name": n, "url": u} for n, u in servers.items()],
                    "tools": [{"type": "mcp_toolset", "mcp_server_name": n} for n in servers],
                }
            ),
        )
        env = self.rt.environments.create(
            WS, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "self_hosted"}})
        )
        sess = self.rt.sessions.create(
            WS,
            SessionCreateParams.model_validate(
                {"agent": agent["id"], "environment_id": env["id"], "vault_ids": vault_ids}
            ),
        )
        return str(sess["id"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    rt = build_local_runtime(ServerSettings(data_dir=str(tmp_path / "data")), start_orchestrator=False)
    assert rt.mcp_proxy is not None
    rt.mcp_proxy.close()  # the tests use their own proxy with short timeouts
    assert rt.secrets is not None
    proxy = McpProxy(
        rt.resources,
        rt.secrets,
        rt.clock,
        McpProxySettings(connect_timeout=3.0, list_timeout=3.0, call_timeout=3.0, refresh_timeout=3.0),
    )
    assert rt.vaults is not None
    rt.vaults.prober = proxy
    rt.mcp_proxy = proxy
    try:
        yield World(rt, proxy)
    finally:
        rt.close()


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record of every logger, DEBUG and up (the canary checks look through all of them)."""
    caplog.set_level(logging.DEBUG)
    return caplog
