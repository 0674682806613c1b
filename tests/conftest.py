"""Test-wide guards: no test reaches a real model (style: an autouse fixture blocks real Anthropic calls)."""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

import botocore.loaders
import botocore.session
import httpcore2
import pytest

# The synthesized CDK app, once per test run for every directory that needs it (tests/aws, tests/e2e; shared by the
# xdist workers, see tests/infra/conftest.py).
from tests.infra.conftest import default_synth, synth_variant  # noqa: F401

# One botocore data loader for the whole test process. moto gives every `mock_aws` block a fresh default boto3
# session, and each new session parses the service models again (EC2's and ECS's are megabytes of JSON): per test on
# the AWS leg that was about a third of setting up the moto platform (py-spy, tests/e2e/test_agents_api.py's AWS leg:
# the file's CPU went down 14%). The loader caches what it read per
# instance, and what it returns is read-only to botocore (one session's clients already share it), so sharing one
# instance only stops the re-parsing. Production code makes one session per Lambda cold start and is untouched.
_loaders: dict[Any, botocore.loaders.Loader] = {}
_loaders_lock = threading.Lock()
_create_loader = botocore.loaders.create_loader


def _shared_loader(search_path_string: Any = None) -> botocore.loaders.Loader:
    with _loaders_lock:
        if search_path_string not in _loaders:
            _loaders[search_path_string] = _create_loader(search_path_string)
        return _loaders[search_path_string]


botocore.session.create_loader = _shared_loader  # type: ignore[attr-defined]

# One default TLS context for the test process's HTTP clients. Every `anthropic.Anthropic(...)` builds an httpx client
# whose transport loads the system's CA bundle into a new SSL context (~30 ms of CPU), and the tests make thousands of
# clients (a few per e2e test, the AWS platform one more), though every one of them speaks plain HTTP to loopback: 4%
# of the AWS leg's CPU (py-spy). Contexts are made to be shared; production code makes its clients once per process.
_default_ssl_context = httpcore2.default_ssl_context
_ssl_contexts: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}


def _shared_ssl_context(*, _trust_env: bool = True) -> ssl.SSLContext:
    key = (_trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))  # what it reads
    with _loaders_lock:
        if key not in _ssl_contexts:
            _ssl_contexts[key] = _default_ssl_context(_trust_env=_trust_env)
        return _ssl_contexts[key]


httpcore2.default_ssl_context = _shared_ssl_context


@pytest.fixture(autouse=True)
def _no_real_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("live_model"):
        return
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # discard port: a test that forgets fails fast
    os.environ.pop("ANTHROPIC_AUTH_TOKEN", None)
