"""What hostile requests cost the embedded server: RSS around an unauthenticated 64 MB POST, and how many
half-sent requests it keeps open.

Each checkout given (default: this one) runs as its own `managed-agents serve` process (its code on PYTHONPATH),
so one run compares a baseline (e.g. a worktree of main) with this branch on the same machine:

    uv run python bench/hostile_requests.py --checkout /path/to/main-worktree --checkout .

For each it prints one JSON line: the server's RSS (VmRSS) before and after the POST, its peak (VmHWM), the
status the POST got, and, of `--slow` connections that sent half a request head and then nothing, how many the
server still held open after the head deadline (MANAGED_AGENTS_HEADER_TIMEOUT_SECONDS, set to 2 s here; servers
that do not read it keep their own behaviour).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from managed_agents.testing.loopback import free_port

MB = 1024 * 1024


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) // 1024  # MiB
    return out


def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not answer /health")


def _post(port: int, size: int) -> str:
    """An unauthenticated POST of `size` bytes, sent in full unless the server answers first."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        head = (
            f"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        )
        s.sendall(head.encode())
        chunk = b"x" * MB
        sent = 0
        s.setblocking(False)
        answer = b""
        while sent < size:
            try:
                answer += s.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            try:
                sent += s.send(chunk[: min(MB, size - sent)])
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                break
        s.setblocking(True)
        s.settimeout(120)
        while b"\r\n" not in answer:
            data = s.recv(65536)
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") + f" (after {sent // MB} MiB sent)"


def _slow(port: int, count: int, wait: float) -> int:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/agents HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    time.sleep(wait)
    still_open = 0
    for s in socks:
        s.setblocking(False)
        try:
            still_open += 0 if s.recv(1) == b"" else 1
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        s.close()
    return still_open


@contextmanager
def _serve(checkout: Path, data_dir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "MANAGED_AGENTS_HEADER_TIMEOUT_SECONDS": "2",
        "MANAGED_AGENTS_LOG_LEVEL": "ERROR",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "ANTHROPIC_API_KEY": "bench",
    }
    code = "from managed_agents.cli import app; app()"
    args = [sys.executable, "-c", code, "serve", "--data-dir", str(data_dir), "--port", str(port)]
    proc = subprocess.Popen(args, cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(checkout: Path, size: int, slow: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        port = free_port()
        with _serve(checkout, Path(tmp) / "data", port) as proc:
            _wait_healthy(port, proc)
            before = _status(proc.pid)
            answer = _post(port, size)
            time.sleep(1)
            after = _status(proc.pid)
            held = _slow(port, slow, wait=4.0)
            return {
                "checkout": str(checkout),
                "post_mib": size // MB,
                "answer": answer,
                "rss_before_mib": before["VmRSS"],
                "rss_after_mib": after["VmRSS"],
                "rss_peak_mib": after["VmHWM"],
                "slow_connections": slow,
                "slow_still_open_after_4s": held,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", action="append", type=Path, help="a checkout to serve (repeatable)")
    parser.add_argument("--mib", type=int, default=64, help="size of the unauthenticated POST")
    parser.add_argument("--slow", type=int, default=300, help="half-sent requests to open")
    args = parser.parse_args()
    for checkout in args.checkout or [Path(__file__).resolve().parent.parent]:
        print(json.dumps(measure(checkout.resolve(), args.mib * MB, args.slow)), flush=True)


if __name__ == "__main__":
    main()
