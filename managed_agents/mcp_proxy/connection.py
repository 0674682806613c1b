"""One warm MCP client connection (official `mcp` SDK, streamable HTTP) owned by a task on the proxy's loop.

The SDK reports transport failures by tearing down its task group (an HTTP 401 on a POST raises inside the
transport; an unparseable body reaches the session as an exception message), so a caller waiting for a reply could
wait forever. Here every request runs in a cancel scope that the connection cancels when it dies, and every wait has
a deadline; the failure is then classified from what the connection observed (status codes, the exception chain).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TypeVar

import anyio
import httpx
from mcp import ClientSession, McpError, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.session import RequestResponder

from managed_agents.mcp_proxy.credentials import HttpCapture, capture, scrub
from managed_agents.mcp_proxy.errors import AUTHENTICATION_FAILED, CONNECTION_FAILED, McpProxyError

log = logging.getLogger("managed_agents.mcp_proxy")
T = TypeVar("T")

ServerMessage = RequestResponder[types.ServerRequest, types.ClientResult] | types.ServerNotification | Exception


class BearerAuth(httpx.Auth):
    """Sends the current token; the proxy swaps it after a refresh without dropping the warm connection."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def _walk(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        out.append(e)
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        if e.__cause__ is not None:
            stack.append(e.__cause__)
    return out


