"""Webhook delivery on the embedded runtime: latency from an event's append to its receiver, and throughput.

1. latency: one endpoint on a loopback receiver; status events appended one at a time (the way the harness appends
   them); the time from `events.append` returning to the receiver reading the request, p50 and p99, beside the
   deliverer's poll interval (the wake on append should make it much smaller than the interval);
2. throughput: 1,000 workspaces, each with an endpoint and a session; one event each (1,000 deliveries queued in the
   outbox before the deliverer starts), then the time to deliver them all: deliveries per second.

    uv run python bench/webhook_delivery.py [--events 200] [--endpoints 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from managed_agents.wire.webhooks import WebhookEndpointCreateParams
from managed_agents.wiring import Runtime, build_local_runtime


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                now = time.perf_counter()
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with arrivals.lock:
                    arrivals.at[self.headers["webhook-id"]] = now
                    arrivals.done.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def wait(self, count: int, timeout: float = 120) -> None:
        with self.lock:
            self.done.wait_for(lambda: len(self.at) >= count, timeout)


def session(rt: Runtime, ws: str) -> str:
    agent = rt.agents.create(ws, AgentCreateParams(name="a", model="claude-sonnet-4-6"))
    env = rt.environments.create(ws, EnvironmentCreateParams(name="e"))
    return str(rt.sessions.create(ws, SessionCreateParams(agent=agent["id"], environment_id=env["id"]))["id"])


def idle(rt: Runtime, sid: str) -> None:
    rt.events.append(sid, [NewEvent(new_id("event"), "session.status_idle", {"stop_reason": {"type": "end_turn"}})])


def latency(url: str, arrivals: Arrivals, events: int, poll: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rt = build_local_runtime(ServerSettings(data_dir=tmp, webhook_poll_seconds=poll), start_orchestrator=False)
        assert rt.deliverer is not None
        rt.deliverer.start()
        ws = "wrkspc_bench"
        rt.webhooks.create(ws, WebhookEndpointCreateParams(url=url, enabled_events=["session.status_idled"]))
        sid = session(rt, ws)
        samples = []
        for i in range(events):
            before = len(arrivals.at)
            appended = time.perf_counter()
            idle(rt, sid)
            arrivals.wait(before + 1, timeout=10)
            with arrivals.lock:
                arrived = max(arrivals.at.values())
            samples.append((arrived - appended) * 1000)
            if i % 2:
                time.sleep(0.01)
        rt.close()
    samples.sort()
    emit(
        bench="webhook_delivery_latency",
        events=events,
        poll_interval_ms=poll * 1000,
        p50_ms=round(statistics.median(samples), 2),
        p99_ms=round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
        p50_over_poll_interval=round(statistics.median(samples) / (poll * 1000), 3),
    )


def throughput(url: str, arrivals: Arrivals, endpoints: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rt = build_local_runtime(ServerSettings(data_dir=tmp), start_orchestrator=False)
        assert rt.deliverer is not None
        sids = []
        for i in range(endpoints):
            ws = f"wrkspc_bench{i:05d}"
            rt.webhooks.create(ws, WebhookEndpointCreateParams(url=url, enabled_events=["session.status_idled"]))
            sids.append(session(rt, ws))
        for sid in sids:
            idle(rt, sid)  # queued in the outbox: nothing delivers yet
        before = len(arrivals.at)
        started = time.perf_counter()
        rt.deliverer.fan_out()
        fanned = time.perf_counter()
        while len(arrivals.at) < before + endpoints:
            rt.deliverer.run_once(wait=True)
        ended = time.perf_counter()
        rt.close()
    emit(
        bench="webhook_delivery_throughput",
        deliveries=endpoints,
        fan_out_seconds=round(fanned - started, 3),
        total_seconds=round(ended - started, 3),
        deliveries_per_second=round(endpoints / (ended - started), 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=0.25)
    args = parser.parse_args()
    arrivals = Arrivals()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), arrivals.handler())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    try:
        latency(url, arrivals, args.events, args.poll)
        throughput(url, arrivals, args.endpoints)
    finally:
        httpd.shutdown()


if __name__ == "__main__":
    main()
