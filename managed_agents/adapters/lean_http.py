"""HTTP/1.1 for the model requests of the embedded server: an httpx2 transport on asyncio protocols.

The async model requests (adapters/anthropic_model.py) run on one event loop thread shared by every session. The SDK
builds each request and its httpx2 client sends it through this transport instead of httpcore's: under a hundred
concurrent sessions httpcore spent ~1.3 ms of CPU per request (bench/model_adapter_cpu.py) on its pool bookkeeping
(a readability probe and a `getpeername` of every idle connection whenever a request is added or removed), an anyio
cancel scope per socket read and h11's event machinery. Here a connection is an `asyncio.Protocol`: the loop calls it
with the bytes that arrive and with the peer's close, so an idle connection's state is known without asking the
socket, and the read timeout is one timer per request that looks at when data last arrived.

What it does: HTTP/1.1 over TCP or TLS (the client's SSL context; SNI and the certificate checked against the host, or
the request's `sni_hostname` extension; ALPN as that context says), a request body
of bytes (sent with its Content-Length), responses with a Content-Length, chunked or ending at the connection's close;
1xx interim responses skipped; keep-alive (a connection whose response was read to its end goes back to the pool,
unless either side said `Connection: close`; idle ones older than `keepalive_expiry` are closed). A reused
connection that the peer closed before answering (the keep-alive race: it timed out as the request left) is retried
once on a new connection, as browsers do: the peer saw no request. Proxies stay httpx2's (its environment proxy
mounts route around this transport). Errors are httpx2's (`ConnectError`, `ConnectTimeout`, `ReadTimeout`,
`ReadError`, `WriteError`, `RemoteProtocolError`), which the SDK and the adapter map as they map httpcore's.
Cancelling the request's task aborts its connection, so the peer sees the disconnect at once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import cast

import httpx2

MAX_HEAD_BYTES = 256 * 1024  # a response's status line and headers
MAX_IDLE_PER_ORIGIN = 256

Origin = tuple[bytes, bytes, int]


class _Timeout(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: bytes received are buffered; one reader waits for more at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the peer closed (or the connection broke): what is buffered is all there will be
        self.error: BaseException | None = None
        self.idle_since = 0.0
        self.answered = False  # some byte of the current response arrived
        self._waiter: asyncio.Future[None] | None = None
        self._active = 0.0  # when data last arrived or the request was sent (the read timeout counts from it)
        self._timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (a stream transport: uvloop's do not subclass asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.answered = True
        self._active = self.loop.time()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading ----------------------------------------------------------------------------------------------

    def start_timer(self, timeout: float | None) -> None:
        """Count the read timeout from now (the request was just sent): it fires once no byte arrived for so long."""
        self._active = self.loop.time()
        self._timeout = timeout
        self._timed_out = False
        if timeout is not None and self._timer is None:
            self._timer = self.loop.call_at(self._active + timeout, self._check)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timeout = None

    def _check(self) -> None:
        self._timer = None
        if self._timeout is None:
            return
        due = self._active + self._timeout
        if self.loop.time() >= due:
            self._timed_out = True
            self._wake()
        else:
            self._timer = self.loop.call_at(due, self._check)

    async def more(self) -> bool:
        """Wait until more bytes arrive (True) or the connection ends (False); `_Timeout` when none came in time."""
        if self.closed:
            return False
        if self._timed_out:
            raise _Timeout()
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self._timed_out:
            raise _Timeout()
        return not self.closed or bool(self.buffer)

    def take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def abort(self) -> None:
        self.stop_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def reusable(self, now: float, keepalive_expiry: float) -> bool:
        """An idle connection that can take another request: open, nothing unread, not idle for too long."""
        transport = self.transport
        return (
            not self.closed
            and not self.buffer
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since < keepalive_expiry
        )


class _Body(httpx2.AsyncByteStream):
    """A response body read off its connection; the connection goes back to the pool once the body was read to its end
    (and both sides allow it), else it is closed when the body is."""

    def __init__(
        self,
        pool: LeanAsyncTransport,
        origin: Origin,
        conn: _Connection,
        request: httpx2.Request,
        *,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
    ) -> None:
        self._pool, self._origin, self._conn, self._request = pool, origin, conn, request
        self._length, self._chunked, self._keep_alive = length, chunked, keep_alive
        self._done = length == 0 and not chunked
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._done:
            return
        conn = self._conn
        try:
            if self._chunked:
                async for piece in self._read_chunked():
                    yield piece
            elif self._length is not None:
                left = self._length
                while left:
                    if not conn.buffer and not await conn.more():
                        raise httpx2.RemoteProtocolError(
                            f"the peer closed the connection {left} bytes before the end of the body",
                            request=self._request,
                        )
                    piece = conn.take(left)
                    left -= len(piece)
                    yield piece
            else:  # until the connection closes
                while conn.buffer or await conn.more():
                    yield conn.take(len(conn.buffer))
            self._done = True
        except _Timeout:
            raise httpx2.ReadTimeout("no data from the peer within the read timeout", request=self._request) from None

    async def _read_chunked(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            line = await _read_line(conn, self._request)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx2.RemoteProtocolError(f"bad chunk size {size_text!r}", request=self._request) from None
            if size == 0:
                while await _read_line(conn, self._request):  # trailers, up to the blank line
                    pass
                return
            left = size
            while left:
                if not conn.buffer and not await conn.more():
                    raise httpx2.RemoteProtocolError(
                        "the peer closed the connection inside a chunk", request=self._request
                    )
                piece = conn.take(left)
                left -= len(piece)
                yield piece
            if await _read_line(conn, self._request):
                raise httpx2.RemoteProtocolError("a chunk is not followed by CRLF", request=self._request)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        conn.stop_timer()
        if self._done and self._keep_alive and not conn.buffer:
            self._pool._give_back(self._origin, conn)
        else:
            conn.abort()


async def _read_line(conn: _Connection, request: httpx2.Request) -> bytes:
    """One CRLF (or LF) terminated line off the connection, without its line end."""
    while True:
        end = conn.buffer.find(b"\n")
        if end >= 0:
            return conn.take(end + 1).rstrip(b"\r\n")
        if len(conn.buffer) > MAX_HEAD_BYTES:
            raise httpx2.RemoteProtocolError("a line of the response is too long", request=request)
        if not await conn.more():
            raise httpx2.RemoteProtocolError("the peer closed the connection mid-response", request=request)


class LeanAsyncTransport(httpx2.AsyncBaseTransport):
    """The transport of the adapter's async client (module docstring). Used on one event loop only."""

    def __init__(self, ssl_context: ssl.SSLContext, *, keepalive_expiry: float = 5.0) -> None:
        self._ssl = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        origin: Origin = (scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80))
        timeouts = request.extensions.get("timeout") or {}
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)]
        has_length = False
        for name, value in request.headers.raw:
            has_length = has_length or name.lower() == b"content-length"
            head.append(b"%s: %s\r\n" % (name, value))
        if body and not has_length:
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        message = b"".join(head) + body
        conn = self._take(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, request, message, timeouts)
            except _Unanswered:
                pass  # the keep-alive race: the peer closed the idle connection as the request left; it saw nothing
        conn = await self._connect(origin, request, timeouts)
        try:
            return await self._exchange(origin, conn, request, message, timeouts)
        except _Unanswered as exc:
            raise httpx2.RemoteProtocolError(
                "the peer closed the connection without sending a response", request=request
            ) from exc.__cause__

    async def _exchange(
        self, origin: Origin, conn: _Connection, request: httpx2.Request, message: bytes, timeouts: dict[str, float]
    ) -> httpx2.Response:
        """Send the request and read the response's head; the body is read as the caller iterates it."""
        done = False
        try:
            assert conn.transport is not None
            conn.answered = False
            conn.transport.write(message)
            conn.start_timer(timeouts.get("read"))
            try:
                while True:
                    status, reason, headers, version = await _read_head(conn, request)
                    if not 100 <= status < 200 or status == 101:
                        break
            except httpx2.RemoteProtocolError as exc:
                if not conn.answered and conn.closed:
                    raise _Unanswered() from exc
                raise
            except _Timeout:
                raise httpx2.ReadTimeout("no response within the read timeout", request=request) from None
            length: int | None = None
            chunked = False
            keep_alive = version == b"HTTP/1.1"
            for name, value in headers:
                lower = name.lower()
                if lower == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif lower == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        raise httpx2.RemoteProtocolError(f"bad Content-Length {value!r}", request=request) from None
                elif lower == b"connection":
                    tokens = value.lower()
                    keep_alive = b"close" not in tokens and (keep_alive or b"keep-alive" in tokens)
            if request.headers.get("connection", "").lower() == "close":
                keep_alive = False
            if chunked:
                length = None
            if request.method == "HEAD" or status in (204, 304):
                length, chunked = 0, False
            elif length is None and not chunked:
                keep_alive = False  # the body ends when the connection closes
            stream = _Body(self, origin, conn, request, length=length, chunked=chunked, keep_alive=keep_alive)
            done = True
            return httpx2.Response(
                status,
                headers=headers,
                stream=stream,
                extensions={"http_version": version, "reason_phrase": reason},
            )
        finally:
            if not done:  # failed, or the task was cancelled: nothing else may read this connection
                conn.abort()

    async def _connect(self, origin: Origin, request: httpx2.Request, timeouts: dict[str, float]) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        conn = _Connection(loop)
        hostname = host.decode("ascii")
        tls = self._ssl if scheme == b"https" else None
        # the name TLS checks and sends: the SDK names one for a host with underscores (`sni_hostname`), as httpcore did
        sni = str(request.extensions.get("sni_hostname") or hostname) if tls is not None else None
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                await loop.create_connection(lambda: conn, hostname, port, ssl=tls, server_hostname=sni)
        except TimeoutError:
            conn.abort()
            raise httpx2.ConnectTimeout(f"connecting to {hostname}:{port} timed out", request=request) from None
        except OSError as exc:
            conn.abort()
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return conn

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            if conn.reusable(now, self._keepalive_expiry):
                return conn
            conn.abort()
        return None

    def _give_back(self, origin: Origin, conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= MAX_IDLE_PER_ORIGIN or conn.closed:
            conn.abort()
            return
        conn.idle_since = conn.loop.time()
        idle.append(conn)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()


class _Unanswered(Exception):
    """A reused connection ended before any byte of the response arrived."""


async def _read_head(conn: _Connection, request: httpx2.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
    """The status line and headers of one response: (status, reason, headers, HTTP version)."""
    while True:
        end = conn.buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = conn.take(end + 4)
            break
        if len(conn.buffer) > MAX_HEAD_BYTES:
            raise httpx2.RemoteProtocolError("the response's headers are too long", request=request)
        if not await conn.more():
            raise httpx2.RemoteProtocolError(
                "the peer closed the connection without sending a response", request=request
            )
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpx2.RemoteProtocolError(f"bad status line {lines[0][:100]!r}", request=request)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx2.RemoteProtocolError(f"bad header line {line[:100]!r}", request=request)
        headers.append((name, value.strip()))
    return int(code), reason, headers, version
