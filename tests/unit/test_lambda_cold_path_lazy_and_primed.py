"""What the Lambda entry points leave off their cold path (bench/lambda_cold_path.py measures it).

Each check runs a fresh interpreter with a Lambda-like environment, since what matters is which modules a process has
loaded: ToolWait builds the harness without the model SDK; a SnapStart init of ModelTurn leaves its first model request
nothing to import; X-Ray patches botocore only (plus httpx in the MCP proxy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from managed_agents.aws_runtime import DeferredModel
from managed_agents.domain.events import JsonObject
from managed_agents.lambda_init import INIT_TYPE_ENV
from managed_agents.ports import ModelResponse, ModelUsage
from managed_agents.settings import (
    EVENTS_TABLE_ENV,
    MODEL_API_KEY_SECRET_ARN_ENV,
    RESOURCES_TABLE_ENV,
    SPILL_BUCKET_ENV,
    STATE_MACHINE_ARN_ENV,
)
from managed_agents.testing.scripted_model import ScriptedModelServer

REPO = Path(__file__).resolve().parents[2]
MARK = "RESULT "
STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:cold-path"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:model-key-AbCdEf"
# Packages the model SDK loads on its first request unless they were primed (MODEL_REQUEST_MODULES and the SDK).
FIRST_REQUEST_PACKAGES = {"anthropic", "httpx2", "httpcore2", "h11", "anyio", "opentelemetry", "truststore"}


def run_lambda_process(code: str, *, init_type: str = "on-demand", **env: str) -> dict[str, Any]:
    """Run `code` (which sets `result`) in a fresh interpreter with a task Lambda's environment; return `result`.

    AWS_ENDPOINT_URL is a closed port: a request to AWS fails, so an init that succeeds sent none.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "ANTHROPIC_", "_X_AMZN"))}
    full_env = {
        **base,
        "PYTHONPATH": str(REPO),
        "LAMBDA_TASK_ROOT": str(REPO),  # Powertools: tracing on, as in Lambda
        INIT_TYPE_ENV: init_type,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        RESOURCES_TABLE_ENV: "resources",
        EVENTS_TABLE_ENV: "events",
        SPILL_BUCKET_ENV: "spill",
        **env,
    }
    program = f"import json, sys\n{textwrap.dedent(code)}\nprint({MARK!r} + json.dumps(result))"
    proc = subprocess.run(
        [sys.executable, "-c", program], env=full_env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            return result
    raise AssertionError(f"the Lambda process failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def test_tool_wait_builds_its_harness_without_importing_the_model_sdk() -> None:
    # Given the ToolWait entry point, imported as Lambda does (on demand; no model key in its environment)
    # When its deps build the harness, as `tool_wait` does on every invocation
    result = run_lambda_process(
        """
        from functions.tool_wait.handler import handler
        from managed_agents.aws_runtime import DeferredModel, lambda_deps
        harness = lambda_deps().harness
        result = {"deferred": isinstance(harness.model, DeferredModel), "built": harness.model.built,
                  "sdk": "anthropic" in sys.modules}
        """
    )
    # Then the model client is a placeholder nobody built, and the SDK was not imported
    assert result == {"deferred": True, "built": False, "sdk": False}


def test_a_snapstart_init_of_model_turn_leaves_the_first_model_request_nothing_to_import() -> None:
    # Given a ModelTurn init ahead of time (SnapStart), with the model key in ANTHROPIC_API_KEY, and a model endpoint
    with ScriptedModelServer(["hello"]) as server:
        # When the first model request runs after the init, as the first ModelTurn after a restore does (with a
        # cancel token: the async path the ModelTurn Lambda takes)
        result = run_lambda_process(
            """
            import functions.model_turn.handler
            from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken
            from managed_agents.aws_runtime import lambda_deps
            primed = set(sys.modules)
            model = lambda_deps().harness.model
            request = {"model": "claude-scripted", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
            response = model.stream_message(request, cancel=ThreadCancelToken())
            result = {"text": response.content[0]["text"], "new": sorted(set(sys.modules) - primed)}
            """,
            init_type="snap-start",
            ANTHROPIC_API_KEY="test-key-not-real",
            ANTHROPIC_BASE_URL=server.base_url,
        )
    # Then the request succeeded and imported nothing of the SDK's HTTP stack: the init had imported it all
    assert result["text"] == "hello"
    late = [m for m in result["new"] if m.split(".", 1)[0] in FIRST_REQUEST_PACKAGES]
    assert late == [], f"the first model request still imports {late}: add them to MODEL_REQUEST_MODULES"


def test_a_snapstart_init_of_model_turn_makes_its_clients_and_reads_no_secret() -> None:
    # Given ModelTurn's environment as the stack sets it (the key in Secrets Manager) and a state machine to wake
    # When its module is imported during a SnapStart init (AWS unreachable: any request would fail the import)
    result = run_lambda_process(
        """
        import functions.model_turn.handler
        from managed_agents.aws_runtime import lambda_deps
        deps = lambda_deps()
        result = {
            "secretsmanager": deps.clients.secretsmanager is not None,
            "sfn": deps.runtime.sessions.svc.orchestrator._sfn is not None,
            "harness": deps._harness is not None,
            "sdk": "anthropic" in sys.modules,
        }
        """,
        init_type="snap-start",
        **{MODEL_API_KEY_SECRET_ARN_ENV: SECRET, STATE_MACHINE_ARN_ENV: STATE_MACHINE},
    )
    # Then the Secrets Manager and Step Functions clients exist and the SDK is loaded, but the harness (whose build
    # reads the key) is left to the first invocation: the snapshot holds no secret
    assert result == {"secretsmanager": True, "sfn": True, "harness": False, "sdk": True}


def test_a_snapstart_init_of_report_failure_does_not_load_the_model_sdk() -> None:
    # Given the ReportFailure function, which shares ModelTurn's module but has no model key
    # When it is initialized ahead of time
    result = run_lambda_process(
        """
        import functions.model_turn.handler
        result = {"sdk": "anthropic" in sys.modules}
        """,
        init_type="snap-start",
        **{STATE_MACHINE_ARN_ENV: STATE_MACHINE},
    )
    # Then its snapshot does not carry the SDK it never uses
    assert result == {"sdk": False}


def test_a_snapstart_init_of_tool_wait_makes_the_step_functions_client_it_answers_tokens_with() -> None:
    result = run_lambda_process(
        """
        import functions.tool_wait.handler
        from managed_agents.aws_runtime import lambda_deps
        result = {"sfn": lambda_deps().clients.stepfunctions is not None, "sdk": "anthropic" in sys.modules}
        """,
        init_type="snap-start",
    )
    assert result == {"sfn": True, "sdk": False}


@pytest.mark.parametrize(
    ("entry_point", "patched"),
    [("functions.model_turn.handler", ["botocore"]), ("functions.mcp_proxy.handler", ["botocore", "httpx"])],
)
def test_xray_patches_only_what_the_entry_point_calls(entry_point: str, patched: list[str]) -> None:
    # Given tracing on (as in a Lambda with active tracing)
    # When the entry point is imported
    result = run_lambda_process(
        f"""
        import {entry_point}
        from aws_xray_sdk.core.patcher import _PATCHED_MODULES
        result = {{"patched": sorted(_PATCHED_MODULES), "requests": "requests" in sys.modules}}
        """,
        MANAGED_AGENTS_VAULT_SECRET_PREFIX="vault/",
    )
    # Then X-Ray instruments botocore (and the MCP proxy's httpx), not everything it could import
    assert result == {"patched": patched, "requests": False}


def test_xray_patches_nothing_when_tracing_is_off() -> None:
    result = run_lambda_process(
        """
        import functions.model_turn.handler
        from aws_xray_sdk.core.patcher import _PATCHED_MODULES
        result = {"patched": sorted(_PATCHED_MODULES), "httpx": "httpx" in sys.modules}
        """,
        POWERTOOLS_TRACE_DISABLED="true",
    )
    assert result == {"patched": [], "httpx": False}


class _CountingModel:
    def __init__(self) -> None:
        self.requests: list[JsonObject] = []

    def stream_message(self, request: JsonObject, *, cancel: object = None, on_event: object = None) -> ModelResponse:
        self.requests.append(request)
        return ModelResponse(content=[], stop_reason="end_turn", usage=ModelUsage(), model="m")


def test_a_deferred_model_is_built_once_on_its_first_request() -> None:
    # Given a deferred model whose builder counts its calls
    built: list[_CountingModel] = []

    def build() -> _CountingModel:
        built.append(_CountingModel())
        return built[-1]

    model = DeferredModel(build)
    assert not model.built and built == []
    # When two requests go through it
    model.stream_message({"n": 1})
    model.stream_message({"n": 2})
    # Then it built one model, on the first request, and both requests reached it
    assert model.built and len(built) == 1
    assert built[0].requests == [{"n": 1}, {"n": 2}]
