"""End-to-end fixtures: our server on loopback, driven only through the official `anthropic` SDK.

Every test that uses `server` (or `client`) runs once per backend:
- `[embedded]`: the embedded runtime (SQLite, in-process orchestrator, subprocess sandboxes) in-process;
- `[aws]`: the AWS platform of tests/aws/platform.py: DynamoDB, S3, Secrets Manager, ECS and the synthesized
  Step Functions state machine in moto, every Lambda invoke dispatched to the real handlers, the API Lambda's app;
- `[deployed]`: a running deployment, through its URL and API key only (`MANAGED_AGENTS_E2E_BASE_URL`,
  `MANAGED_AGENTS_E2E_KEY`; skipped, saying so, without them): the post-deploy smoke check of docs/deploy-aws.md,
  `pytest -m deployed tests/e2e`. A test that scripts the model or reads the server's internals (`model_server`,
  `server.rt`, `server.model`, `server.platform`, stored bytes, sandbox directories) skips there with the reason.
A test (or module) that is inherently about the embedded runtime says so with `embedded_only("reason")`.
"""

from __future__ import annotations

import inspect
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anthropic
import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local.subprocess_sandbox import bubblewrap_path
from managed_agents.api.app import create_app
from managed_agents.settings import ENV_PREFIX, ServerSettings
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from managed_agents.wiring import Runtime, bootstrap_admin_key, build_local_runtime
from tests.infra.conftest import Synth

if TYPE_CHECKING:
    from tests.aws.platform import Platform

BACKENDS = [
    "embedded",
    pytest.param("aws", marks=pytest.mark.slow),
    pytest.param("deployed", marks=pytest.mark.deployed),
]
DEPLOYED_URL_ENV = "MANAGED_AGENTS_E2E_BASE_URL"
DEPLOYED_KEY_ENV = "MANAGED_AGENTS_E2E_KEY"
# What a test uses that a deployment does not expose: the scripted model, the server's runtime and stores.
_INTERNALS = re.compile(r"\bserver\.(rt|model|platform|stored_bytes|sandbox_workdir)\b|\bserver_settings\b")
# ServerSettings fields with no meaning on AWS (the embedded runtime's data directory and sandboxes)
_EMBEDDED_ONLY_SETTINGS = {"data_dir", "sandbox_isolation"}


def embedded_only(reason: str) -> pytest.MarkDecorator:
    """Run a test (or, as `pytestmark`, a module) on the embedded backend only; `reason` says why."""
    assert reason.strip(), "say why the test cannot run on the AWS backend"
    return pytest.mark.parametrize("backend", ["embedded"])


def deployed_only(reason: str) -> pytest.MarkDecorator:
    """Run a test against a deployment only (the post-deploy smoke check); `reason` says why."""
    assert reason.strip(), "say why the test runs against a deployment only"
    return pytest.mark.parametrize("backend", [pytest.param("deployed", marks=pytest.mark.deployed)])


@dataclass
class Server:
    url: str
    admin_key: str
    rt: Runtime  # embedded: the whole runtime; aws: the API Lambda's runtime (DynamoDB stores, Step Functions wake)
    model: ScriptedModelServer
    backend: str = "embedded"
    platform: Platform | None = None  # aws: the moto platform (tests/aws/platform.py)

    def stored_bytes(self) -> bytes:
        """Everything the backend persisted: embedded, the data dir's files; aws, the tables' items and spilled
        payloads."""
        if self.platform is not None:
            return self.platform.stored_bytes()
        data_dir = Path(self.rt.settings.data_dir)
        return b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())

    def sandbox_workdir(self, session_id: str) -> Path:
        """The working directory of the session's cloud sandbox (aws: the Fargate stand-in's)."""
        if self.platform is not None:
            return self.platform.sandboxes.root / session_id
        assert self.rt.provisioner is not None
        return self.rt.provisioner.workdir(session_id)

    def client(self, key: str | None = None, **kw: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key or self.admin_key, max_retries=0, **kw)


