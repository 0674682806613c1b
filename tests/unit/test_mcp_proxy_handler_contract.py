"""The MCP proxy Lambda's contract: every request answered with a typed result or error payload, never a secret.

The proxy behind it is a fake here (its real behaviour is tests/integration/test_mcp_proxy_*.py; the real proxy on
moto through the gateway is tests/aws/test_mcp_proxy_lambda_on_moto.py); these tests pin the handler's side.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

import functions.mcp_proxy.handler as mcp_proxy_handler
from managed_agents.adapters.aws.lambda_mcp_gateway import LambdaMcpGateway
from managed_agents.adapters.aws.mcp_proxy_contract import PutCredentialSecretRequest
from managed_agents.adapters.aws.mcp_proxy_service import DEADLINE_MARGIN_SECONDS, McpProxyLambda
from managed_agents.domain.errors import NotFound
from managed_agents.mcp_proxy import McpProxySettings, McpResult
from managed_agents.ports import (
    AUTHENTICATION_FAILED,
    CONNECTION_FAILED,
    McpProxyError,
    Record,
    SecretPatch,
    SecretStoreError,
)

SECRET = "ghp-canary-secret-77e0d1"


@dataclass
class FakeProxy:
    """Stands in for McpProxy: records calls, raises what a test scripts."""

    settings: McpProxySettings = field(default_factory=lambda: McpProxySettings(call_timeout=100.0))
    raise_: Exception | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def _maybe_raise(self) -> None:
        if self.raise_ is not None:
            raise self.raise_

    def list_tools(self, session: str, server_name: str) -> list[dict[str, Any]]:
        self.calls.append(("list_tools", session, server_name))
        self._maybe_raise()
        return [{"name": "echo", "description": "", "input_schema": {"type": "object"}}]

    def call_tool(
        self, session: str, server_name: str, tool: str, tool_input: dict[str, Any], *, timeout: float | None = None
    ) -> McpResult:
        self.calls.append(("call_tool", session, server_name, tool, tool_input, timeout))
        self._maybe_raise()
        return McpResult([{"type": "text", "text": "ok"}], False)

    def validate_credential(self, rec: Record) -> dict[str, Any]:
        self.calls.append(("validate_credential", rec.id))
        return {"type": "vault_credential_validation", "credential_id": rec.id, "status": "valid"}

    def put_secret(self, name: str, value: Mapping[str, str]) -> None:
        self.calls.append(("put_secret", name, sorted(value)))
        self._maybe_raise()
        self.secrets[name] = dict(value)

    def merge_update(self, name: str, patch: SecretPatch) -> bool:
        self.calls.append(("merge_update", name, patch))
        self._maybe_raise()
        if name not in self.secrets:
            return False
        self.secrets[name] = patch.apply(self.secrets[name])
        return True


@dataclass
class FakeResources:
    records: dict[str, Record] = field(default_factory=dict)

    def get(self, kind: str, workspace_id: str, id_: str) -> Record | None:
        rec = self.records.get(id_)
        return rec if rec is not None and rec.kind == kind and rec.workspace_id == workspace_id else None


def _service(proxy: FakeProxy | None = None, resources: FakeResources | None = None) -> McpProxyLambda:
    return McpProxyLambda(proxy or FakeProxy(), resources or FakeResources())  # type: ignore[arg-type]


def test_list_tools_and_call_tool_answer_results() -> None:
    proxy = FakeProxy()
    svc = _service(proxy)
    listed = svc.serve({"op": "list_tools", "session_id": "sesn_1", "server_name": "tools"})
    called = svc.serve(
        {"op": "call_tool", "session_id": "sesn_1", "server_name": "tools", "tool": "echo", "input": {"text": "hi"}}
    )
    assert listed == {
        "ok": True,
        "result": {"tools": [{"name": "echo", "description": "", "input_schema": {"type": "object"}}]},
    }
    assert called == {"ok": True, "result": {"content": [{"type": "text", "text": "ok"}], "is_error": False}}
    # (without a deadline the proxy's own call timeout applies)
    assert proxy.calls[1] == ("call_tool", "sesn_1", "tools", "echo", {"text": "hi"}, 100.0)


def test_a_tools_call_ends_before_the_invocation_would_time_out() -> None:
    # Given an invocation with 60 s left and a proxy call timeout of 100 s
    proxy = FakeProxy()
    svc = _service(proxy)
    req = {"op": "call_tool", "session_id": "sesn_1", "server_name": "tools", "tool": "sleep", "input": {}}
    svc.serve(req, seconds_left=60.0)
    # Then the call may take the time left minus the margin, no more
    assert proxy.calls[-1][-1] == 60.0 - DEADLINE_MARGIN_SECONDS
    # And an explicit shorter timeout wins
    svc.serve({**req, "timeout_seconds": 5}, seconds_left=60.0)
    assert proxy.calls[-1][-1] == 5
    # And with almost no time left the call is refused as a typed connection failure, without calling the server
    out = svc.serve(req, seconds_left=DEADLINE_MARGIN_SECONDS + 0.5)
    assert out["ok"] is False and out["error"]["type"] == CONNECTION_FAILED
    assert out["error"]["server_name"] == "tools" and "too little to call 'sleep'" in out["error"]["message"]
    assert len(proxy.calls) == 2


@pytest.mark.parametrize("error_type", [AUTHENTICATION_FAILED, CONNECTION_FAILED])
def test_mcp_failures_are_typed_payloads(error_type: str) -> None:
    proxy = FakeProxy(raise_=McpProxyError(error_type, "MCP server 'tools' (http://x/mcp) said no", "tools"))  # type: ignore[arg-type]
    out = _service(proxy).serve({"op": "list_tools", "session_id": "sesn_1", "server_name": "tools"})
    assert out == {
        "ok": False,
        "error": {
            "type": error_type,
            "message": "MCP server 'tools' (http://x/mcp) said no",
            "server_name": "tools",
            "error_code": None,
        },
    }


def test_a_missing_session_and_an_unexpected_crash_are_typed_payloads() -> None:
    out = _service(FakeProxy(raise_=NotFound("session 'sesn_x' not found"))).serve(
        {"op": "list_tools", "session_id": "sesn_x", "server_name": "tools"}
    )
    assert out["error"]["type"] == "not_found_error" and out["error"]["message"] == "session 'sesn_x' not found"
    # An unexpected exception is reported by type only (its message may quote anything)
    out = _service(FakeProxy(raise_=KeyError(SECRET))).serve(
        {"op": "call_tool", "session_id": "sesn_1", "server_name": "tools", "tool": "echo"}
    )
    assert out["error"] == {
        "type": "api_error",
        "message": "the MCP proxy failed unexpectedly (KeyError)",
        "server_name": "tools",
        "error_code": None,
    }


def test_malformed_requests_are_described_without_their_values() -> None:
    svc = _service()
    # An unknown operation
    out = svc.serve({"op": "read_secret", "name": "vaults/vlt_1/vcrd_1"})
    assert out["ok"] is False and out["error"]["type"] == "invalid_request_error"
    # A secret name outside the vault namespace, with secret values in the request
    out = svc.serve({"op": "update_credential_secret", "name": "model-api-key", "updates": {"token": SECRET}})
    assert out["error"]["type"] == "invalid_request_error" and out["error"]["message"].startswith(
        "malformed MCP proxy request: update_credential_secret.name: String should match pattern"
    )
    # A bad field name next to a secret value: the message names the field, never the value
    out = svc.serve(
        {"op": "update_credential_secret", "name": "vaults/vlt_1/vcrd_1", "updates": {"Token!": SECRET}, "x": SECRET}
    )
    assert out["error"]["type"] == "invalid_request_error"
    assert SECRET not in json.dumps(out)


def test_validate_credential_loads_the_credential_of_that_vault() -> None:
    rec = Record(
        "vault_credential", "ws_1", "vcrd_1", {"vault_id": "vlt_1"}, datetime.now(UTC), attrs={"vault_id": "vlt_1"}
    )
    proxy = FakeProxy()
    svc = _service(proxy, FakeResources({"vcrd_1": rec}))
    ok = svc.serve(
        {"op": "validate_credential", "workspace_id": "ws_1", "vault_id": "vlt_1", "credential_id": "vcrd_1"}
    )
    assert ok["result"]["status"] == "valid" and proxy.calls == [("validate_credential", "vcrd_1")]
    # A credential of another vault or workspace is not found (and not probed)
    for ws, vault in (("ws_1", "vlt_2"), ("ws_2", "vlt_1")):
        out = svc.serve({"op": "validate_credential", "workspace_id": ws, "vault_id": vault, "credential_id": "vcrd_1"})
        assert out["error"]["type"] == "not_found_error"
        assert out["error"]["error_code"] == "vault_credential_not_found"
    assert len(proxy.calls) == 1


def test_gateway_and_handler_round_trip_a_credential_update() -> None:
    # Given the gateway whose lambda client hands the payload to the handler's service in-process
    name = "vaults/vlt_1/vcrd_1"
    proxy = FakeProxy(secrets={name: {"type": "mcp_oauth", "access_token": "old", "refresh_token": "rt"}})
    svc = _service(proxy)

    class Loopback:
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            out = svc.serve(json.loads(kwargs["Payload"]))
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(out).encode())}

    gateway = LambdaMcpGateway(function_name="McpProxy", lambda_client=Loopback())  # type: ignore[arg-type]
    patch = SecretPatch()
    patch.put("access_token", SECRET)
    patch.drop("refresh_token")
    # When the API merges an update
    assert gateway.merge_update(name, patch) is True
    # Then the proxy applied exactly that patch
    assert proxy.secrets[name] == {"type": "mcp_oauth", "access_token": SECRET}
    assert gateway.merge_update("vaults/vlt_1/vcrd_9", patch) is False


def test_put_credential_secret_stores_the_whole_value_and_answers_an_empty_result() -> None:
    # Given a proxy holding an old secret under the name
    name = "vaults/vlt_1/vcrd_1"
    proxy = FakeProxy(secrets={name: {"type": "mcp_oauth", "access_token": "old", "refresh_token": "rt"}})
    # When the API puts a whole new value
    out = _service(proxy).serve(
        {"op": "put_credential_secret", "name": name, "value": {"type": "static_bearer", "token": SECRET}}
    )
    # Then the proxy stored exactly that value (a replacement, not a merge) and answered an empty result
    assert out == {"ok": True, "result": {}}
    assert proxy.secrets[name] == {"type": "static_bearer", "token": SECRET}
    assert proxy.calls == [("put_secret", name, ["token", "type"])]


def test_a_failed_put_is_a_secret_store_error_payload_without_the_value() -> None:
    # Given a proxy whose secret store refuses the write
    err = SecretStoreError(
        "secret 'vaults/vlt_1/vcrd_1': Secrets Manager rejected the write (AccessDeniedException: not authorized to"
        " perform kms:GenerateDataKey)"
    )
    proxy = FakeProxy(raise_=err)
    out = _service(proxy).serve({"op": "put_credential_secret", "name": "vaults/vlt_1/vcrd_1", "value": {"t": SECRET}})
    # Then the answer is the typed secret store error with the store's message, and no value
    assert out == {
        "ok": False,
        "error": {"type": "secret_store_error", "message": str(err), "server_name": None, "error_code": None},
    }
    assert SECRET not in json.dumps(out)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"name": "model-api-key", "value": {"token": SECRET}}, "name"),  # outside the vault namespace
        ({"name": "vaults/vlt_1/vcrd_1", "value": {}}, "value"),  # an empty secret
        ({"name": "vaults/vlt_1/vcrd_1", "value": {"Token!": SECRET}}, "value"),  # a bad field name
        ({"name": "vaults/vlt_1/vcrd_1", "value": {"token": 42}}, "value"),  # not a string
        ({"name": "vaults/vlt_1/vcrd_1", "value": {f"k_{'a' * i}": SECRET for i in range(33)}}, "value"),
        ({"name": "vaults/vlt_1/vcrd_1", "value": {"token": SECRET}, "updates": {"token": SECRET}}, "updates"),
    ],
)
def test_a_malformed_put_is_refused_naming_the_field_never_the_value(request_: dict[str, Any], field: str) -> None:
    proxy = FakeProxy()
    out = _service(proxy).serve({"op": "put_credential_secret", **request_})
    assert out["ok"] is False and out["error"]["type"] == "invalid_request_error"
    assert out["error"]["message"].startswith(f"malformed MCP proxy request: put_credential_secret.{field}")
    assert SECRET not in json.dumps(out)
    # And nothing was written
    assert proxy.calls == [] and proxy.secrets == {}


def test_a_put_request_repr_shows_the_keys_only() -> None:
    req = PutCredentialSecretRequest(name="vaults/vlt_1/vcrd_1", value={"token": SECRET, "type": "static_bearer"})
    assert SECRET not in repr(req) and SECRET not in str(req)
    assert "value_keys=['token', 'type']" in repr(req)


def test_gateway_and_handler_round_trip_a_whole_secret_put() -> None:
    # Given the gateway whose lambda client hands the payload to the handler's service in-process
    proxy = FakeProxy()
    svc = _service(proxy)
    sent: list[dict[str, Any]] = []

    class Loopback:
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            sent.append(json.loads(kwargs["Payload"]))
            out = svc.serve(sent[-1])
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(out).encode())}

    gateway = LambdaMcpGateway(function_name="McpProxy", lambda_client=Loopback())  # type: ignore[arg-type]
    # When the API stores a new credential's secret through it
    value = {"type": "mcp_oauth", "access_token": SECRET, "refresh_token": "rt", "client_secret": "cs"}
    assert gateway.put_secret("vaults/vlt_1/vcrd_2", value) is None
    # Then one put_credential_secret request carried the whole value, and the proxy stored it as is
    assert sent == [{"op": "put_credential_secret", "name": "vaults/vlt_1/vcrd_2", "value": value}]
    assert proxy.secrets == {"vaults/vlt_1/vcrd_2": value}
    # And a store failure comes back as the same SecretStoreError the in-process store raises
    proxy.raise_ = SecretStoreError("secret 'vaults/vlt_1/vcrd_3': Secrets Manager rejected the write (Throttling: x)")
    with pytest.raises(SecretStoreError, match=r"rejected the write \(Throttling: x\)"):
        gateway.put_secret("vaults/vlt_1/vcrd_3", {"token": SECRET})


@dataclass
class FakeContext:
    function_name: str = "McpProxy"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:McpProxy"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def test_the_handler_serves_through_the_cached_proxy_and_never_logs_the_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the handler's container proxy replaced by one over the fake
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_DEV", "true")
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")  # an operator turning event logging on
    proxy = FakeProxy(secrets={"vaults/vlt_1/vcrd_1": {"token": "old"}})
    monkeypatch.setattr(mcp_proxy_handler, "proxy", lambda: _service(proxy))
    caplog.set_level(logging.DEBUG)
    # When the API sends a credential update through it, and the harness a tool call
    event = {"op": "update_credential_secret", "name": "vaults/vlt_1/vcrd_1", "updates": {"token": SECRET}}
    out = mcp_proxy_handler.handler(event, FakeContext())  # type: ignore[arg-type]
    put = {"op": "put_credential_secret", "name": "vaults/vlt_1/vcrd_2", "value": {"token": SECRET + "-new"}}
    put_out = mcp_proxy_handler.handler(put, FakeContext())  # type: ignore[arg-type]
    call = {"op": "call_tool", "session_id": "sesn_1", "server_name": "tools", "tool": "echo", "input": {}}
    mcp_proxy_handler.handler(call, FakeContext())  # type: ignore[arg-type]
    # Then the update was applied and answered
    assert out == {"ok": True, "result": {"found": True}}
    assert proxy.secrets["vaults/vlt_1/vcrd_1"] == {"token": SECRET}
    assert put_out == {"ok": True, "result": {}} and proxy.secrets["vaults/vlt_1/vcrd_2"] == {"token": SECRET + "-new"}
    # And the call's deadline came from the invocation's remaining time
    assert proxy.calls[-1][-1] == 30.0 - DEADLINE_MARGIN_SECONDS
    # And nothing logged the secret value
    printed = capsys.readouterr()
    assert "MCP proxy request served" in printed.out + printed.err + caplog.text
    assert SECRET not in printed.out + printed.err + caplog.text