class McpConnection:
    """Create on the proxy's event loop (anyio primitives need it); start `run` as a task there."""

    def __init__(
        self,
        url: str,
        server_name: str,
        token: str | None,
        *,
        credential_id: str | None,
        secrets: list[str],
        connect_timeout: float,
        read_timeout: float,
        on_tools_changed: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.server_name = server_name
        self.credential_id = credential_id
        self.auth = BearerAuth(token)
        self.secrets = secrets
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.on_tools_changed = on_tools_changed
        self.session: ClientSession | None = None
        self.step = "initialize"
        self.failure: BaseException | None = None
        self.auth_status: int | None = None
        self.error_response: HttpCapture | None = None
        self.garbage: str | None = None
        self.last_used = time.monotonic()
        self._ready = anyio.Event()
        self._dead = anyio.Event()
        self._closing = anyio.Event()
        self._scope = anyio.CancelScope()
        self._inflight: set[anyio.CancelScope] = set()
        self._killed = False

    @property
    def alive(self) -> bool:
        return self.session is not None and not self.dead

    @property
    def dead(self) -> bool:
        """Ended, or being torn down (no new request may start on it)."""
        return self._killed or self._dead.is_set()

    async def run(self) -> None:
        try:
            with self._scope:
                timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
                hooks = {"response": [self._on_response]}
                async with httpx.AsyncClient(auth=self.auth, timeout=timeout, event_hooks=hooks) as http:
                    async with streamable_http_client(self.url, http_client=http) as (read, write, _):
                        async with ClientSession(read, write, message_handler=self._on_message) as session:
                            await session.initialize()
                            self.session = session
                            self.step = "ready"
                            self._ready.set()
                            await self._closing.wait()
        except BaseException as exc:
            if self.failure is None:
                self.failure = exc
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
        finally:
            self.session = None
            self._dead.set()
            self._ready.set()
            for scope in list(self._inflight):
                scope.cancel()

    async def _on_response(self, response: httpx.Response) -> None:
        if response.request.method != "POST" or response.status_code < 400:
            return
        if response.status_code in (401, 403):
            self.auth_status = response.status_code
        await response.aread()
        self.error_response = capture(
            response.status_code, response.headers.get("content-type", ""), response.text, self.secrets
        )

    async def _on_message(self, message: ServerMessage) -> None:
        if isinstance(message, Exception):
            self.garbage = scrub(f"{type(message).__name__}: {message}", self.secrets)[:300]
            self.kill()
        elif isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.ToolListChangedNotification
        ):
            if self.on_tools_changed is not None:
                self.on_tools_changed()

    def kill(self) -> None:
        self._killed = True
        self._scope.cancel()
        for scope in list(self._inflight):
            scope.cancel()

    async def close(self, grace: float = 2.0) -> None:
        """End the MCP session politely (DELETE), or cut it after `grace` seconds."""
        self._closing.set()
        with anyio.move_on_after(grace):
            await self._dead.wait()
        self.kill()

    def error(self, what: str) -> McpProxyError:
        """Why the connection is unusable, as the reference's session error."""
        where = f"MCP server {self.server_name!r} ({self.url})"
        if self.auth_status is not None:
            return McpProxyError(
                AUTHENTICATION_FAILED,
                f"{where} rejected the credentials with HTTP {self.auth_status} during {what}",
                self.server_name,
            )
        if self.garbage is not None:
            return McpProxyError(
                CONNECTION_FAILED,
                f"{where} sent a response that is not MCP during {what} ({self.garbage})",
                self.server_name,
            )
        causes = _walk(self.failure) if self.failure is not None else []
        for exc in causes:
            if isinstance(exc, httpx.HTTPStatusError):
                return McpProxyError(
                    CONNECTION_FAILED,
                    f"{where} answered HTTP {exc.response.status_code} during {what}",
                    self.server_name,
                )
        for exc in causes:
            if isinstance(exc, httpx.TimeoutException):
                return McpProxyError(CONNECTION_FAILED, f"{where} timed out during {what}", self.server_name)
            if isinstance(exc, httpx.TransportError):
                return McpProxyError(
                    CONNECTION_FAILED, f"could not reach {where} during {what} ({type(exc).__name__})", self.server_name
                )
        for exc in causes:
            if isinstance(exc, McpError):
                msg = scrub(exc.error.message, self.secrets)[:200]
                return McpProxyError(CONNECTION_FAILED, f"{where} failed {what}: {msg}", self.server_name)
        kind = type(causes[-1]).__name__ if causes else "closed"
        return McpProxyError(
            CONNECTION_FAILED, f"the connection to {where} ended during {what} ({kind})", self.server_name
        )

    async def wait_ready(self) -> None:
        with anyio.move_on_after(self.connect_timeout) as scope:
            await self._ready.wait()
        if scope.cancelled_caught:
            self.kill()
            raise McpProxyError(
                CONNECTION_FAILED,
                f"MCP server {self.server_name!r} ({self.url}) did not complete the initialize handshake within"
                f" {self.connect_timeout:g} s",
                self.server_name,
            )
        if not self.alive:
            raise self.error("initialize")

    async def request(self, fn: Callable[[ClientSession], Awaitable[T]], limit: float, what: str) -> T:
        """Run one request on the warm session; McpError (a JSON-RPC error answer) passes through."""
        session = self.session
        if session is None or self.dead:
            raise self.error(what)
        self.last_used = time.monotonic()
        self.step = what
        scope = anyio.CancelScope()
        self._inflight.add(scope)
        try:
            with scope:
                try:
                    with anyio.fail_after(limit):
                        return await fn(session)
                except TimeoutError:
                    self.kill()
                    raise McpProxyError(
                        CONNECTION_FAILED,
                        f"MCP server {self.server_name!r} ({self.url}) did not answer {what} within {limit:g} s",
                        self.server_name,
                    ) from None
                except McpError as exc:
                    if exc.error.code != types.CONNECTION_CLOSED:
                        raise
                    with anyio.move_on_after(1.0):
                        await self._dead.wait()
                    raise self.error(what) from None
                except (McpProxyError, anyio.get_cancelled_exc_class()):
                    raise
                except Exception as exc:
                    self.garbage = scrub(f"{type(exc).__name__}: {exc}", self.secrets)[:300]
                    self.kill()
                    raise self.error(what) from None
            raise self.error(what)  # the connection died while the request waited
        finally:
            self._inflight.discard(scope)
            self.last_used = time.monotonic()
