"""MCP proxy overhead: one tools/call through `McpProxy.call_tool` vs the same call made directly with the `mcp` SDK.

Both sides use a warm connection to the same real MCP server (official SDK, streamable HTTP, bearer auth, loopback)
in the same run, in alternating rounds. The proxy side pays what the harness pays per call: resolving the session's
server and vault credential (SQLite + the encrypted secret file) and the hop to the proxy's event loop thread.
Prints per-call p50/p90 for both and the p50 ratio (goal <= 1.2).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from _common import emit
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from managed_agents.settings import ServerSettings
from managed_agents.testing.mcp_servers import McpTestServer
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from managed_agents.wire.vaults import CredentialCreateParams, VaultCreateParams
from managed_agents.wiring import build_local_runtime

TOKEN = "bench-token-0123456789"
ROUNDS = 6
CALLS_PER_ROUND = 50
WS = "wrkspc_bench"


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, McpTestServer(bearer_token=TOKEN) as srv:
        rt = build_local_runtime(ServerSettings(data_dir=str(Path(tmp) / "data")), start_orchestrator=False)
        assert rt.vaults is not None and rt.mcp_proxy is not None
        proxy = rt.mcp_proxy
        agent = rt.agents.create(
            WS,
            AgentCreateParams.model_validate(
                {
                    "name": "bench",
                    "model": "claude-sonnet-4-6",
                    "mcp_servers": [{"type": "url", "name": "bench", "url": srv.url}],
                    "tools": [{"type": "mcp_toolset", "mcp_server_name": "bench"}],
                }
            ),
        )
        env = rt.environments.create(WS, EnvironmentCreateParams.model_validate({"name": "e"}))
        vault = rt.vaults.create(WS, VaultCreateParams(display_name="bench"))
        rt.vaults.create_credential(
            WS,
            str(vault["id"]),
            CredentialCreateParams.model_validate(
                {"auth": {"type": "static_bearer", "token": TOKEN, "mcp_server_url": srv.url}}
            ),
        )
        sid = str(
            rt.sessions.create(
                WS,
                SessionCreateParams.model_validate(
                    {"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vault["id"]]}
                ),
            )["id"]
        )
        proxied: list[float] = []
        direct: list[float] = []

        def proxy_round(n: int) -> None:
            for i in range(n):
                t0 = time.perf_counter()
                result = proxy.call_tool(sid, "bench", "echo", {"text": f"p{i}"})
                proxied.append(time.perf_counter() - t0)
                assert not result.is_error

        async def direct_rounds() -> None:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(headers=headers) as http:
                async with streamable_http_client(srv.url, http_client=http) as (read, write, _):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        await session.list_tools()
                        await session.call_tool("echo", {"text": "warm"})
                        for _ in range(ROUNDS):
                            await anyio.to_thread.run_sync(proxy_round, CALLS_PER_ROUND)
                            for i in range(CALLS_PER_ROUND):
                                t0 = time.perf_counter()
                                result = await session.call_tool("echo", {"text": f"d{i}"})
                                direct.append(time.perf_counter() - t0)
                                assert not result.isError

        proxy.list_tools(sid, "bench")
        proxy_round(5)  # warm: connection, imports, SQLite pages
        proxied.clear()
        anyio.run(direct_rounds)
        resolve: list[float] = []
        for _ in range(300):  # the proxy's own per-call work before the MCP exchange
            t0 = time.perf_counter()
            proxy._target(sid, "bench")
            resolve.append(time.perf_counter() - t0)
        rt.close()
    p50_proxy, p50_direct = statistics.median(proxied), statistics.median(direct)
    emit(
        bench="mcp_proxy_overhead",
        calls_each=len(proxied),
        proxy_p50_ms=round(p50_proxy * 1000, 3),
        proxy_p90_ms=round(pct(proxied, 90) * 1000, 3),
        direct_p50_ms=round(p50_direct * 1000, 3),
        direct_p90_ms=round(pct(direct, 90) * 1000, 3),
        overhead_p50_ms=round((p50_proxy - p50_direct) * 1000, 3),
        resolve_p50_ms=round(statistics.median(resolve) * 1000, 3),
        ratio_p50=round(p50_proxy / p50_direct, 3),
        goal="<= 1.2",
    )


if __name__ == "__main__":
    main()
