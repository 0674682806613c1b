"""LambdaMcpGateway: what it sends to the MCP proxy Lambda and how every failure comes back (no AWS, no moto)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from managed_agents.adapters.aws.lambda_invoke import DEFAULT_RETRY
from managed_agents.adapters.aws.lambda_mcp_gateway import LambdaMcpGateway
from managed_agents.adapters.aws.mcp_proxy_contract import failure, success
from managed_agents.domain.errors import Conflict, NotFound, ServiceUnavailable
from managed_agents.ports import (
    AUTHENTICATION_FAILED,
    CONNECTION_FAILED,
    McpProxyError,
    Record,
    SecretPatch,
    SecretStoreError,
)

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:McpProxy:live"
SECRET = "ghp-canary-secret-4a1b9c"
Answer = dict[str, Any] | Exception | Callable[[], dict[str, Any]]


class FakeLambda:
    """A boto3 Lambda client whose `invoke` answers from a script: a payload document, a raw answer or an error."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append({**kwargs, "Payload": json.loads(kwargs["Payload"])})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer()
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


def _raw(body: bytes, function_error: str | None = None) -> Callable[[], dict[str, Any]]:
    def answer() -> dict[str, Any]:
        out: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(body)}
        if function_error:
            out["FunctionError"] = function_error
        return out

    return answer


def _client_error(code: str, message: str = "Rate exceeded") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Invoke")


def _gateway(fake: FakeLambda, sleeps: list[float] | None = None) -> LambdaMcpGateway:
    record = sleeps if sleeps is not None else []
    return LambdaMcpGateway(function_name=FUNCTION, lambda_client=fake, sleep=record.append)  # type: ignore[arg-type]


def test_call_tool_sends_the_contract_request_and_returns_the_result() -> None:
    # Given a proxy that answers a tool result
    fake = FakeLambda(success({"content": [{"type": "text", "text": "42"}], "is_error": False}))
    # When the harness calls a tool
    result = _gateway(fake).call_tool("sesn_1", "tools", "add", {"a": 2, "b": 40})
    # Then one synchronous invocation carried the typed request
    (call,) = fake.calls
    assert call["FunctionName"] == FUNCTION and call["InvocationType"] == "RequestResponse"
    assert call["Payload"] == {
        "op": "call_tool",
        "session_id": "sesn_1",
        "server_name": "tools",
        "tool": "add",
        "input": {"a": 2, "b": 40},
        "timeout_seconds": None,
    }
    # And the result is the proxy's content and error flag
    assert result.content == [{"type": "text", "text": "42"}] and result.is_error is False


def test_list_tools_returns_the_definitions() -> None:
    tools = [{"name": "echo", "description": "", "input_schema": {"type": "object"}}]
    fake = FakeLambda(success({"tools": tools}))
    assert _gateway(fake).list_tools("sesn_1", "tools") == tools
    assert fake.calls[0]["Payload"] == {"op": "list_tools", "session_id": "sesn_1", "server_name": "tools"}


@pytest.mark.parametrize("error_type", [AUTHENTICATION_FAILED, CONNECTION_FAILED])
def test_an_mcp_error_payload_becomes_the_same_mcp_proxy_error(error_type: str) -> None:
    # Given a proxy that could not use the server
    message = "MCP server 'tools' (http://x/mcp) rejected the credentials with HTTP 401 during initialize"
    fake = FakeLambda(failure(error_type, message, server_name="tools"))
    # When the harness lists tools
    with pytest.raises(McpProxyError) as caught:
        _gateway(fake).list_tools("sesn_1", "tools")
    # Then it gets the error the in-process proxy raises: same type, message and server
    assert (caught.value.error_type, caught.value.message, caught.value.server_name) == (error_type, message, "tools")


def test_api_and_secret_store_error_payloads_become_the_same_exceptions() -> None:
    # Given a proxy answering a missing session, a missing credential, a conflict and a secret store failure
    fake = FakeLambda(
        failure("not_found_error", "session 'sesn_x' not found"),
        failure("not_found_error", "credential 'vcrd_1' not found", error_code="vault_credential_not_found"),
        failure("conflict_error", "no"),
        failure("secret_store_error", "secret 'vaults/vlt_1/vcrd_1': Secrets Manager read failed (Throttling: x)"),
    )
    gateway = _gateway(fake)
    rec = Record("vault_credential", "ws_1", "vcrd_1", {"vault_id": "vlt_1"}, datetime.now(UTC))
    # Then each is rebuilt as the exception type the API renders (with its error code)
    with pytest.raises(NotFound, match="sesn_x"):
        gateway.list_tools("sesn_x", "tools")
    with pytest.raises(NotFound) as nf:
        gateway.validate_credential(rec)
    assert nf.value.error_code == "vault_credential_not_found"
    with pytest.raises(Conflict):
        gateway.merge_update("vaults/vlt_1/vcrd_1", SecretPatch({"token": SECRET}))
    with pytest.raises(SecretStoreError, match="read failed"):
        gateway.merge_update("vaults/vlt_1/vcrd_1", SecretPatch({"token": SECRET}))


