"""Inference never waits for the sandbox: time to the first `agent.message` with a 2 s provisioning delay vs none.

A cloud session whose agent has the sandbox toolset starts provisioning its sandbox when the user message
arrives; the first model turn runs meanwhile. Measured from the send to the `agent.message` being logged, over
several sessions, with the embedded provisioner delayed by `--delay` seconds vs not delayed, same run.
Goal (issue 3): ratio ≤ 1.1.

    uv run python bench/sandbox_provisioning_delay.py [--sessions 5] [--delay 2] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import emit, stack, user_message, wait_until


def first_message_seconds(delay: float, sessions: int, latency_ms: float) -> list[float]:
    out = []
    with stack(latency_ms=latency_ms, sandbox_start_delay_seconds=delay) as s:
        client = s.client()
        agent = client.beta.agents.create(
            name="bench", model="claude-sonnet-4-6", tools=[{"type": "agent_toolset_20260401"}]
        )
        env = client.beta.environments.create(name="bench", config={"type": "cloud"})
        for _ in range(sessions):
            sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
            t0 = time.perf_counter()
            user_message(client, sid, "hello")
            wait_until(lambda sid=sid: client.beta.sessions.events.list(sid, types=["agent.message"]).data, timeout=60)
            out.append(time.perf_counter() - t0)
            assert s.rt.resources.find("work", "session_id", [sid]), "no sandbox was requested"
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    base = first_message_seconds(0.0, args.sessions, args.latency_ms)
    delayed = first_message_seconds(args.delay, args.sessions, args.latency_ms)
    b50, d50 = statistics.median(base), statistics.median(delayed)
    emit(
        bench="sandbox_provisioning_delay",
        sessions=args.sessions,
        provisioning_delay_s=args.delay,
        model_latency_ms=args.latency_ms,
        no_delay_p50_ms=round(b50 * 1000, 1),
        delayed_p50_ms=round(d50 * 1000, 1),
        ratio=round(d50 / b50, 3),
        goal_ratio=1.1,
    )


if __name__ == "__main__":
    main()
