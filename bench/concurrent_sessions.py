"""Concurrency: 100 sessions x 5 turns at once vs one session x 5 turns, scripted model at 50 ms latency.

The server (`managed-agents serve`) and the scripted model (`managed-agents scripted-model`) run as separate
processes; this process only drives them, with one asyncio task per session on the official AsyncAnthropic
client. Each task opens the session's event stream, then per turn sends a user.message and reads the stream
up to that turn's session.status_idle. One session is timed first, in the same run, against the same server.

Checks per session: the ids the stream delivered equal the ids `events.list` returns (nothing lost, nothing
duplicated, same order), 5 user.message + 5 agent.message, and the stored sequence is gapless (read from the
server's SQLite file).

The floor: the same pattern with no platform at all, N tasks x T sequential streaming `messages.create` calls
made with the official AsyncAnthropic client straight to the same scripted model, 1 task vs N tasks, in the same
run. Its ratio is what this machine's cores allow the client and model processes alone; the platform's ratio
cannot be below it. (On 2 cores the clients' own CPU per turn already bounds the wall time.)

Prints: the wall-time ratio (goal <= 2), the direct floor ratio and ours over it (goal <= 1.5) with the lowest value
the cores allow given the CPU the processes used (`ratio_over_floor_cpu_bound`: as measured, with the server at 3 ms
per turn, with a server that costs nothing; the clients share the cores), errors, log problems,
the server's CPU per turn (its process CPU time over the turns, goal <= 3 ms) and context switches per turn (its
threads', voluntary and involuntary: a count of GIL and lock hand-overs), per-turn CPU of each process,
events/s.
Options: --sessions N --turns N --latency-ms N --profile py-spy|sample|cprofile (report: bench/profile-<mode>.txt),
--switch-interval S (the server's sys.setswitchinterval, to measure GIL hand-over effects), --workers N (the
server's processes, `serve --workers`; default 1; the server's CPU is then its whole process tree's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import anthropic
from _common import emit
from _processes import Served, context_switches, served


@dataclass
class SessionRun:
    session_id: str
    streamed: list[str] = field(default_factory=list)
    error: str | None = None


async def drive(client: anthropic.AsyncAnthropic, run: SessionRun, turns: int) -> None:
    sid = run.session_id
    try:
        async with await client.beta.sessions.events.stream(sid) as stream:
            events = stream.__aiter__()
            for turn in range(1, turns + 1):
                await client.beta.sessions.events.send(
                    sid, events=[{"type": "user.message", "content": [{"type": "text", "text": f"turn {turn}"}]}]
                )
                while True:
                    ev = await asyncio.wait_for(events.__anext__(), 120)
                    run.streamed.append(ev.id)
                    if ev.type == "session.status_idle":
                        break
    except Exception as exc:
        run.error = f"{sid}: {type(exc).__name__}: {exc}"[:300]


async def check(client: anthropic.AsyncAnthropic, s: Served, run: SessionRun, turns: int) -> list[str]:
    sid = run.session_id
    listed = [e async for e in client.beta.sessions.events.list(sid, limit=1000)]
    problems: list[str] = []
    ids = [e.id for e in listed]
    if ids != run.streamed:
        lost = len(set(ids) - set(run.streamed))
        dup = len(run.streamed) - len(set(run.streamed))
        problems.append(f"{sid}: stream != events.list ({lost} not streamed, {dup} streamed twice)")
    types = [e.type for e in listed]
    for t in ("user.message", "agent.message"):
        if types.count(t) != turns:
            problems.append(f"{sid}: {types.count(t)} {t}, expected {turns}")
    with sqlite3.connect(f"file:{s.data_dir / 'managed_agents.db'}?mode=ro", uri=True) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM events WHERE session_id = ? ORDER BY seq", (sid,))]
    if seqs != list(range(1, len(ids) + 1)):
        problems.append(f"{sid}: stored sequence not gapless 1..{len(ids)} ({len(seqs)} rows)")
    return problems


async def run_batch(s: Served, n: int, turns: int) -> dict[str, Any]:
    async with anthropic.AsyncAnthropic(base_url=s.url, api_key=s.admin_key, max_retries=0, timeout=120) as client:
        agent = await client.beta.agents.create(name="bench", model="claude-sonnet-4-6")
        env = await client.beta.environments.create(name="bench", config={"type": "cloud"})
        runs = [
            SessionRun((await client.beta.sessions.create(agent=agent.id, environment_id=env.id)).id) for _ in range(n)
        ]
        s.profile_window(start=True)
        switches0 = context_switches(s.server_pid)
        cpu0 = s.cpu()
        t0 = time.perf_counter()
        await asyncio.gather(*(drive(client, r, turns) for r in runs))
        wall = time.perf_counter() - t0
        cpu1 = s.cpu()
        switches1 = context_switches(s.server_pid)
        s.profile_window(start=False)
        problems = [p for r in runs for p in await check(client, s, r, turns)]
    return {
        "wall_s": wall,
        "errors": [r.error for r in runs if r.error],
        "problems": problems,
        "events": sum(len(r.streamed) for r in runs),
        "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0},
        "switches": {k: switches1[k] - switches0[k] for k in switches0},
        "turns": n * turns,
    }


async def direct_batch(s: Served, n: int, turns: int) -> dict[str, Any]:
    """N tasks x T streaming messages.create straight to the scripted model: the platform-free floor."""
    async with anthropic.AsyncAnthropic(base_url=s.model_url, api_key="bench", max_retries=0, timeout=120) as model:

        async def one() -> None:
            messages: list[Any] = []
            for turn in range(1, turns + 1):
                messages.append({"role": "user", "content": f"turn {turn}"})
                async with model.messages.stream(model="claude-sonnet-4-6", max_tokens=1024, messages=messages) as st:
                    reply = await st.get_final_message()
                messages.append({"role": "assistant", "content": [b.model_dump() for b in reply.content]})

        cpu0 = s.cpu()
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - t0
        cpu1 = s.cpu()
    return {"wall_s": wall, "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0 if k != "server"}, "turns": n * turns}


def per_turn_ms(batch: dict[str, Any]) -> dict[str, float]:
    return {k: round(v * 1000 / batch["turns"], 2) for k, v in batch["cpu"].items()}


def cpu_bounds(one: dict[str, Any], many: dict[str, Any], floor_ratio: float) -> dict[str, float]:
    """The lowest ratio over the floor the cores allow, given the CPU the concurrent batch's processes used (server,
    model and the clients, this process, all on this machine's cores): the batch cannot take less wall time than its
    CPU over the cores. As measured, with the server at its goal (3 ms per turn) and with a server that costs nothing.
    Above the goal (1.5), the goal cannot be met here whatever the server does, because of the clients' own CPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    others = sum(v for k, v in many["cpu"].items() if k != "server")

    def over_floor(server_s: float) -> float:
        return round((others + server_s) / cores / one["wall_s"] / floor_ratio, 3)

    return {
        "measured": over_floor(many["cpu"]["server"]),
        "server_at_3ms_per_turn": over_floor(0.003 * many["turns"]),
        "server_free": over_floor(0.0),
    }