def test_an_unknown_error_type_is_a_connection_failure_for_mcp_calls_and_503_for_vault_calls() -> None:
    fake = FakeLambda(
        failure("api_error", "the MCP proxy failed unexpectedly (KeyError)", server_name="tools"),
        failure("api_error", "the MCP proxy failed unexpectedly (KeyError)"),
    )
    gateway = _gateway(fake)
    with pytest.raises(McpProxyError) as caught:
        gateway.call_tool("sesn_1", "tools", "echo", {})
    assert caught.value.error_type == CONNECTION_FAILED and "KeyError" in caught.value.message
    with pytest.raises(ServiceUnavailable, match="KeyError"):
        gateway.merge_update("vaults/vlt_1/vcrd_1", SecretPatch())


def test_a_lambda_timeout_is_a_connection_failure_naming_the_call() -> None:
    # Given the proxy function timing out (Lambda answers FunctionError with its own error document)
    body = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 120.00 seconds"})
    fake = FakeLambda(_raw(body.encode(), "Unhandled"))
    # When the harness calls a tool
    with pytest.raises(McpProxyError) as caught:
        _gateway(fake).call_tool("sesn_1", "tools", "sleep", {"seconds": 500})
    # Then it is a connection failure that says what timed out, during which call, on which server
    err = caught.value
    assert err.error_type == CONNECTION_FAILED and err.server_name == "tools"
    assert err.message == (
        "the MCP proxy Lambda timed out (Task timed out after 120.00 seconds) during tools/call 'sleep' on MCP server"
        " 'tools'"
    )


def test_an_unhandled_function_error_names_its_type_but_not_its_message() -> None:
    # Given a crash whose message might quote anything (here: a secret)
    body = json.dumps({"errorType": "KeyError", "errorMessage": f"'{SECRET}'"}).encode()
    fake = FakeLambda(_raw(body, "Unhandled"), _raw(b"not json", "Unhandled"), _raw(b"", None))
    gateway = _gateway(fake)
    with pytest.raises(McpProxyError) as caught:
        gateway.list_tools("sesn_1", "tools")
    assert caught.value.message == "the MCP proxy Lambda failed (KeyError) during tools/list on MCP server 'tools'"
    assert SECRET not in repr(caught.value)
    with pytest.raises(McpProxyError, match=r"failed \(FunctionError\)"):
        gateway.list_tools("sesn_1", "tools")
    # And an answer that is not a proxy response is reported as such
    with pytest.raises(McpProxyError, match="not a proxy response"):
        gateway.list_tools("sesn_1", "tools")


@pytest.mark.parametrize(
    "code",
    [
        "TooManyRequestsException",
        "SnapStartNotReadyException",  # a SnapStart version idle for 14 days is initialized again on its next invoke
        "SnapStartTimeoutException",
        "ResourceNotReadyException",
        "ResourceConflictException",
        "EC2ThrottledException",
    ],
)
def test_refusals_before_the_function_runs_are_retried_with_backoff_then_succeed(code: str) -> None:
    # Given two invokes Lambda refused before running anything, then an answer
    fake = FakeLambda(_client_error(code), _client_error(code), success({"tools": []}))
    sleeps: list[float] = []
    # When the harness lists tools
    assert _gateway(fake, sleeps).list_tools("sesn_1", "tools") == []
    # Then it waited before each retry, longer each time (jitter keeps each wait within half of its step)
    assert len(fake.calls) == 3 and len(sleeps) == 2
    assert 0.125 <= sleeps[0] <= 0.25 and 0.25 <= sleeps[1] <= 0.5


def test_throttling_that_persists_is_a_connection_failure() -> None:
    attempts = DEFAULT_RETRY.attempts
    fake = FakeLambda(*[_client_error("TooManyRequestsException") for _ in range(attempts)])
    sleeps: list[float] = []
    with pytest.raises(McpProxyError) as caught:
        _gateway(fake, sleeps).call_tool("sesn_1", "tools", "echo", {"text": "x"})
    assert len(fake.calls) == attempts and len(sleeps) == attempts - 1
    assert sum(sleeps) <= 31  # what a caller (the API, a ModelTurn) may wait at most
    assert caught.value.error_type == CONNECTION_FAILED
    assert caught.value.message == (
        f"the MCP proxy Lambda is throttled (TooManyRequestsException: Rate exceeded (after {attempts} attempts))"
        " during tools/call 'echo' on MCP server 'tools'"
    )


