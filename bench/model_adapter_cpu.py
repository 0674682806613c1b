"""The model adapter's own CPU per request: N threads x M streamed requests through `AnthropicMessagesModel`
(async path, as the embedded harness calls it) to the scripted Messages server in its own process.

Prints CPU ms per request of this process (the adapter, its loop thread and the calling threads: nothing else runs
here) and the wall time. Options: --threads N --requests M --latency-ms N --history N (earlier turns in each
request's transcript, ~600 bytes each: the request body grows with a session).

BENCH_SERVER_SRC=<dir> measures the `managed_agents` package found in <dir> (a checkout of a baseline commit, as for
bench/_profiled_serve.py) instead of this checkout's, for a before/after in one time window.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# the code measured: a baseline's (BENCH_SERVER_SRC) or this checkout's (not _common, which imports it from here)
sys.path.insert(0, os.environ.get("BENCH_SERVER_SRC") or str(Path(__file__).resolve().parents[1]))

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken

REQUEST = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hello there"}]}


def _request(history: int) -> dict[str, object]:
    """REQUEST after `history` earlier turns (a user message, a tool call, its result and a reply)."""
    messages: list[dict[str, object]] = []
    for i in range(history):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"step {i}: " + "please look " * 20}]})
        tool = {"type": "tool_use", "id": f"toolu_{i:04d}", "name": "bash", "input": {"command": f"ls -la /tmp/{i}"}}
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Looking. " * 10}, tool]})
        result = {"type": "tool_result", "tool_use_id": f"toolu_{i:04d}", "content": "file\n" * 30}
        messages.append({"role": "user", "content": [result]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Done with that step."}]})
    return {**REQUEST, "messages": [*messages, *REQUEST["messages"]]}  # type: ignore[list-item]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--history", type=int, default=0)
    args = parser.parse_args()
    request = _request(args.history)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(Path(sys.executable).parent / "managed-agents")
    cmd = [exe, "scripted-model", "--port", str(port), "--latency-ms", str(args.latency_ms)]
    model_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        model = AnthropicMessagesModel(api_key="bench", base_url=f"http://127.0.0.1:{port}")
        for _ in range(3):  # warm-up: the loop thread, first connections
            model.stream_message(dict(request), cancel=ThreadCancelToken())
        errors: list[str] = []

        def worker() -> None:
            for _ in range(args.requests):
                try:
                    model.stream_message(dict(request), cancel=ThreadCancelToken())
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        cpu0, t0 = _cpu(), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
        model.close()
    finally:
        model_proc.terminate()
        model_proc.wait(10)
    n = args.threads * args.requests
    fields = {
        "bench": "model_adapter_cpu",
        "code": os.environ.get("BENCH_SERVER_SRC") or "this checkout",
        "requests": n,
        "history": args.history,
        "threads": args.threads,
        "cpu_ms_per_request": round(cpu * 1000 / n, 3),
        "wall_s": round(wall, 2),
        "errors": len(errors),
        "error_samples": errors[:3],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(fields), flush=True)


if __name__ == "__main__":
    main()
