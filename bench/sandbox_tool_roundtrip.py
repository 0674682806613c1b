"""Tool round trip through a warm cloud sandbox vs the same tool run directly by the SDK toolset in-process.

Round trip = `agent.tool_use` logged → `agent.tool_result` logged (the log's own timestamps) for `bash` with
`true`, the sandbox being the official worker subprocess the embedded provisioner starts. Direct = the SDK's
reference `bash` tool called in this process. Goal (issue 3): round trip p50 ≤ direct p50 + 50 ms.

    uv run python bench/sandbox_tool_roundtrip.py [--calls 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from _common import emit, stack, user_message, wait_until


def direct_bash(calls: int) -> list[float]:
    from anthropic.lib.tools._tool_dispatch import run_runnable_tool
    from anthropic.lib.tools.agent_toolset import AgentToolContext, beta_agent_toolset_20260401

    async def run() -> list[float]:
        with tempfile.TemporaryDirectory() as tmp:
            async with AgentToolContext(workdir=tmp) as ctx:
                bash = next(t for t in beta_agent_toolset_20260401(ctx) if t.name == "bash")
                await run_runnable_tool(bash, {"command": "true"})  # warm: the shell starts on first use
                out = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    await run_runnable_tool(bash, {"command": "true"})
                    out.append(time.perf_counter() - t0)
                return out

    return asyncio.run(run())


def sandbox_bash(calls: int) -> tuple[list[float], float]:
    with stack(latency_ms=0) as s:
        client = s.client()
        agent = client.beta.agents.create(
            name="bench", model="claude-sonnet-4-6", tools=[{"type": "agent_toolset_20260401"}]
        )
        env = client.beta.environments.create(name="bench", config={"type": "cloud"})
        sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
        steps = [
            {"content": [{"type": "tool_use", "id": f"toolu_{i}", "name": "bash", "input": {"command": "true"}}]}
            for i in range(calls + 1)
        ]
        s.model.push(*steps, "done")
        t0 = time.perf_counter()
        user_message(client, sid, "go")

        def finished() -> bool:
            evs = client.beta.sessions.events.list(sid, limit=1000, types=["session.status_idle"]).data
            return bool(evs)

        wait_until(finished, timeout=300)
        total = time.perf_counter() - t0
        events = list(client.beta.sessions.events.list(sid, limit=1000))
        logged = {e.id: e.processed_at for e in events if e.type == "agent.tool_use"}
        trips = [
            (e.processed_at - logged[e.tool_use_id]).total_seconds()
            for e in events
            if e.type == "agent.tool_result" and not e.is_error
        ]
        assert len(trips) == calls + 1, f"expected {calls + 1} results, got {len(trips)}"
        return trips[1:], total  # the first call also waits for the sandbox to start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    direct = direct_bash(args.calls)
    trips, total = sandbox_bash(args.calls)
    d50, s50 = statistics.median(direct) * 1000, statistics.median(trips) * 1000
    emit(
        bench="sandbox_tool_roundtrip",
        calls=args.calls,
        direct_p50_ms=round(d50, 2),
        sandbox_p50_ms=round(s50, 2),
        sandbox_p90_ms=round(statistics.quantiles(trips, n=10)[-1] * 1000, 2),
        overhead_p50_ms=round(s50 - d50, 2),
        goal_overhead_ms=50,
        session_wall_s=round(total, 2),
    )


if __name__ == "__main__":
    main()