async def main_async(args: argparse.Namespace) -> None:
    extra_env = {"BENCH_SWITCH_INTERVAL": str(args.switch_interval)} if args.switch_interval else {}
    profile = args.profile or ("none" if args.switch_interval else None)
    with served(latency_ms=args.latency_ms, profile=profile, extra_env=extra_env, workers=args.workers) as s:
        await run_batch(s, 1, args.turns)  # warm-up: imports, first connections, SQLite pages
        one = await run_batch(s, 1, args.turns)
        many = await run_batch(s, args.sessions, args.turns)
        await direct_batch(s, 1, args.turns)  # warm-up
        direct_one = await direct_batch(s, 1, args.turns)
        direct_many = await direct_batch(s, args.sessions, args.turns)
    emit(
        bench="concurrent_sessions",
        model_latency_ms=args.latency_ms,
        turns=args.turns,
        sessions=args.sessions,
        one_session_s=round(one["wall_s"], 3),
        concurrent_s=round(many["wall_s"], 3),
        ratio=round(many["wall_s"] / one["wall_s"], 3),
        goal="<= 2",
        direct_one_s=round(direct_one["wall_s"], 3),
        direct_concurrent_s=round(direct_many["wall_s"], 3),
        direct_floor_ratio=round(direct_many["wall_s"] / direct_one["wall_s"], 3),
        ratio_over_floor=round((many["wall_s"] / one["wall_s"]) / (direct_many["wall_s"] / direct_one["wall_s"]), 3),
        ratio_over_floor_goal="<= 1.5",
        ratio_over_floor_cpu_bound=cpu_bounds(one, many, direct_many["wall_s"] / direct_one["wall_s"]),
        server_cpu_ms_per_turn=per_turn_ms(many)["server"],
        server_cpu_ms_per_turn_goal="<= 3",
        server_context_switches_per_turn={k: round(v / many["turns"], 1) for k, v in many["switches"].items()},
        direct_cpu_ms_per_turn=per_turn_ms(direct_many),
        errors=len(one["errors"]) + len(many["errors"]),
        error_samples=(one["errors"] + many["errors"])[:3],
        lost_or_duplicated=len(one["problems"]) + len(many["problems"]),
        problem_samples=(one["problems"] + many["problems"])[:3],
        events=many["events"],
        events_per_s=round(many["events"] / many["wall_s"], 1),
        cpu_ms_per_turn_concurrent=per_turn_ms(many),
        cpu_ms_per_turn_one_session=per_turn_ms(one),
        profile=str(s.profile_out) if args.profile else None,
        server_switch_interval_s=args.switch_interval or 0.005,
        workers=args.workers,
        load_average_1m=round(os.getloadavg()[0], 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--profile", choices=["py-spy", "sample", "cprofile"], default=None)
    parser.add_argument("--switch-interval", type=float, default=None)
    parser.add_argument("--workers", type=int, default=1)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
