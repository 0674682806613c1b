"""Platform overhead: a 10-turn conversation through our server vs the same 10 model calls made directly.

Both sides talk to the same scripted model in the same run. The session side sends a user.message and polls
`events.list` every 5 ms until the turn's session.status_idle is in the log, as a client would.
Prints the wall-time ratio at 100 ms model latency (goal <= 1.1) and the per-turn overhead at 0 ms.
"""

from __future__ import annotations

import time

import anthropic
from _common import Stack, emit, idle_count, stack, user_message, wait_until

TURNS = 10


def through_platform(s: Stack) -> float:
    client = s.client()
    agent_id, env_id = s.agent_env(client)
    session = client.beta.sessions.create(agent=agent_id, environment_id=env_id)
    t0 = time.perf_counter()
    for turn in range(1, TURNS + 1):
        user_message(client, session.id, f"turn {turn}")
        wait_until(lambda turn=turn: idle_count(client, session.id) >= turn, interval=0.005)
    return time.perf_counter() - t0


def direct(s: Stack) -> float:
    client = anthropic.Anthropic(base_url=s.model.base_url, api_key="bench", max_retries=0)
    messages: list[dict[str, object]] = []
    t0 = time.perf_counter()
    for turn in range(1, TURNS + 1):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"turn {turn}"}]})
        reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=8192, messages=messages)  # type: ignore[arg-type]
        messages.append({"role": "assistant", "content": [b.model_dump() for b in reply.content]})
    return time.perf_counter() - t0


def main() -> None:
    with stack(latency_ms=100) as s:
        through_platform(s)  # warm-up: imports, connections, SQLite pages
        platform_s, direct_s = through_platform(s), direct(s)
    emit(
        bench="platform_overhead",
        model_latency_ms=100,
        turns=TURNS,
        platform_s=round(platform_s, 3),
        direct_s=round(direct_s, 3),
        ratio=round(platform_s / direct_s, 3),
        goal="<= 1.1",
    )
    with stack(latency_ms=0) as s:
        through_platform(s)
        platform_s, direct_s = through_platform(s), direct(s)
    emit(
        bench="platform_overhead",
        model_latency_ms=0,
        turns=TURNS,
        platform_ms_per_turn=round(platform_s / TURNS * 1000, 2),
        direct_ms_per_turn=round(direct_s / TURNS * 1000, 2),
        overhead_ms_per_turn=round((platform_s - direct_s) / TURNS * 1000, 2),
    )


if __name__ == "__main__":
    main()
