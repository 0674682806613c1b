"""Mixed load: N concurrent event streams on M sessions while N event sends arrive at once (issue 18: 400 + 400).

The server (`managed-agents serve`) and the scripted model run as separate processes (bench/_processes.py); this
process reads the streams; the sends come from a process of their own (bench/_send_client.py). Both speak raw
HTTP/1.1 on asyncio streams, not the official SDK nor a client library, so that the clients' CPU (they share the
machine's cores with the server) stays small next to the server's and a client's own queue is not what is timed.

1. M sessions are created and N SSE clients open `/events/stream`, round-robin over the sessions (each stream is
   open, i.e. subscribed, before any send).
2. `--rounds` times: N `user.message` sends fire at once, round-robin over the sessions (each starts or queues a
   model turn), each on a connection opened just before (not timed); every send's latency is timed from its
   request's write to its whole response. The next round starts when every send of this one has answered.
3. When every session is idle again, each stream is read until it delivered what `events.list` lists (or
   `--settle-s` passed); then the streams close.

Prints: send latency p50/p99/max as the sender saw it (goal p99 <= 300 ms) and as the server timed it
(`server_side_ms`, from its `x-bench-timing` header: total, queued before the handler ran, in the handler before,
in and after the service call, the event loop's worst lag meanwhile), send errors, events lost (listed but not
streamed, per stream) and duplicated (streamed twice), the server's CPU seconds during the sends and per turn, the
clients' and the model's CPU, the server's CPU per send until each round's last answer, the server's RSS before
and after and its peak (VmHWM; summed over the workers), the load average before and after.
Options: --streams N --sends N --sessions M --rounds R --latency-ms MS --workers N --profile py-spy|sample|cprofile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
from _common import emit
from _processes import Served, cpu_seconds, served, tree_pids


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


async def follow(s: Served, stream: Stream) -> None:
    """Read one session's stream (raw HTTP/1.1 on asyncio streams: chunked, `id:` lines kept) until cancelled."""
    url = urlsplit(s.url)
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        head = f"GET /v1/sessions/{stream.session_id}/events/stream HTTP/1.1\r\nhost: {url.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in _headers(s.admin_key).items() if k != "content-type")
        writer.write((head + "accept: text/event-stream\r\n\r\n").encode())
        status = (await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"HTTP {status.decode()}")
        stream.opened.set()
        rest = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return
            *lines, rest = (rest + chunk[:-2]).split(b"\n")
            stream.ids += [line[4:].decode() for line in lines if line.startswith(b"id: ")]
    except asyncio.CancelledError:
        return
    except Exception as exc:
        stream.error = f"{type(exc).__name__}: {exc}"[:200]
        stream.opened.set()
    finally:
        if writer is not None:
            writer.close()


class Sender:
    """bench/_send_client.py in its own process: one round of sends per call."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Sender:
        client = Path(__file__).with_name("_send_client.py")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(client), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def round(self, s: Served, sends: list[tuple[str, str]]) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"url": s.url, "key": s.admin_key, "sends": sends}) + "\n").encode())
        await self.proc.stdin.drain()
        answer: dict[str, Any] = json.loads(await self.proc.stdout.readline())
        return answer


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


def tree_kb(pid: int, field_: str) -> int:
    """A /proc status field (kB) summed over a process and its descendants (serve --workers N)."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += memory_kb(p).get(field_, 0)
        except OSError:
            continue
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 1), "p99": round(pct(values, 0.99), 1)} if values else {}


