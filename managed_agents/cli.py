"""`managed-agents`: serve the embedded runtime, manage API keys, run the scripted model."""

from __future__ import annotations

import json
import logging
import os
import socket
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from managed_agents.settings import ServerSettings

if TYPE_CHECKING:
    from managed_agents.wiring import Runtime

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
app.add_typer(keys_app, name="keys")
env_keys_app = typer.Typer(
    no_args_is_help=True, help="Create, list and revoke environment keys (what a self-hosted worker polls with)."
)
app.add_typer(env_keys_app, name="env-keys")


class Isolation(StrEnum):
    auto = "auto"
    bubblewrap = "bubblewrap"
    none = "none"


DataDir = Annotated[
    str, typer.Option("--data-dir", envvar="MANAGED_AGENTS_DATA_DIR", help="Where the SQLite file and admin key live")
]


def _runtime(data_dir: str, *, orchestrator: bool = False):  # type: ignore[no-untyped-def]
    from managed_agents.wiring import build_local_runtime

    return build_local_runtime(ServerSettings(data_dir=data_dir), start_orchestrator=orchestrator)


@app.command()
def serve(
    data_dir: DataDir = ".data",
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8787,
    sandbox_isolation: Annotated[
        Isolation | None,
        typer.Option(
            "--sandbox-isolation",
            envvar="MANAGED_AGENTS_SANDBOX_ISOLATION",
            help="Cloud sandboxes: auto (bubblewrap when installed, else refused), bubblewrap (required), or none"
            " (opt in to running the tools unisolated as this server's user)",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            envvar="MANAGED_AGENTS_WORKERS",
            min=1,
            help="Server processes on the one data dir (default: the number of cores); sessions run in any of them",
        ),
    ] = None,
) -> None:
    """Run the API on this machine: SQLite event log, in-process harness."""
    import uvicorn

    from managed_agents.api.app import create_app
    from managed_agents.api.server import freeze_heap, uvicorn_config
    from managed_agents.wiring import build_local_runtime

    settings = ServerSettings(data_dir=data_dir)
    if sandbox_isolation is not None:  # the flag (or its variable, read by typer) wins
        settings = settings.model_copy(update={"sandbox_isolation": sandbox_isolation.value})
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:  # take the port first: a port in use is one clear line, not a "Serving on" followed by a traceback
        sock = _bind(host, port)
    except OSError as exc:
        _fail(1, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    port = sock.getsockname()[1]
    count = workers or _cores()
    if count > 1:
        _serve_workers(settings, sock, host, port, count)
        return
    try:
        rt = build_local_runtime(settings)
    except RuntimeError as exc:  # e.g. --sandbox-isolation bubblewrap without bwrap
        _fail(1, str(exc))
    _greet(rt, str(data_dir))
    rt.set_api_url(f"http://{_connect_host(host)}:{port}")
    if rt.provisioner is not None:
        isolated = rt.provisioner.bwrap is not None
        typer.echo(f"Cloud sandboxes: isolation {rt.provisioner.isolation}", err=not isolated)
    woken = rt.recover()
    if woken:
        typer.echo(f"Resuming {woken} session(s) that were running when the server last stopped.")
    sock.listen(2048)  # connections wait in the backlog from here on, while uvicorn starts: now it is true
    typer.echo(f"Serving on http://{host}:{port}  (SDK: Anthropic(base_url='http://{host}:{port}', api_key=KEY))")
    try:
        config = uvicorn_config(create_app(rt), host=host, port=port, settings=settings)
        freeze_heap()
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        rt.close()


def _greet(rt: Runtime, data_dir: str) -> None:
    """Create the admin key on a first start and show it once; warn when no model credential is set."""
    from managed_agents.wiring import bootstrap_admin_key

    secret = bootstrap_admin_key(rt)
    if secret:
        typer.echo(f"Created an admin API key (also in {os.path.join(data_dir, 'admin.key')}, mode 0600):")
        typer.echo(f"  {secret}")
    if not os.environ.get("ANTHROPIC_API_KEY") and not os.environ.get("ANTHROPIC_BASE_URL"):
        typer.echo("warning: ANTHROPIC_API_KEY is not set: model turns will fail until it is.", err=True)


def _connect_host(host: str) -> str:
    """The address this machine reaches the server at (a wildcard bind is reached on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _serve_workers(settings: ServerSettings, sock: socket.socket, host: str, port: int, count: int) -> None:
    """`serve` with several worker processes (adapters/local/workers.py): this process supervises them."""
    from managed_agents.adapters.local.run_lease import SqliteRunLeases
    from managed_agents.adapters.local.sqlite_store import SqliteResourceStore
    from managed_agents.api.workers import supervise
    from managed_agents.wiring import build_local_runtime, local_provisioner

    try:
        provisioner = local_provisioner(settings)
    except RuntimeError as exc:  # e.g. --sandbox-isolation bubblewrap without bwrap
        _fail(1, str(exc))
    rt = build_local_runtime(settings, start_orchestrator=False)
    _greet(rt, str(settings.data_dir))
    if not settings.sandbox_api_url:
        settings = settings.model_copy(update={"sandbox_api_url": f"http://{_connect_host(host)}:{port}"})
    isolated = provisioner.bwrap is not None
    typer.echo(f"Cloud sandboxes: isolation {provisioner.isolation}", err=not isolated)
    assert isinstance(rt.resources, SqliteResourceStore)
    SqliteRunLeases(rt.resources.db).clear()  # the whole server starts: every lease is the last run's
    running = rt.resources.find("session", "status", ["running", "rescheduling"])
    if running:
        typer.echo(f"Resuming {len(running)} session(s) that were running when the server last stopped.")
    rt.resources.db.close()  # the workers are forked: none may inherit an open SQLite connection
    # Listening from here: connections wait in the backlog until a worker serves (a port left unlistened while the
    # workers start can be reached by a client's own connect to it: TCP self-connect on loopback ephemeral ports).
    sock.listen(2048)

    def ready() -> None:  # every worker listens on the socket: now it is true
        typer.echo(f"Serving on http://{host}:{port}  (SDK: Anthropic(base_url='http://{host}:{port}', api_key=KEY))")
        typer.echo(f"Workers: {count} processes (--workers; sessions run in any of them)")

    raise typer.Exit(supervise(count, sock, settings, ready))


def _bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound but not listening: clients are refused until the runtime is ready."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: uvicorn turns Nagle off on it
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@keys_app.command("create")
def keys_create(
    data_dir: DataDir = ".data",
    name: Annotated[str, typer.Option(help="A label for the key")] = "",
    workspace: Annotated[str | None, typer.Option(help="Workspace id (default: the first workspace)")] = None,
    new_workspace: Annotated[str | None, typer.Option(help="Create a new workspace with this name")] = None,
) -> None:
    """Create an API key; the secret is printed once."""
    rt = _runtime(data_dir)
    if new_workspace:
        ws = rt.keys.create_workspace(new_workspace)
    elif workspace:
        ws = workspace
    else:
        spaces = rt.keys.workspaces()
        ws = str(spaces[0]["id"]) if spaces else rt.keys.create_workspace("default")
    doc, secret = rt.keys.create_key(ws, name=name)
    typer.echo(json.dumps({**doc, "secret": secret}, indent=2))


@keys_app.command("list")
def keys_list(data_dir: DataDir = ".data") -> None:
    """List keys (hints only; secrets are never stored)."""
    rt = _runtime(data_dir)
    typer.echo(json.dumps(rt.keys.list_keys(), indent=2))


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = ".data") -> None:
    """Revoke a key by id (apikey_...); it stops working at once."""
    from managed_agents.domain.errors import ApiError

    rt = _runtime(data_dir)
    try:
        typer.echo(json.dumps(rt.keys.revoke(key_id), indent=2))
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


def _environment_workspace(rt, environment_id: str) -> str:  # type: ignore[no-untyped-def]
    rec = rt.resources.get_by_id("environment", environment_id)
    if rec is None:
        typer.echo(f"error: environment {environment_id!r} not found", err=True)
        raise typer.Exit(1)
    return str(rec.workspace_id)


@env_keys_app.command("create")
def env_keys_create(
    environment_id: str,
    data_dir: DataDir = ".data",
    name: Annotated[str, typer.Option(help="A label for the key")] = "",
) -> None:
    """Create an environment key for a self_hosted environment; the secret is printed once."""
    from managed_agents.domain.errors import ApiError

    rt = _runtime(data_dir)
    try:
        doc, secret = rt.keys.create_environment_key(_environment_workspace(rt, environment_id), environment_id, name)
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({**doc, "key": secret}, indent=2))


@env_keys_app.command("list")
def env_keys_list(environment_id: str, data_dir: DataDir = ".data") -> None:
    """List an environment's keys (hints only)."""
    rt = _runtime(data_dir)
    ws = _environment_workspace(rt, environment_id)
    typer.echo(json.dumps(rt.keys.list_environment_keys(ws, environment_id), indent=2))


@env_keys_app.command("revoke")
def env_keys_revoke(environment_id: str, key_id: str, data_dir: DataDir = ".data") -> None:
    """Revoke an environment key (envkey_...); workers using it stop at their next call."""
    from managed_agents.domain.errors import ApiError

    rt = _runtime(data_dir)
    try:
        ws = _environment_workspace(rt, environment_id)
        typer.echo(json.dumps(rt.keys.revoke_environment_key(ws, environment_id, key_id), indent=2))
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


@app.command("scripted-model")
def scripted_model(
    host: str = "127.0.0.1",
    port: int = 8788,
    script: Annotated[str | None, typer.Option(help="JSON file with the scripted turns")] = None,
    latency_ms: Annotated[int, typer.Option(help="Delay before each reply")] = 0,
    fallback: Annotated[str, typer.Option(help="When the script is exhausted: echo or error")] = "echo",
) -> None:
    """Serve a scripted fake of the Messages API, so a session runs without an API key."""
    from managed_agents.testing.scripted_model import ScriptError
    from managed_agents.testing.scripted_model import serve as serve_model

    try:
        serve_model(host, port, script, latency_ms, fallback)
    except ScriptError as exc:
        _fail(2, str(exc))
