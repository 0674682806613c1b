"""Platform overhead: a 10-turn conversation through our server vs the same 10 model calls made directly.

The server (`managed-agents serve`) and the scripted model run as separate processes (bench/_processes.py), as
they would for a user: a client in the server's own process would compete with it for one GIL. Both sides talk
to the same scripted model in the same run. The session side opens the session's event stream once, then per
turn sends a user.message and reads the stream up to that turn's session.status_idle, as a client would; the
direct side makes the same `messages.create` calls with the official SDK, carrying the conversation.

Each measurement alternates the two sides `--rounds` times and reports the medians.
Prints the wall-time ratio at 100 ms model latency (goal <= 1.1) and the per-turn overhead at 0 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import anthropic
from _common import emit
from _processes import Served, served

TURNS = 10


def through_platform(s: Served) -> float:
    client = anthropic.Anthropic(base_url=s.url, api_key=s.admin_key, max_retries=0)
    agent = client.beta.agents.create(name="bench", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="bench", config={"type": "cloud"})
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    with client.beta.sessions.events.stream(session.id) as stream:
        events = iter(stream)
        t0 = time.perf_counter()
        for turn in range(1, TURNS + 1):
            client.beta.sessions.events.send(
                session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": f"turn {turn}"}]}]
            )
            while next(events).type != "session.status_idle":
                pass
        return time.perf_counter() - t0


def direct(s: Served) -> float:
    client = anthropic.Anthropic(base_url=s.model_url, api_key="bench", max_retries=0)
    messages: list[dict[str, object]] = []
    t0 = time.perf_counter()
    for turn in range(1, TURNS + 1):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"turn {turn}"}]})
        reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=8192, messages=messages)  # type: ignore[arg-type]
        messages.append({"role": "assistant", "content": [b.model_dump() for b in reply.content]})
    return time.perf_counter() - t0


def measure(latency_ms: int, rounds: int) -> tuple[float, float]:
    with served(latency_ms=latency_ms) as s:
        through_platform(s)  # warm-up: imports, connections, SQLite pages
        direct(s)
        platform, plain = [], []
        for _ in range(rounds):
            platform.append(through_platform(s))
            plain.append(direct(s))
    return statistics.median(platform), statistics.median(plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    platform_s, direct_s = measure(100, args.rounds)
    emit(
        bench="platform_overhead",
        model_latency_ms=100,
        turns=TURNS,
        rounds=args.rounds,
        platform_s=round(platform_s, 3),
        direct_s=round(direct_s, 3),
        ratio=round(platform_s / direct_s, 3),
        goal="<= 1.1",
    )
    platform_s, direct_s = measure(0, args.rounds)
    emit(
        bench="platform_overhead",
        model_latency_ms=0,
        turns=TURNS,
        rounds=args.rounds,
        platform_ms_per_turn=round(platform_s / TURNS * 1000, 2),
        direct_ms_per_turn=round(direct_s / TURNS * 1000, 2),
        overhead_ms_per_turn=round((platform_s - direct_s) / TURNS * 1000, 2),
    )


if __name__ == "__main__":
    main()
