"""What API Gateway answers itself is in the API's error envelope and says the request size limit.

A body too large for a Lambda invocation never reaches the API function (tests/aws/test_api_request_size_limit.py
covers what does); API Gateway answers for it, with these templates (moto runs no API Gateway: template assertions).
"""

from __future__ import annotations

import json

import pytest

from managed_agents.settings import LAMBDA_MAX_REQUEST_BYTES, AwsSettings
from tests.infra.conftest import Synth


@pytest.mark.parametrize(
    ("response_type", "status", "error_type"),
    [("REQUEST_TOO_LARGE", "413", "request_too_large"), ("INTEGRATION_FAILURE", "502", "api_error")],
)
def test_api_gateway_answers_in_the_error_envelope_with_the_limit(
    default_synth: Synth, response_type: str, status: str, error_type: str
) -> None:
    # Given the gateway response of that type
    (props,) = [
        r["Properties"]
        for r in default_synth.resources("AWS::ApiGateway::GatewayResponse").values()
        if r["Properties"]["ResponseType"] == response_type
    ]
    # Then it answers that status with the request id, in the envelope the official SDK parses
    assert props["StatusCode"] == status
    assert props["ResponseParameters"]["gatewayresponse.header.request-id"] == "context.requestId"
    rendered = props["ResponseTemplates"]["application/json"].replace("$context.requestId", "req_abc")
    body = json.loads(rendered)
    assert body["type"] == "error" and body["request_id"] == "req_abc"
    assert body["error"]["type"] == error_type
    # And its message says the limit the API function applies, and what to do instead
    assert f"at most {LAMBDA_MAX_REQUEST_BYTES:,} bytes per request" in body["error"]["message"]
    assert "by reference" in body["error"]["message"]


def test_the_api_function_applies_that_limit(default_synth: Synth) -> None:
    # The API function's environment leaves the limit at the AWS default, which fits a Lambda invocation
    (api,) = [
        r
        for r in default_synth.resources("AWS::Lambda::Function").values()
        if r["Metadata"]["aws:cdk:path"].endswith("Api/ApiFunction/Function/Resource")
    ]
    assert "MANAGED_AGENTS_MAX_REQUEST_BYTES" not in api["Properties"]["Environment"]["Variables"]
    assert AwsSettings.model_fields["max_request_bytes"].default == LAMBDA_MAX_REQUEST_BYTES < 6_291_456
