"""A Fargate sandbox learns from its worker's event stream whether file resources were added, instead of asking the
platform before every tool call (api/sse.py, sandbox/entrypoint.py InputsSync).

The stream, asked with `x-managed-agents-inputs: announce`, puts an SSE comment line with the inputs' ETag in each
`agent.tool_use` frame (read once per write, after its events); the SDK ignores it. The sandbox reads its worker's
stream through that comment, and skips `GET /v1/sessions/{id}/inputs` before a call whose tool use came with the ETag
of the files it has placed. Anything else (no announcement, a different ETag, a new stream) still asks.
"""

from __future__ import annotations

import base64
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

from anthropic._streaming import SSEDecoder

from managed_agents.adapters.local.notifier import LocalNotifier
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.adapters.publishing_event_store import PublishingEventStore
from managed_agents.api.sse import event_stream
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id
from managed_agents.sandbox.entrypoint import InputsSync
from tests.e2e.loopback_http import serve
from tests.own_loop import run_on_own_loop

SECRET = base64.urlsafe_b64encode(json.dumps({"sessions_token": "wt-1"}).encode()).decode().rstrip("=")


def _tool_use(n: int) -> NewEvent:
    return NewEvent(new_id("event"), "agent.tool_use", {"id": f"toolu_{n}", "name": "bash", "input": {}})


def _decoded(raw: bytes) -> list[tuple[str | None, str]]:
    decoder = SSEDecoder()
    out = []
    for line in raw.decode().split("\n"):
        sse = decoder.decode(line)
        if sse is not None and sse.event is not None:  # (the SDK drops messages without an event)
            out.append((sse.event, sse.data))
    return out


def test_each_tool_use_frame_carries_the_inputs_etag_read_once_per_write_and_the_sdk_ignores_it(
    tmp_path: Path,
) -> None:
    async def run() -> tuple[bytes, bytes, int]:
        # Given a session whose log gets one write of a message and two tool uses
        notifier = LocalNotifier()
        store = PublishingEventStore(SqliteEventStore(SqliteDatabase(tmp_path / "db")), notifier)
        store.append("sesn_a", [NewEvent(new_id("event"), "user.message", {"content": []})])
        reads = 0

        async def inputs_etag() -> str:
            nonlocal reads
            reads += 1
            return '"e1"'

        async def exists() -> bool:
            return True

        def stream(etag: Any) -> Any:
            return event_stream(
                store=store,
                session_id="sesn_a",
                subscription=notifier.subscribe("sesn_a"),
                after_seq=1,
                ping_seconds=60,
                max_seconds=0,
                deleted_event=lambda: {},
                still_exists=exists,
                error_body=lambda exc: {},
                inputs_etag=etag,
            )

        store.append(
            "sesn_a",
            [NewEvent(new_id("event"), "agent.message", {"content": []}), _tool_use(1), _tool_use(2)],
        )
        # When a stream that announces and one that does not read that write
        announcing, plain = stream(inputs_etag), stream(None)
        return await anext(announcing), await anext(plain), reads

    announced, plain, reads = run_on_own_loop(run())
    # Then each tool use's frame begins with the comment, read once for the write; the message's frame has none
    frames = announced.decode().split("\n\n")
    assert [f.startswith(': managed-agents-inputs "e1"\nid: ') for f in frames[:3]] == [False, True, True]
    assert reads == 1
    # And the SDK's parser sees exactly the events the stream without announcements sends
    assert _decoded(announced) == _decoded(plain) and [e for e, _ in _decoded(plain)] == [
        "agent.message",
        "agent.tool_use",
        "agent.tool_use",
    ]


