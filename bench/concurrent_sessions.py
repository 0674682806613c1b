"""Concurrency: 100 sessions x 5 turns at once vs one session x 5 turns, scripted model at 50 ms latency.

Each session is driven by its own client thread (send a user.message, poll events.list until the turn's
session.status_idle). Prints the wall-time ratio (goal <= 2), errors, and the log check of every session:
5 user.message and 5 agent.message events, a gapless sequence, unique ids.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
from _common import Stack, emit, idle_count, stack, user_message, wait_until

SESSIONS, TURNS, LATENCY_MS, POLL_S = 100, 5, 50, 0.02


def drive(client: anthropic.Anthropic, session_id: str) -> None:
    for turn in range(1, TURNS + 1):
        user_message(client, session_id, f"turn {turn}")
        wait_until(lambda turn=turn: idle_count(client, session_id) >= turn, timeout=120, interval=POLL_S)


def check_log(s: Stack, client: anthropic.Anthropic, session_id: str) -> list[str]:
    problems: list[str] = []
    events: list[Any] = list(client.beta.sessions.events.list(session_id, limit=1000))
    types = [e.type for e in events]
    if types.count("user.message") != TURNS:
        problems.append(f"{session_id}: {types.count('user.message')} user.message")
    if types.count("agent.message") != TURNS:
        problems.append(f"{session_id}: {types.count('agent.message')} agent.message")
    ids = [e.id for e in events]
    if len(ids) != len(set(ids)):
        problems.append(f"{session_id}: duplicate ids")
    seqs = [e.seq for e in s.rt.events.read(session_id, limit=10_000)]
    if seqs != list(range(1, len(seqs) + 1)) or len(seqs) != len(events):
        problems.append(f"{session_id}: sequence not gapless ({len(seqs)} stored, {len(events)} listed)")
    return problems


def run(s: Stack, n: int) -> dict[str, Any]:
    client = s.client(timeout=60)
    agent_id, env_id = s.agent_env(client)
    ids = [client.beta.sessions.create(agent=agent_id, environment_id=env_id).id for _ in range(n)]
    errors: list[str] = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        for fut in [pool.submit(drive, client, sid) for sid in ids]:
            try:
                fut.result()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
    wall = time.perf_counter() - t0
    problems = [p for sid in ids for p in check_log(s, client, sid)]
    return {"wall_s": wall, "errors": errors, "log_problems": problems}


def main() -> None:
    with stack(latency_ms=LATENCY_MS) as s:
        run(s, 1)  # warm-up
        one = run(s, 1)
        many = run(s, SESSIONS)
    emit(
        bench="concurrent_sessions",
        model_latency_ms=LATENCY_MS,
        turns=TURNS,
        sessions=SESSIONS,
        one_session_s=round(one["wall_s"], 3),
        concurrent_s=round(many["wall_s"], 3),
        ratio=round(many["wall_s"] / one["wall_s"], 3),
        goal="<= 2",
        errors=len(one["errors"]) + len(many["errors"]),
        error_samples=(one["errors"] + many["errors"])[:3],
        lost_or_duplicated=len(one["log_problems"]) + len(many["log_problems"]),
        problem_samples=(one["log_problems"] + many["log_problems"])[:3],
    )


if __name__ == "__main__":
    main()
