"""Test-wide guards: no test reaches a real model (style: an autouse fixture blocks real Anthropic calls)."""

from __future__ import annotations

import os
import threading
from typing import Any

import botocore.loaders
import botocore.session
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


@pytest.fixture(autouse=True)
def _no_real_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("live_model"):
        return
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # discard port: a test that forgets fails fast
    os.environ.pop("ANTHROPIC_AUTH_TOKEN", None)


# The test files that take longest (seconds each from a `--junitxml` run of the suite on 3 xdist workers, 2026-12-07).
# CI runs files whole on a worker (`--dist loadfile`) in collection order (`--no-loadscope-reorder`); xdist's default
# order (most tests first) started these last, so a worker could spend the run's last minutes alone on one of them.
# Longest first is the classic fix for that tail. Refresh the list from a run's junit times when it drifts; a file not
# listed keeps its place after these.
LONGEST_FILES = (
    "tests/e2e/test_fault_kill9_thread_copies.py",  # 152
    "tests/aws/test_iam_enforced_scenarios.py",  # 151 (one module fixture runs every scenario)
    "tests/e2e/test_session_resources_fargate.py",  # 132
    "tests/e2e/test_fault_workers.py",  # 127
    "tests/infra/test_app_synth_checks.py",  # 118
    "tests/e2e/test_sandbox_skills_and_memory.py",  # 104
    "tests/e2e/test_sandbox_server_restart.py",  # 104
    "tests/e2e/test_vaults_api.py",  # 102
    "tests/aws/test_mcp_tools_in_the_session_run.py",  # 95
    "tests/e2e/test_agents_api.py",  # 93
    "tests/infra/test_lambda_bundle_imports.py",  # 78
    "tests/e2e/test_fault_kill9_webhooks.py",  # 78
    "tests/e2e/test_skills_api.py",  # 77
    "tests/e2e/test_memory_stores_api.py",  # 73
    "tests/e2e/test_session_interrupt_and_stream.py",  # 68
    "tests/e2e/test_cli_serve_console.py",  # 67
    "tests/e2e/test_session_mcp_flow.py",  # 67
    "tests/aws/test_webhook_delivery_on_moto.py",  # 66
    "tests/e2e/test_session_threads.py",  # 61
    "tests/e2e/test_deployments_api.py",  # 61
    "tests/e2e/test_fault_kill9_restart.py",  # 55
    "tests/e2e/test_edge_idempotency.py",  # 55
    "tests/infra/test_synth_with_an_account.py",  # 52
    "tests/infra/test_session_run_asl_in_moto.py",  # 50
    "tests/e2e/test_work_queue_api.py",  # 50
    "tests/aws/test_state_machine_with_real_handlers.py",  # 47
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # (stable: the rest as collected)
