"""Mixed load: N concurrent event streams on M sessions while N event sends arrive at once (issue 18: 400 + 400).

The server (`managed-agents serve`) and the scripted model run as separate processes (bench/_processes.py); this
process only drives them. Streams and sends speak raw HTTP (httpx2), not the official SDK, so that this process's
own CPU (it shares the machine's cores with the server) stays small next to the server's.

1. M sessions are created and N SSE clients open `/events/stream`, round-robin over the sessions (each stream is
   open, i.e. subscribed, before any send).
2. `--rounds` times: N `user.message` sends fire at once, round-robin over the sessions (each starts or queues a
   model turn); every send's latency is timed from its request to its response. The next round starts when every
   send of this one has answered.
3. When every session is idle again, each stream is read until it delivered what `events.list` lists (or
   `--settle-s` passed); then the streams close.

Prints: send latency p50/p99/max (goal p99 <= 300 ms), send errors, events lost (listed but not streamed, per stream)
and duplicated (streamed twice), the server's CPU seconds during the sends and per turn, and its peak resident
memory (VmHWM) and RSS at the end.
Options: --streams N --sends N --sessions M --rounds R --latency-ms MS --profile py-spy|sample|cprofile.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from _common import emit
from _processes import Served, served


@dataclass
class Stream:
    session_id: str
    ids: list[str] = field(default_factory=list)
    error: str | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)


def _headers(key: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {key}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "managed-agents-2026-04-01",
        "content-type": "application/json",
    }


async def follow(http: httpx2.AsyncClient, s: Served, stream: Stream, stop: asyncio.Event) -> None:
    """Read one session's stream, keeping the `id:` of every event, until `stop`."""
    url = f"{s.url}/v1/sessions/{stream.session_id}/events/stream"
    try:
        async with http.stream("GET", url, headers=_headers(s.admin_key), timeout=None) as response:
            response.raise_for_status()
            stream.opened.set()
            lines = response.aiter_lines()
            while not stop.is_set():
                read = asyncio.ensure_future(anext(lines))
                halt = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({read, halt}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    return
                halt.cancel()
                line = read.result()
                if line.startswith("id: "):
                    stream.ids.append(line[4:])
    except (StopAsyncIteration, asyncio.CancelledError):
        return
    except Exception as exc:
        stream.error = f"{type(exc).__name__}: {exc}"[:200]
        stream.opened.set()


async def send(http: httpx2.AsyncClient, s: Served, session_id: str, text: str) -> tuple[float, str | None]:
    body = {"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]}
    t0 = time.perf_counter()
    try:
        r = await http.post(f"{s.url}/v1/sessions/{session_id}/events", headers=_headers(s.admin_key), json=body)
        error = None if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:120]}"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    return time.perf_counter() - t0, error


async def listed_ids(http: httpx2.AsyncClient, s: Served, session_id: str) -> list[str]:
    r = await http.get(f"{s.url}/v1/sessions/{session_id}/events?limit=1000", headers=_headers(s.admin_key))
    r.raise_for_status()
    return [e["id"] for e in r.json()["data"]]


