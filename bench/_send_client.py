"""The sender of bench/mixed_load.py, in a process of its own: N event sends at once over raw HTTP/1.1.

It runs in its own process so that its clock reads each response the moment it arrives (the streams' reader, in
the bench's process, would delay it), and it speaks HTTP on asyncio streams with each request's bytes made before
the round (a client library costs ~0.5 ms of CPU per request, and 400 of them at once on a 2-core machine add
their own queue to every latency). Each round connects one connection per send first (not timed: an SDK client
sends on a pooled connection), then writes every request, and times each from its write to its whole response.

Reads one JSON command per stdin line, answers one JSON line each on stdout:
`{"url", "key", "sends": [[session_id, text], ...]}` -> `{"latencies": [...], "errors": [...], "server": [...],
"connect_s": ...}`; `server` holds each response's `x-bench-timing` header (bench/_profiled_serve.py), parsed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def _request(host: str, port: int, key: str, session_id: str, text: str) -> bytes:
    body = json.dumps({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]}).encode()
    head = (
        f"POST /v1/sessions/{session_id}/events HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {key}\r\n"
        "anthropic-version: 2023-06-01\r\nanthropic-beta: managed-agents-2026-04-01\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, headers (lower-cased names), body (Content-Length or chunked)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers: dict[str, str] = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    body = b""
    while headers.get("transfer-encoding") == "chunked":
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            break
        body += chunk[:-2]
    return status, headers, body


def _timing(value: str | None) -> dict[str, float] | None:
    if not value:
        return None
    return {k: float(v) for k, _, v in (part.partition("=") for part in value.split(","))}


async def _one(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[float, str | None, dict[str, float] | None]:
    reader, writer = conn
    t0 = time.perf_counter()
    try:
        writer.write(request)
        status, headers, body = await read_response(reader)
        error = None if status == 200 else f"HTTP {status}: {body[:120]!r}"
        return time.perf_counter() - t0, error, _timing(headers.get("x-bench-timing"))
    except Exception as exc:
        return time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:200], None
    finally:
        writer.close()


async def round_(command: dict[str, object]) -> dict[str, object]:
    url = urlsplit(str(command["url"]))
    host, port = url.hostname or "127.0.0.1", url.port or 80
    sends = [(str(sid), str(text)) for sid, text in command["sends"]]  # type: ignore[attr-defined]
    requests = [_request(host, port, str(command["key"]), sid, text) for sid, text in sends]
    t0 = time.perf_counter()
    conns = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in requests))
    connect_s = time.perf_counter() - t0
    results = await asyncio.gather(*(_one(c, r) for c, r in zip(conns, requests, strict=True)))
    return {
        "latencies": [t for t, _, _ in results],
        "errors": [e for _, e, _ in results if e],
        "server": [s for _, _, s in results if s],
        "connect_s": connect_s,
    }


async def main() -> None:
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        print(json.dumps(await round_(json.loads(line))), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
