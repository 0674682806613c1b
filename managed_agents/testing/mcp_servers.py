"""Real MCP servers (official `mcp` SDK, streamable HTTP) on loopback, for tests and benchmarks.

    with McpTestServer(bearer_token="s3cret") as srv:          # requires `Authorization: Bearer s3cret`
        srv.url                                                 # http://127.0.0.1:PORT/mcp
    issuer = OAuthIssuer(access_ttl=1.0)                        # short-lived access tokens: refresh path runs
    with McpTestServer(oauth=issuer) as srv:
        access, refresh = issuer.issue()
        srv.token_endpoint                                      # http://127.0.0.1:PORT/oauth/token
    with McpTestServer(mode="hang") as srv: ...                 # accepts, never answers
    with McpTestServer(mode="garbage_html") as srv: ...         # 200 text/html instead of MCP

Tools: `echo(text)`, `add(a, b)`, `fail(message)` (a tool error), `sleep(seconds)`, `image()` (a 1x1 PNG).
Every HTTP request is recorded in `requests` (method, path, status, whether it carried an Authorization header).
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl

import anyio
import uvicorn
from mcp.server.fastmcp import FastMCP, Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Mode = Literal["normal", "hang", "garbage_html", "garbage_json"]
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dataclass
class OAuthIssuer:
    """A tiny OAuth 2 authorization server: issues, expires and refreshes bearer tokens for one client."""

    client_id: str = "test-client"
    client_secret: str = "test-client-secret"
    auth_method: Literal["none", "client_secret_basic", "client_secret_post"] = "client_secret_basic"
    access_ttl: float = 3600.0
    rotate_refresh_tokens: bool = True
    refresh_count: int = 0
    refused_refreshes: int = 0
    _access: dict[str, float] = field(default_factory=dict)
    _refresh: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self) -> tuple[str, str]:
        """A fresh (access token, refresh token) pair, as an authorization-code grant would give."""
        with self._lock:
            access, refresh = "at-" + secrets.token_urlsafe(16), "rt-" + secrets.token_urlsafe(16)
            self._access[access] = time.monotonic() + self.access_ttl
            self._refresh.add(refresh)
            return access, refresh

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._access.get(token)
            return expiry is not None and time.monotonic() < expiry

    def expire_all(self) -> None:
        with self._lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()

    def exchange(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint's answer (status, JSON body) to a refresh_token grant."""
        if self.auth_method == "client_secret_basic":
            ok_client = basic == (self.client_id, self.client_secret)
        elif self.auth_method == "client_secret_post":
            ok_client = (form.get("client_id"), form.get("client_secret")) == (self.client_id, self.client_secret)
        else:
            ok_client = form.get("client_id") == self.client_id
        if not ok_client:
            self.refused_refreshes += 1
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            token = form.get("refresh_token", "")
            if token not in self._refresh:
                self.refused_refreshes += 1
                return 400, {"error": "invalid_grant", "error_description": "unknown refresh token"}
            access = "at-" + secrets.token_urlsafe(16)
            self._access[access] = time.monotonic() + self.access_ttl
            body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.access_ttl}
            if self.rotate_refresh_tokens:
                self._refresh.discard(token)
                new_refresh = "rt-" + secrets.token_urlsafe(16)
                self._refresh.add(new_refresh)
                body["refresh_token"] = new_refresh
            self.refresh_count += 1
            return 200, body


def build_mcp(name: str = "test") -> FastMCP:
    mcp = FastMCP(name, log_level="WARNING")

    @mcp.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @mcp.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @mcp.tool(description="Always fails with the given message.")
    def fail(message: str) -> str:
        raise ValueError(message)

    @mcp.tool(description="Sleep, then say so.")
    async def sleep(seconds: float) -> str:
        await anyio.sleep(seconds)
        return f"slept {seconds}"

    @mcp.tool(description="A 1x1 PNG image.")
    def image() -> Image:
        return Image(data=PNG_1X1, format="png")

    return mcp


async def _json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


class _Gate:
    """ASGI wrapper: the token endpoint, bearer checks on /mcp, the failure modes, request recording."""

    def __init__(self, server: McpTestServer, app: ASGIApp) -> None:
        self.server = server
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        srv = self.server
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        path, method = scope["path"], scope["method"]
        record: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": None,
            "authorization": "authorization" in headers,
        }
        srv.requests.append(record)  # at arrival: a streamed response may finish long after the caller moved on

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = int(message["status"])
            await send(message)

        if path == "/oauth/token" and method == "POST":
            await self._token(headers, receive, recording_send)
            return
        if path.startswith("/mcp"):
            authz = headers.get("authorization", "")
            token = authz[7:] if authz.lower().startswith("bearer ") else ""
            if not srv.authorized(token):
                await _json(
                    recording_send,
                    401,
                    b'{"error":"invalid_token","error_description":"missing or invalid bearer token"}',
                    [(b"www-authenticate", b'Bearer error="invalid_token"')],
                )
                return
            if srv.mode == "hang" and method == "POST":
                await anyio.to_thread.run_sync(srv.stopping.wait, abandon_on_cancel=True)
                return
            if srv.mode == "garbage_html" and method == "POST":
                body = b"<html><body>502 Bad Gateway (a proxy in the way)</body></html>"
                await recording_send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
                )
                await recording_send({"type": "http.response.body", "body": body})
                return
            if srv.mode == "garbage_json" and method == "POST":
                await _json(recording_send, 200, b'{"this is": not json')
                return
        await self.app(scope, receive, recording_send)

    async def _token(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = dict(parse_qsl(body.decode()))
        basic: tuple[str, str] | None = None
        authz = headers.get("authorization", "")
        if authz.lower().startswith("basic "):
            user, _, pw = base64.b64decode(authz[6:]).decode().partition(":")
            basic = (user, pw)
        issuer = self.server.oauth
        if issuer is None:
            await _json(send, 404, b'{"error":"no token endpoint here"}')
            return
        status, payload = issuer.exchange(form, basic)
        await _json(send, status, json.dumps(payload).encode())


class McpTestServer:
    """One FastMCP server behind optional bearer/OAuth checks, served by uvicorn in a thread on 127.0.0.1."""

    def __init__(
        self,
        *,
        bearer_token: str | None = None,
        oauth: OAuthIssuer | None = None,
        mode: Mode = "normal",
        name: str = "test",
    ) -> None:
        self.bearer_token = bearer_token
        self.oauth = oauth
        self.mode: Mode = mode
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self._mcp = build_mcp(name)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # (TCP_NODELAY: see
        # scripted_model._bind)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        app = _Gate(self, self._mcp.streamable_http_app())
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on", loop="asyncio")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/oauth/token"

    def authorized(self, token: str) -> bool:
        if self.bearer_token is not None:
            return secrets.compare_digest(token, self.bearer_token)
        if self.oauth is not None:
            return self.oauth.valid(token)
        return True

    def count(self, *, status: int | None = None, path: str = "/mcp") -> int:
        return sum(1 for r in self.requests if r["path"] == path and (status is None or r["status"] == status))

    def start(self) -> McpTestServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("MCP test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> McpTestServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