async def all_idle(http: httpx2.AsyncClient, s: Served, sessions: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pending = set(sessions)
    while pending and time.monotonic() < deadline:
        for sid in list(pending):
            r = await http.get(f"{s.url}/v1/sessions/{sid}", headers=_headers(s.admin_key))
            if r.json().get("status") == "idle":
                pending.discard(sid)
        if pending:
            await asyncio.sleep(0.2)
    return not pending


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def main_async(args: argparse.Namespace) -> None:
    # keep-alive shorter than the server's 5 s, so a send never reuses a connection the server is closing
    keepalive = {"max_keepalive_connections": args.sends + 50, "keepalive_expiry": 2.0}
    limits = httpx2.Limits(max_connections=args.streams + args.sends + 50, **keepalive)
    with served(latency_ms=args.latency_ms, profile=args.profile) as s:
        async with httpx2.AsyncClient(limits=limits, timeout=120) as http:
            h = _headers(s.admin_key)
            agent = await http.post(f"{s.url}/v1/agents", headers=h, json={"name": "b", "model": "claude-sonnet-4-6"})
            env_body = {"name": "b", "config": {"type": "cloud"}}
            env = await http.post(f"{s.url}/v1/environments", headers=h, json=env_body)
            create = {"agent": agent.json()["id"], "environment_id": env.json()["id"]}
            sessions = []
            for _ in range(args.sessions):
                sessions.append((await http.post(f"{s.url}/v1/sessions", headers=h, json=create)).json()["id"])
            streams = [Stream(sessions[i % len(sessions)]) for i in range(args.streams)]
            stop = asyncio.Event()
            followers = [asyncio.create_task(follow(http, s, st, stop)) for st in streams]
            await asyncio.wait_for(asyncio.gather(*(st.opened.wait() for st in streams)), 120)
            rss_before = memory_kb(s.server_pid)

            s.profile_window(start=True)
            cpu0 = s.cpu()
            t0 = time.perf_counter()
            latencies: list[float] = []
            errors: list[str] = []
            for r in range(args.rounds):
                results = await asyncio.gather(
                    *(send(http, s, sessions[i % len(sessions)], f"round {r} send {i}") for i in range(args.sends))
                )
                latencies += [t for t, _ in results]
                errors += [e for _, e in results if e]
            sends_s = time.perf_counter() - t0
            idle = await all_idle(http, s, sessions, timeout=args.settle_s + 120)
            wall = time.perf_counter() - t0
            cpu1 = s.cpu()
            s.profile_window(start=False)

            listed = {sid: await listed_ids(http, s, sid) for sid in sessions}
            deadline = time.monotonic() + args.settle_s
            while time.monotonic() < deadline and any(len(st.ids) < len(listed[st.session_id]) for st in streams):
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*followers, return_exceptions=True)
            rss_after = memory_kb(s.server_pid)

    lost = sum(len(set(listed[st.session_id]) - set(st.ids)) for st in streams)
    duplicated = sum(len(st.ids) - len(set(st.ids)) for st in streams)
    unlisted = sum(len(set(st.ids) - set(listed[st.session_id])) for st in streams)
    out_of_order = sum(1 for st in streams if st.ids != [i for i in listed[st.session_id] if i in set(st.ids)])
    turns = args.sends * args.rounds
    emit(
        bench="mixed_load",
        streams=args.streams,
        sends=args.sends,
        rounds=args.rounds,
        sessions=args.sessions,
        model_latency_ms=args.latency_ms,
        send_p50_ms=round(statistics.median(latencies) * 1000, 1),
        send_p99_ms=round(pct(latencies, 0.99) * 1000, 1),
        send_max_ms=round(max(latencies) * 1000, 1),
        goal="send p99 <= 300 ms, 0 lost, 0 duplicated",
        send_errors=len(errors),
        error_samples=errors[:3],
        stream_errors=[st.error for st in streams if st.error][:3],
        events_listed=sum(len(listed[st.session_id]) for st in streams),
        events_streamed=sum(len(st.ids) for st in streams),
        lost=lost,
        duplicated=duplicated,
        streamed_not_listed=unlisted,
        streams_out_of_order=out_of_order,
        all_idle=idle,
        sends_s=round(sends_s, 3),
        wall_s=round(wall, 3),
        server_cpu_s=round(cpu1["server"] - cpu0["server"], 2),
        server_cpu_ms_per_turn=round((cpu1["server"] - cpu0["server"]) * 1000 / turns, 2),
        client_cpu_s=round(cpu1["clients"] - cpu0["clients"], 2),
        server_rss_mb={
            "before_sends": round(rss_before.get("VmRSS", 0) / 1024, 1),
            "after": round(rss_after.get("VmRSS", 0) / 1024, 1),
            "peak": round(rss_after.get("VmHWM", 0) / 1024, 1),
        },
        profile=str(s.profile_out) if args.profile else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--sends", type=int, default=400)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--settle-s", type=float, default=30)
    parser.add_argument("--profile", choices=["py-spy", "sample", "cprofile"], default=None)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