class Platform(BaseHTTPRequestHandler):
    """The platform's stream and inputs endpoints, as a stdlib stand-in."""

    protocol_version = "HTTP/1.1"
    etag: ClassVar[str] = '"e1"'
    chunks: ClassVar[list[bytes]] = []
    seen: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        assert self.headers["Authorization"] == "Bearer wt-1"
        if self.path.endswith("/events/stream"):
            self.seen.append(f"stream {self.headers.get('x-managed-agents-inputs', '-')}")
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for chunk in self.chunks:  # written in pieces that cut lines, as a network may deliver them
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        self.seen.append(f"inputs {self.headers.get('If-None-Match', '-')}")
        if self.headers.get("If-None-Match") == self.etag:
            body, status = b"", 304
        else:
            body, status = json.dumps({"files": []}).encode(), 200
        self.send_response(status)
        self.send_header("etag", self.etag)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _frames(*etags: str | None) -> bytes:
    out = b""
    for n, etag in enumerate(etags):
        comment = f": managed-agents-inputs {etag}\n" if etag else ""
        out += f'{comment}id: e{n}\nevent: agent.tool_use\ndata: {{"id":"e{n}","type":"agent.tool_use"}}\n\n'.encode()
    return out


def _cut(raw: bytes, size: int = 7) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def test_a_call_whose_tool_use_announced_the_placed_files_asks_nothing_and_any_other_call_asks(
    tmp_path: Path,
) -> None:
    with serve(Platform) as url:
        sync = InputsSync(
            {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_SESSION_ID": "s1", "ANTHROPIC_WORK_SECRET": SECRET}, str(tmp_path)
        )

        async def follow(raw: bytes) -> list[str | None]:
            """The worker's stream through the sandbox's client; what was announced after each tool use, and the
            SDK's parse of the same bytes."""
            Platform.chunks = _cut(raw)
            async with sync.http_client() as http:
                async with http.stream("GET", f"{url}/v1/sessions/s1/events/stream", headers=_auth()) as resp:
                    async for _ in resp.aiter_bytes():
                        pass
            return [sync.announced]

        async def run() -> None:
            # Given a sandbox that placed the session's files (their ETag "e1") at its first tool call
            await sync.before_tool()
            assert Platform.seen == ["inputs -"]
            # When its stream delivers a tool use announcing "e1" (lines cut across chunks)
            Platform.seen.clear()
            assert await follow(_frames('"e1"')) == ['"e1"']
            # Then the stream was asked to announce, and the call before that tool use asks nothing
            await sync.before_tool()
            assert Platform.seen == ["stream announce"]
            # When a tool use announces other files: the call asks (and the list is read, since it changed)
            Platform.seen.clear()
            Platform.etag = '"e2"'
            await follow(_frames('"e1"', '"e2"'))
            await sync.before_tool()
            assert Platform.seen == ["stream announce", 'inputs "e1"']
            await sync.before_tool()  # (the same tool use again: now placed, nothing to ask)
            assert Platform.seen == ["stream announce", 'inputs "e1"']
            # When the last tool use came without an announcement (a server that does not announce): it asks
            Platform.seen.clear()
            assert await follow(_frames('"e2"', None)) == [None]
            await sync.before_tool()
            assert Platform.seen == ["stream announce", 'inputs "e2"']

        run_on_own_loop(run())


def test_a_new_stream_forgets_the_last_announcement(tmp_path: Path) -> None:
    # Given a sandbox whose last tool use announced the files it placed
    sync = InputsSync(
        {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_SESSION_ID": "s1", "ANTHROPIC_WORK_SECRET": SECRET},
        str(tmp_path),
    )
    sync.etag = sync.announced = '"e1"'
    Platform.chunks, Platform.etag, Platform.seen = [b": ping\n\n"], '"e1"', []
    with serve(Platform) as url:

        async def run() -> None:
            # When the worker opens a new stream (it then reads the history, whose tool uses announce nothing)
            async with sync.http_client() as http:
                async with http.stream("GET", f"{url}/v1/sessions/s1/events/stream", headers=_auth()):
                    pass

        run_on_own_loop(run())
    # Then what was announced on the old stream no longer vouches for a call
    assert sync.announced is None


def _auth() -> dict[str, str]:
    return {"Authorization": "Bearer wt-1"}
