"""An ASGI app on a free loopback port, in a thread: how tests and benchmarks serve the API to the real SDK."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from managed_agents.api.server import uvicorn_config
from managed_agents.settings import ServerSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
