"""The processes of `serve --workers N`: the supervisor and each worker's main (the design: adapters/local/workers.py).

The supervisor binds nothing itself (cli.py hands it the listening socket), owns the notify hub and restarts a
worker that dies; a worker builds the embedded runtime as one of several (`build_local_runtime(worker=...)`) and
serves the app on the shared socket.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from managed_agents.adapters.local.workers import OWNER, Hub, HubLink, WorkerRole
from managed_agents.api.app import create_app
from managed_agents.api.server import freeze_heap, uvicorn_config
from managed_agents.wiring import build_local_runtime

if TYPE_CHECKING:
    from managed_agents.settings import ServerSettings

WORKER_HEADER = "x-managed-agents-worker"


def tagged(app: Any, index: int) -> Any:
    """The app, with every response saying which worker served it (`x-managed-agents-worker: <index>`): an operator
    (and a test) can tell where a request landed."""
    header = (WORKER_HEADER.encode(), str(index).encode())

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await app(scope, receive, send_tagged)

    return wrapper


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the supervisor ends, however it ends (PR_SET_PDEATHSIG)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the call
        os._exit(1)


def worker_main(
    index: int,
    count: int,
    sock: socket.socket,
    hub: socket.socket,
    settings: ServerSettings,
    inherited: list[socket.socket],
) -> None:
    """One worker process (forked): the embedded runtime on the shared socket, linked to the hub. `inherited`: the
    supervisor's own ends of the hub, closed here so that only the supervisor holds them."""
    die_with_parent()
    for other in inherited:
        other.close()
    fmt = f"%(asctime)s %(levelname)s [w{index}] %(name)s %(message)s"
    logging.basicConfig(level=settings.log_level, format=fmt, force=True)
    link = HubLink(hub)
    rt = build_local_runtime(settings, worker=WorkerRole(index, count, link))
    link.on_close = lambda: os.kill(os.getpid(), signal.SIGTERM)
    if index == OWNER:
        rt.recover(clear_leases=False)  # the supervisor cleared them; running sessions are taken over, not doubled
    link.start()  # the owner: after its recovery, so a launch forwarded meanwhile is not taken for a dead sandbox
    if index != OWNER:
        link.owner_ready.wait()
    link.announce(index)
    import uvicorn

    host, port = sock.getsockname()[:2]
    try:
        app = tagged(create_app(rt), index)
        config = uvicorn_config(app, host=str(host), port=int(port), settings=settings)
        freeze_heap()
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        rt.close()


def preload() -> None:
    """Import what `build_local_runtime` imports lazily, once, before the workers are forked."""
    import uvicorn  # noqa: F401

    import managed_agents.adapters.anthropic_model
    import managed_agents.adapters.local.in_process_orchestrator
    import managed_agents.harness.turn
    import managed_agents.mcp_proxy  # noqa: F401


def supervise(
    count: int, sock: socket.socket, settings: ServerSettings, on_ready: Callable[[], object] = lambda: None
) -> int:
    """Run `count` workers on `sock` (listening: connections wait in its backlog until a worker serves) until SIGTERM
    or SIGINT, restarting any that dies; `on_ready` runs once every worker serves. Returns the exit code."""
    # Forked, not spawned: the workers start with everything this process imported (spawned interpreters took ~3x
    # as long to serve on a loaded 2-core machine). This process holds no database connection when it forks (the
    # CLI closed it) and its only thread besides the main one is the hub's, whose objects a worker never touches.
    ctx = multiprocessing.get_context("fork")
    preload()
    freeze_heap()  # what the workers inherit stays frozen (and shared) in each of them
    hub = Hub()
    procs: dict[int, Any] = {}
    stopping = threading.Event()

    def spawn(index: int) -> None:
        end = hub.attach(index)
        proc = ctx.Process(
            target=worker_main,
            args=(index, count, sock, end, settings, hub.sockets()),
            name=f"managed-agents-worker-{index}",
        )
        proc.start()
        end.close()
        procs[index] = proc

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(count):
        spawn(index)
    hub.start()
    announced = False
    while not stopping.is_set():
        if not announced and len(hub.ready) == count:
            announced = True
            on_ready()
        multiprocessing.connection.wait([p.sentinel for p in procs.values()], timeout=0.5)
        for index, proc in list(procs.items()):
            if proc.exitcode is not None and not stopping.is_set():
                print(f"worker {index} (pid {proc.pid}) exited with {proc.exitcode}: restarting it", file=sys.stderr)
                spawn(index)
    for proc in procs.values():
        if proc.is_alive():
            proc.terminate()
    for proc in procs.values():
        proc.join(15)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    hub.close()
    return 0
