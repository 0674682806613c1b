"""Test-wide guards: no test reaches a real model (style: an autouse fixture blocks real Anthropic calls)."""

from __future__ import annotations

import os

import pytest

# The synthesized CDK app, once per test session for every directory that needs it (tests/aws, tests/e2e). A test
# module that imports these itself gets a fixture of its own, and synthesizes again.
from tests.infra.conftest import default_synth, synth_variant  # noqa: F401


@pytest.fixture(autouse=True)
def _no_real_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("live_model"):
        return
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # discard port: a test that forgets fails fast
    os.environ.pop("ANTHROPIC_AUTH_TOKEN", None)
