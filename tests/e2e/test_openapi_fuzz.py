"""Property run over the OpenAPI schema: every operation, random valid and invalid inputs.

No request may end in a 5xx, every 4xx body is the API's error envelope
``{"type": "error", "error": {"type": str, "message": str}, "request_id": str}``, and every status and response
body is one the document declares for the operation (schemathesis' conformance checks): the document says what
the server does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.api.app import create_app
from managed_agents.settings import ServerSettings
from managed_agents.testing.scripted_model import ScriptedModelServer
from managed_agents.wiring import bootstrap_admin_key, build_local_runtime

_AUTH: dict[str, str] = {}


# The schema is static (it does not touch the runtime), so it is built at import to parametrize the test; the
# app that serves the calls (through schemathesis' ASGI transport) comes from the fixture.
# (`schemathesis.pytest.from_fixture` fails on pytest 9: it reads the removed `Function._nodeid`.)
schema = schemathesis.openapi.from_dict(create_app(cast(Any, None)).openapi())


# Embedded only: hundreds of generated calls; on the AWS backend each one would cost a moto platform round trip.
@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data_dir = Path(tmp_path_factory.mktemp("fuzz")) / "data"
    with ScriptedModelServer(fallback="echo") as model_server:
        model = AnthropicMessagesModel(api_key="test", base_url=model_server.base_url, timeout=10)
        rt = build_local_runtime(
            ServerSettings(
                data_dir=str(data_dir),
                sse_max_seconds=0.2,
                sse_ping_seconds=0.1,
                retry_base_seconds=0.01,
                retry_max_seconds=0.05,
            ),
            model=model,
        )
        secret = bootstrap_admin_key(rt)
        assert secret
        _AUTH["Authorization"] = f"Bearer {secret}"
        _AUTH["anthropic-beta"] = "managed-agents-2026-04-01"  # what the SDK sends (every built resource takes it)
        try:
            yield create_app(rt)
        finally:
            rt.close()


def _is_error_envelope(body: object) -> bool:
    if not isinstance(body, dict) or body.get("type") != "error" or not isinstance(body.get("request_id"), str):
        return False
    error = body.get("error")
    return isinstance(error, dict) and isinstance(error.get("type"), str) and isinstance(error.get("message"), str)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_never_fails_with_5xx_and_errors_use_the_envelope(case: schemathesis.Case, fuzz_app: FastAPI) -> None:
    response = case.call(app=fuzz_app, headers=dict(_AUTH))
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    assert response.status_code < 500, where
    if 400 <= response.status_code < 500:
        assert _is_error_envelope(response.json()), where
    case.validate_response(
        response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
    )
