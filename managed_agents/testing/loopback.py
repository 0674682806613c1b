"""An ASGI app on a free loopback port, in a thread: how tests and benchmarks serve the API to the real SDK."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from managed_agents.api.server import uvicorn_config
from managed_agents.settings import ServerSettings

_PICK = random.SystemRandom()  # not the module's generator: a test that seeds it would make workers pick alike


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes client sockets' local ports from (Linux: ip_local_port_range)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 65535  # Linux's default low end up to the top: also covers BSD, macOS and Windows (49152-)


@contextmanager
def loop_thread(loop: asyncio.AbstractEventLoop) -> Iterator[asyncio.AbstractEventLoop]:
    """`loop` running on a thread of its own, as the embedded server's loop does; stopped and closed after."""
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def free_port() -> int:
    """A loopback port that is free now and outside the kernel's ephemeral range.

    The server binds it a moment later (or in another process), so a port the kernel handed out (bind to port 0)
    could meanwhile become the local end of one of the many client connections the tests make (boto3 to moto, httpx,
    the SDK): uvicorn then failed with "address already in use" (seen on CI). Ports below the ephemeral range are
    never given to client sockets; a random pick keeps parallel test processes apart."""
    low, high = _ephemeral_ports()
    ports = range(10000, low) if low > 11000 else range(high + 1, 65536)
    for _ in range(200):
        port = _PICK.choice(ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {ports.start}-{ports.stop - 1}")


class UvicornThread:
    """`with UvicornThread(app, port):` serves `app` on 127.0.0.1:port until the block ends, configured as
    `managed-agents serve` configures it (api/server.py) with the settings of the app's runtime."""

    def __init__(self, app: Any, port: int, settings: ServerSettings | None = None) -> None:
        if settings is None:
            found = getattr(getattr(getattr(app, "state", None), "runtime", None), "settings", None)
            settings = found if isinstance(found, ServerSettings) else ServerSettings()
        config = uvicorn_config(app, host="127.0.0.1", port=port, settings=settings, timeout_graceful_shutdown=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(10)
