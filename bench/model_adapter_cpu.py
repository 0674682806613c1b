"""The model adapter's own CPU per request: N threads x M streamed requests through `AnthropicMessagesModel`
(async path, as the embedded harness calls it) to the scripted Messages server in its own process.

Prints CPU ms per request of this process (the adapter, its loop thread and the calling threads: nothing else runs
here) and the wall time. Options: --threads N --requests M --latency-ms N.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import emit

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken

REQUEST = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hello there"}]}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args()
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
            model.stream_message(dict(REQUEST), cancel=ThreadCancelToken())
        errors: list[str] = []

        def worker() -> None:
            for _ in range(args.requests):
                try:
                    model.stream_message(dict(REQUEST), cancel=ThreadCancelToken())
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
    emit(
        bench="model_adapter_cpu",
        requests=n,
        threads=args.threads,
        cpu_ms_per_request=round(cpu * 1000 / n, 3),
        wall_s=round(wall, 2),
        errors=len(errors),
        error_samples=errors[:3],
        load_average_1m=round(os.getloadavg()[0], 2),
    )


if __name__ == "__main__":
    main()