def test_a_snapstart_version_that_stays_not_ready_is_reported_as_such() -> None:
    fake = FakeLambda(*[_client_error("SnapStartNotReadyException", "Lambda is initializing") for _ in range(8)])
    with pytest.raises(ServiceUnavailable, match=r"is not ready \(SnapStartNotReadyException: Lambda is initializing"):
        _gateway(fake).merge_update("vaults/vlt_1/vcrd_1", SecretPatch())


def test_other_invoke_errors_are_not_retried() -> None:
    # Given an invoke refused for a reason a retry cannot fix, and a client-side read timeout (the tool may have run)
    fake = FakeLambda(
        _client_error("ResourceNotFoundException", "Function not found: McpProxy"),
        ReadTimeoutError(endpoint_url="https://lambda"),
        EndpointConnectionError(endpoint_url="https://lambda"),
    )
    gateway = _gateway(fake)
    with pytest.raises(McpProxyError, match=r"could not be invoked \(ResourceNotFoundException: Function not found"):
        gateway.call_tool("sesn_1", "tools", "echo", {})
    with pytest.raises(McpProxyError, match=r"did not answer \(ReadTimeoutError\) during tools/call 'echo'"):
        gateway.call_tool("sesn_1", "tools", "echo", {})
    # (vault operations get the same message as a 503)
    with pytest.raises(ServiceUnavailable, match=r"could not be reached \(EndpointConnectionError\)"):
        gateway.merge_update("vaults/vlt_1/vcrd_1", SecretPatch())
    assert len(fake.calls) == 3


def test_merge_update_sends_the_patch_and_reports_whether_a_secret_was_found() -> None:
    fake = FakeLambda(success({"found": True}), success({"found": False}))
    gateway = _gateway(fake)
    patch = SecretPatch()
    patch.put("access_token", SECRET)
    patch.drop("refresh_token")
    assert gateway.merge_update("vaults/vlt_1/vcrd_1", patch) is True
    assert fake.calls[0]["Payload"] == {
        "op": "update_credential_secret",
        "name": "vaults/vlt_1/vcrd_1",
        "updates": {"access_token": SECRET},
        "removals": ["refresh_token"],
    }
    assert gateway.merge_update("vaults/vlt_1/vcrd_2", patch) is False
    # And a patch's repr shows keys, never values
    assert SECRET not in repr(patch)


def test_put_secret_sends_the_whole_value_and_maps_every_failure_to_the_api_errors() -> None:
    # Given a proxy that stores, then fails in each way a write can fail
    timeout = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 120.00 seconds"})
    fake = FakeLambda(
        success({}),
        failure("secret_store_error", "secret 'vaults/vlt_1/vcrd_1': Secrets Manager rejected the write (x: y)"),
        _raw(timeout.encode(), "Unhandled"),
        _client_error("AccessDeniedException", "not authorized to perform: lambda:InvokeFunction"),
        failure("api_error", "the MCP proxy failed unexpectedly (KeyError)"),
    )
    gateway = _gateway(fake)
    value = {"type": "static_bearer", "token": SECRET}
    # When the API stores a credential's secret
    assert gateway.put_secret("vaults/vlt_1/vcrd_1", value) is None
    # Then one invocation carried the whole value under the put_credential_secret op
    assert fake.calls[0]["Payload"] == {"op": "put_credential_secret", "name": "vaults/vlt_1/vcrd_1", "value": value}
    # And a store failure is the store's error; Lambda-level failures are 503s naming the operation
    with pytest.raises(SecretStoreError, match="rejected the write"):
        gateway.put_secret("vaults/vlt_1/vcrd_1", value)
    with pytest.raises(ServiceUnavailable) as timed_out:
        gateway.put_secret("vaults/vlt_1/vcrd_1", value)
    assert timed_out.value.message == (
        "the MCP proxy Lambda timed out (Task timed out after 120.00 seconds) during storing a credential's secret"
    )
    with pytest.raises(ServiceUnavailable, match=r"could not be invoked \(AccessDeniedException: not authorized"):
        gateway.put_secret("vaults/vlt_1/vcrd_1", value)
    with pytest.raises(ServiceUnavailable, match=r"the MCP proxy failed: the MCP proxy failed unexpectedly"):
        gateway.put_secret("vaults/vlt_1/vcrd_1", value)
    # And no attempt was repeated (a write is not retried on anything but throttling), no message holds the value
    assert len(fake.calls) == 5
    assert SECRET not in timed_out.value.message