async def main_async(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    limits = httpx2.Limits(max_connections=50)
    served_ = served(latency_ms=args.latency_ms, profile=args.profile, workers=args.workers, timing=True)
    with served_ as s:
        async with httpx2.AsyncClient(limits=limits, timeout=120) as http, Sender() as sender:
            h = _headers(s.admin_key)
            agent = await http.post(f"{s.url}/v1/agents", headers=h, json={"name": "b", "model": "claude-sonnet-4-6"})
            env_body = {"name": "b", "config": {"type": "cloud"}}
            env = await http.post(f"{s.url}/v1/environments", headers=h, json=env_body)
            create = {"agent": agent.json()["id"], "environment_id": env.json()["id"]}
            sessions = []
            for _ in range(args.sessions):
                sessions.append((await http.post(f"{s.url}/v1/sessions", headers=h, json=create)).json()["id"])
            streams = [Stream(sessions[i % len(sessions)]) for i in range(args.streams)]
            followers = [asyncio.create_task(follow(s, st)) for st in streams]
            await asyncio.wait_for(asyncio.gather(*(st.opened.wait() for st in streams)), 120)
            rss_before = memory_kb(s.server_pid)
            if args.workers > 1:
                rss_before = {"VmRSS": tree_kb(s.server_pid, "VmRSS")}

            s.profile_window(start=True)
            cpu0 = s.cpu()
            sender_cpu0 = cpu_seconds(sender.pid)
            t0 = time.perf_counter()
            latencies: list[float] = []
            errors: list[str] = []
            server: list[dict[str, float]] = []
            connect_s: list[float] = []
            answered_cpu = 0.0  # the server's CPU from each round's first send to its last answer
            for r in range(args.rounds):
                sends = [(sessions[i % len(sessions)], f"round {r} send {i}") for i in range(args.sends)]
                round_cpu = s.cpu()["server"]
                answer = await sender.round(s, sends)
                answered_cpu += s.cpu()["server"] - round_cpu
                latencies += answer["latencies"]
                errors += answer["errors"]
                server += answer["server"]
                connect_s.append(round(answer["connect_s"], 3))
            sends_s = time.perf_counter() - t0
            idle = await all_idle(http, s, sessions, timeout=args.settle_s + 120)
            wall = time.perf_counter() - t0
            cpu1 = s.cpu()
            sender_cpu = cpu_seconds(sender.pid) - sender_cpu0
            s.profile_window(start=False)

            listed = {sid: await listed_ids(http, s, sid) for sid in sessions}
            deadline = time.monotonic() + args.settle_s
            while time.monotonic() < deadline and any(len(st.ids) < len(listed[st.session_id]) for st in streams):
                await asyncio.sleep(0.1)
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            rss_after = memory_kb(s.server_pid)
            if args.workers > 1:  # the workers' memory: the supervisor's own is small
                rss_after = {"VmRSS": tree_kb(s.server_pid, "VmRSS"), "VmHWM": tree_kb(s.server_pid, "VmHWM")}

    lost = sum(len(set(listed[st.session_id]) - set(st.ids)) for st in streams)
    duplicated = sum(len(st.ids) - len(set(st.ids)) for st in streams)
    unlisted = sum(len(set(st.ids) - set(listed[st.session_id])) for st in streams)
    out_of_order = sum(1 for st in streams if st.ids != [i for i in listed[st.session_id] if i in set(st.ids)])
    turns = args.sends * args.rounds
    ms = [t * 1000 for t in latencies]
    emit(
        bench="mixed_load",
        workers=args.workers,
        streams=args.streams,
        sends=args.sends,
        rounds=args.rounds,
        sessions=args.sessions,
        model_latency_ms=args.latency_ms,
        send_p50_ms=round(statistics.median(ms), 1),
        send_p99_ms=round(pct(ms, 0.99), 1),
        send_max_ms=round(max(ms), 1),
        goal="send p99 <= 300 ms, 0 lost, 0 duplicated",
        # inside the server, from the request's first bytes read to its response's start (x-bench-timing)
        server_side_ms={k: _summary([t[k] for t in server]) for k in (server[0] if server else {})},
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
        connect_s=connect_s,
        wall_s=round(wall, 3),
        server_cpu_s=round(cpu1["server"] - cpu0["server"], 2),
        server_cpu_ms_per_turn=round((cpu1["server"] - cpu0["server"]) * 1000 / turns, 2),
        # what a send costs while the round is answered (turns and stream writes wait for it, request_priority.py):
        # the figure that bounds p99 on a given number of cores, whatever the machine's load
        server_cpu_ms_per_send_answered=round(answered_cpu * 1000 / turns, 2),
        model_cpu_s=round(cpu1["model"] - cpu0["model"], 2),
        streams_client_cpu_s=round(cpu1["clients"] - cpu0["clients"], 2),
        sender_cpu_s=round(sender_cpu, 2),
        server_rss_mb={
            "before_sends": round(rss_before.get("VmRSS", 0) / 1024, 1),
            "after": round(rss_after.get("VmRSS", 0) / 1024, 1),
            "peak": round(rss_after.get("VmHWM", 0) / 1024, 1),
        },
        loadavg_before=[round(x, 2) for x in load_before],
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        cores=os.cpu_count(),
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
    parser.add_argument("--workers", type=int, default=1, help="serve --workers")
    parser.add_argument("--profile", choices=["py-spy", "sample", "cprofile"], default=None)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
