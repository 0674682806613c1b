"""Request limits at the door: authentication before the body is read, a body cap (413), a header cap, and
deadlines for requests whose headers or body never finish arriving (slow clients hold no connection for long).

These talk to the server over raw sockets: what matters is what it does before a request is complete.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from managed_agents.settings import ServerSettings
from tests.e2e.conftest import Server

BODY_CAP = 1 << 20
HEADER_CAP = 8 << 10
MA = "managed-agents-2026-04-01"


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "data"),
        sse_ping_seconds=0.5,
        max_request_body_bytes=BODY_CAP,
        max_header_bytes=HEADER_CAP,
        header_timeout_seconds=1.0,
        body_timeout_seconds=1.0,
    )


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any] | None]:
    """Status and JSON body of the one response on the socket (read until the server closes or the body is in)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without a response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, (json.loads(rest[:length]) if length else None)


def _head(path: str, *, key: str | None, extra: str = "", length: int | None = None) -> bytes:
    text = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nanthropic-beta: {MA}\r\n"
    if key:
        text += f"Authorization: Bearer {key}\r\n"
    if length is not None:
        text += f"Content-Length: {length}\r\n"
    return (text + extra + "\r\n").encode()


def test_an_unauthenticated_post_is_refused_before_its_body_is_read(server: Server) -> None:
    # Given a client that announces a 50 MB body and sends only its first bytes
    with _connect(server) as sock:
        sock.sendall(_head("/v1/agents", key=None, length=50 << 20) + b'{"name": "' + b"x" * 1000)
        # When it waits, sending nothing more
        status, body = _read_response(sock)
    # Then it is answered 401 at once: the server did not wait for (nor buffer) the body
    assert status == 401
    assert body is not None and body["error"]["type"] == "authentication_error"


def test_a_declared_body_over_the_cap_is_a_413_without_reading_it(server: Server) -> None:
    # Given an authenticated client that announces a body over the cap
    with _connect(server) as sock:
        sock.sendall(_head("/v1/agents", key=server.admin_key, length=BODY_CAP + 1))
        # When it waits before sending the body
        status, body = _read_response(sock)
    # Then it gets a 413 in the error envelope, naming the limit
    assert status == 413
    assert body is not None and body["type"] == "error" and body["error"]["type"] == "request_too_large"
    assert str(BODY_CAP) in body["error"]["message"]


def test_a_chunked_body_over_the_cap_is_a_413(server: Server) -> None:
    # Given / When an authenticated client streams a body with no declared length, past the cap
    def chunks() -> Any:
        yield b'{"name": "'
        for _ in range(BODY_CAP // 65536 + 2):
            yield b"x" * 65536
        yield b'", "model": "m"}'

    headers = {"Authorization": f"Bearer {server.admin_key}", "anthropic-beta": MA, "content-type": "application/json"}
    resp = httpx2.post(server.url + "/v1/agents", content=chunks(), headers=headers, timeout=15)
    # Then it is a 413 in the envelope, and nothing was created
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"
    listed = httpx2.get(server.url + "/v1/agents", headers=headers, timeout=15).json()
    assert listed["data"] == []


def test_a_body_under_the_cap_is_served(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}", "anthropic-beta": MA}
    body = {"name": "a", "model": "m", "system": "s" * 90_000}
    resp = httpx2.post(server.url + "/v1/agents", json=body, headers=headers, timeout=15)
    assert resp.status_code == 200, resp.text


def test_headers_over_the_cap_are_refused(server: Server) -> None:
    # Given / When a request whose headers exceed the cap
    headers = {"Authorization": f"Bearer {server.admin_key}", "x-padding": "p" * (HEADER_CAP + 1)}
    resp = httpx2.get(server.url + "/v1/agents", headers=headers, timeout=15)
    # Then it is refused in the error envelope, naming the limit
    assert resp.status_code == 431
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert str(HEADER_CAP) in resp.json()["error"]["message"]


def test_a_connection_whose_headers_never_finish_is_closed(server: Server) -> None:
    # Given a client that sends half a request line and headers, then nothing
    with _connect(server) as sock:
        sock.sendall(b"POST /v1/agents HTTP/1.1\r\nHost: test\r\n")
        # When it waits (the socket times out after 15 s; the server's header deadline is 1 s)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    # Then the server closed the connection (after a 408, if it said anything)
    assert data == b"" or data.startswith(b"HTTP/1.1 408")


def test_a_kept_alive_connection_idle_past_the_clients_expiry_is_still_served(server: Server) -> None:
    # Given a kept-alive connection that was answered once
    with _connect(server) as sock:
        sock.sendall(_head("/v1/agents", key=None, length=2) + b"{}")
        first, _ = _read_response(sock)
        # When it stays idle a little longer than httpx's (the SDK's) 5 s keep-alive expiry, then is used again
        time.sleep(5.5)
        sock.sendall(_head("/v1/agents", key=None, length=2) + b"{}")
        second, body = _read_response(sock)
    # Then the server had not closed it (with uvicorn's 5 s default, a client sending at its own 5 s mark raced the
    # server's close and got "Server disconnected without sending a response")
    assert (first, second) == (401, 401)
    assert body is not None and body["error"]["type"] == "authentication_error"


def test_a_body_that_never_finishes_is_a_400_request_body_timeout(server: Server) -> None:
    # Given an authenticated client that announces 1000 bytes and sends 10
    with _connect(server) as sock:
        sock.sendall(_head("/v1/agents", key=server.admin_key, length=1000) + b'{"name": "')
        # When it sends nothing more
        status, body = _read_response(sock)
    # Then the server gives up on the body after its deadline: the SDK's BetaRequestBodyTimeoutError
    assert status == 400
    assert body is not None and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["details"]["error_code"] == "request_body_timeout"