class DeployedServer(Server):
    """A deployment reached through its URL and key only; its internals are out of reach (the test skips)."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("rt", "model", "platform", "stored_bytes", "sandbox_workdir"):
            pytest.skip(f"needs the server's internals (server.{name}): not available from a deployment")
        return super().__getattribute__(name)


def needs_internals(request: pytest.FixtureRequest) -> str | None:
    """Why the requesting test cannot run against a deployment, or None (its own parameters and source say)."""
    function = request.function
    fresh = request.node.get_closest_marker("fresh_server")
    if fresh:
        return f"needs a server of its own: {fresh.args[0] if fresh.args else 'it lists everything'}"
    if "model_server" in inspect.signature(function).parameters:
        return "scripts the model (model_server): a deployment calls the real model"
    found = _INTERNALS.search(inspect.getsource(function))
    return f"reads the server's internals ({found.group(0)}): not available from a deployment" if found else None


def deployed_server(request: pytest.FixtureRequest) -> DeployedServer:
    url, key = os.environ.get(DEPLOYED_URL_ENV), os.environ.get(DEPLOYED_KEY_ENV)
    if not url or not key:
        pytest.skip(f"no deployment to test: set {DEPLOYED_URL_ENV} (the ApiUrl output) and {DEPLOYED_KEY_ENV}")
    reason = needs_internals(request)
    if reason:
        pytest.skip(reason)
    return DeployedServer(url, key, cast(Runtime, None), cast(ScriptedModelServer, None), "deployed")


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(fallback="error") as s:
        yield s


def sandbox_isolation() -> str:
    """bubblewrap where installed (CI installs it); elsewhere the suite opts in to unisolated sandboxes explicitly,
    as an operator would have to (`--sandbox-isolation none`)."""
    return "auto" if bubblewrap_path() else "none"


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "data"),
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
        sse_ping_seconds=0.5,
        work_lease_ttl_seconds=6,
        sandbox_idle_seconds=30,
        sandbox_isolation=sandbox_isolation(),
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def aws_env(settings: ServerSettings) -> dict[str, str]:
    """The Lambda/API environment that carries the test's explicit server settings to the AWS backend."""
    return {
        f"{ENV_PREFIX}{name.upper()}": str(getattr(settings, name))
        for name in settings.model_fields_set - _EMBEDDED_ONLY_SETTINGS
        if getattr(settings, name) is not None
    }


@pytest.fixture
def server(
    backend: str,
    server_settings: ServerSettings,
    model_server: ScriptedModelServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Server]:
    if backend == "deployed":
        yield deployed_server(request)
        return
    if backend == "aws":
        from tests.aws.platform import aws_platform  # moto and the handlers: only for the AWS leg

        synth: Synth = request.getfixturevalue("default_synth")
        # The reaper's schedule as often as the embedded runtime's reaper thread runs (Runtime.start_reaper)
        reap_every = min(1.0, server_settings.work_lease_ttl_seconds / 4)
        env = aws_env(server_settings)
        with aws_platform(synth, tmp_path / "aws", env=env, model=model_server, reap_every=reap_every) as platform:
            assert platform.runtime is not None
            yield Server(platform.url, platform.admin_key, platform.runtime, model_server, "aws", platform)
        return
    model = AnthropicMessagesModel(api_key="test", base_url=model_server.base_url, timeout=30)
    rt = build_local_runtime(server_settings, model=model)
    secret = bootstrap_admin_key(rt)
    assert secret
    port = free_port()
    rt.set_api_url(f"http://127.0.0.1:{port}")
    with UvicornThread(create_app(rt), port):
        yield Server(f"http://127.0.0.1:{port}", secret, rt, model_server)
    rt.close()


@pytest.fixture
def client(server: Server) -> anthropic.Anthropic:
    return server.client()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Bounded polling (style: never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def all_events(client: anthropic.Anthropic, session_id: str) -> list[Any]:
    return list(client.beta.sessions.events.list(session_id, limit=1000))


def wait_idle(client: anthropic.Anthropic, session_id: str, timeout: float = 30.0, count: int = 1) -> list[Any]:
    """Wait until the log holds `count` session.status_idle events; return all events. The bound is loose on purpose
    (CI runs three xdist workers and the compat leg on two cores: the AWS leg's 1 s retry waits took ~4 s there),
    it only limits how long a failing test takes. On a timeout the error
    shows the log as it stood (type and a short body per event), so a failure seen once under load can be read."""
    seen: list[Any] = []

    def done() -> list[Any] | None:
        evs = all_events(client, session_id)
        seen[:] = evs
        idles = [e for e in evs if e.type == "session.status_idle"]
        return evs if len(idles) >= count else None

    try:
        result: list[Any] = wait_until(done, timeout)
    except AssertionError as exc:
        log = "\n".join(f"  {e.type}: {str(e.model_dump(exclude={'id', 'type'}))[:300]}" for e in seen)
        raise AssertionError(f"{exc}: session {session_id} never had {count} idle(s); its log:\n{log}") from None
    return result


def create_environment_key(client: anthropic.Anthropic, environment_id: str, name: str = "worker") -> str:
    """An environment key through our keys endpoint (the SDK has no method for it: the hosted console mints them)."""
    body: Any = client.post(f"/v1/environments/{environment_id}/keys", body={"name": name}, cast_to=object)
    key: str = body["key"]
    return key


def strict_client(server: Server) -> anthropic.Anthropic:
    """The official SDK validating every response against its models (`_strict_response_validation`)."""
    return server.client(_strict_response_validation=True)


def error_body(exc: anthropic.APIStatusError) -> dict[str, Any]:
    """The `error` object of an error response's envelope (api-reference §1.4)."""
    body = exc.body
    assert isinstance(body, dict)
    err = body.get("error", body)
    assert isinstance(err, dict)
    return err
