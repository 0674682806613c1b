"""The MCP proxy Lambda on moto: the only reader of vault secrets, reached through `lambda:Invoke`.

DynamoDB and Secrets Manager are moto; every `lambda:Invoke` of the MCP proxy function is dispatched in-process to the
real handler (functions/mcp_proxy/handler.py) by replacing `LambdaSimpleBackend.invoke`. The API is the API Lambda's
ASGI app on loopback, driven by the official SDK (vaults and credentials are created through it; their secrets are
written to Secrets Manager by the proxy, the only user of the vault key); the MCP servers are real ones (official
`mcp` SDK) on loopback; the harness side is the ModelTurn's own gateway (`AwsDeps.harness.mcp`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import boto3
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

import functions.mcp_proxy.handler as mcp_proxy_handler
from managed_agents.adapters.aws.dynamodb_event_store import create_events_table
from managed_agents.adapters.aws.dynamodb_resource_store import create_resources_table
from managed_agents.adapters.aws.lambda_mcp_gateway import LambdaMcpGateway
from managed_agents.api.lambda_app import create_lambda_app
from managed_agents.aws_runtime import build_aws_deps, build_aws_runtime
from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.ports import AUTHENTICATION_FAILED, ListQuery, McpProxyError
from managed_agents.settings import (
    EVENTS_TABLE_ENV,
    MCP_PROXY_FUNCTION_ENV,
    RESOURCES_TABLE_ENV,
    SPILL_BUCKET_ENV,
    VAULT_KMS_KEY_ARN_ENV,
    VAULT_SECRET_PREFIX_ENV,
    AwsSettings,
)
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.testing.mcp_servers import McpTestServer, OAuthIssuer
from managed_agents.wire.vaults import CredentialCreateParams, CredentialUpdateParams, VaultCreateParams
from managed_agents.wiring import Runtime
from tests.contract.conftest import fake_aws_env

REGION, ACCOUNT = "us-east-1", "123456789012"
PROXY_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:McpProxy:live"
TOKEN = "mcp-bearer-canary-9d2e71"


@dataclass
class FakeLambdaContext:
    function_name: str = "McpProxy"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = PROXY_ARN
    aws_request_id: str = "req-test"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


@dataclass
class ProxyEnv:
    client: anthropic.Anthropic  # the official SDK against the API Lambda's app
    api: Runtime  # the API Lambda's runtime
    gateway: LambdaMcpGateway  # the ModelTurn Lambda's MCP gateway
    secretsmanager: Any
    prefix: str
    invocations: list[str] = field(default_factory=list)  # the `op` of every proxy invocation

    def stored_secret(self, vault_id: str, credential_id: str) -> dict[str, str]:
        raw = self.secretsmanager.get_secret_value(SecretId=f"{self.prefix}vaults/{vault_id}/{credential_id}")
        value: dict[str, str] = json.loads(raw["SecretString"])
        return value

    def session(self, url: str, vault_ids: list[str]) -> str:
        agent = self.client.beta.agents.create(
            name="a",
            model="claude-sonnet-4-6",
            mcp_servers=[{"type": "url", "name": "tools", "url": url}],
            tools=[{"type": "mcp_toolset", "mcp_server_name": "tools"}],
        )
        env = self.client.beta.environments.create(name="e", config={"type": "cloud"})
        return self.client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=vault_ids).id


class _NoModel:
    def stream_message(self, request: Any, *, cancel: Any = None) -> Any:
        raise AssertionError("these tests run no model turn")


def _dispatch(invocations: list[str]) -> Any:
    def invoke(
        _self: Any, function_name: str, _qualifier: Any, body: Any, _headers: Any, response_headers: Any
    ) -> bytes:
        assert function_name.split(":")[-2 if function_name.count(":") > 6 else -1] == "McpProxy", function_name
        event = json.loads(body)
        invocations.append(event.get("op"))
        try:
            result = mcp_proxy_handler.handler(event, FakeLambdaContext())  # type: ignore[arg-type]
        except Exception as exc:  # a Lambda's unhandled error: FunctionError + the error document
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()

    return invoke


def _reset_proxy() -> None:
    if mcp_proxy_handler.proxy.cache_info().currsize:
        mcp_proxy_handler.proxy().close()
    mcp_proxy_handler.proxy.cache_clear()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ProxyEnv]:
    fake_aws_env(monkeypatch)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_DEV", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ManagedAgentsTest")
    suffix = uuid.uuid4().hex[:8]
    prefix = f"ma-{suffix}/vault/"
    invocations: list[str] = []
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", _dispatch(invocations))
    config: Any = {"lambda": {"use_docker": False}}
    with mock_aws(config=config):
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_resources_table(ddb, f"resources-{suffix}")
        create_events_table(ddb, f"events-{suffix}")
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=f"spill-{suffix}")
        for name, value in {
            RESOURCES_TABLE_ENV: f"resources-{suffix}",
            EVENTS_TABLE_ENV: f"events-{suffix}",
            SPILL_BUCKET_ENV: f"spill-{suffix}",
            MCP_PROXY_FUNCTION_ENV: PROXY_ARN,
            VAULT_SECRET_PREFIX_ENV: prefix,
        }.items():
            monkeypatch.setenv(name, value)
        _reset_proxy()
        app = create_lambda_app()
        api: Runtime = app.state.runtime
        ws = api.keys.create_workspace("default")
        _, admin_key = api.keys.create_key(ws, name="admin")
        model_turn = build_aws_deps(model=_NoModel())
        gateway = model_turn.harness.mcp
        assert isinstance(gateway, LambdaMcpGateway)
        port = free_port()
        try:
            with UvicornThread(app, port):
                client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=admin_key, max_retries=0)
                sm = boto3.client("secretsmanager", region_name=REGION)
                yield ProxyEnv(client, api, gateway, sm, prefix, invocations)
        finally:
            _reset_proxy()


def _bearer_vault(env: ProxyEnv, url: str, token: str) -> tuple[str, str]:
    vault = env.client.beta.vaults.create(display_name="v")
    cred = env.client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": token, "mcp_server_url": url}
    )
    return vault.id, cred.id


def _oauth_vault(env: ProxyEnv, srv: McpTestServer, issuer: OAuthIssuer, access: str, refresh: str) -> tuple[str, str]:
    vault = env.client.beta.vaults.create(display_name="o")
    cred = env.client.beta.vaults.credentials.create(
        vault.id,
        auth={
            "type": "mcp_oauth",
            "access_token": access,
            "mcp_server_url": srv.url,
            "refresh": {
                "client_id": issuer.client_id,
                "refresh_token": refresh,
                "token_endpoint": srv.token_endpoint,
                "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": issuer.client_secret},
            },
        },
    )
    return vault.id, cred.id


def test_tools_are_listed_and_called_with_a_bearer_credential_from_secrets_manager(proxy_env: ProxyEnv) -> None:
    with McpTestServer(bearer_token=TOKEN) as srv:
        # Given a session whose vault holds the server's token (written to Secrets Manager by the proxy for the API)
        vault_id, cred_id = _bearer_vault(proxy_env, srv.url, TOKEN)
        sid = proxy_env.session(srv.url, [vault_id])
        assert proxy_env.stored_secret(vault_id, cred_id) == {"type": "static_bearer", "token": TOKEN}
        # When the ModelTurn's gateway lists the server's tools and calls one, each through a proxy invocation
        tools = proxy_env.gateway.list_tools(sid, "tools")
        warm = mcp_proxy_handler.proxy().proxy._conns[(sid, "tools")]
        result = proxy_env.gateway.call_tool(sid, "tools", "add", {"a": 2, "b": 40})
        # Then the server's real tools came back, and the call ran on the server with the vault's token
        names = {t["name"] for t in tools}
        assert {"echo", "add", "fail"} <= names
        assert result.content == [{"type": "text", "text": "42"}] and result.is_error is False
        assert proxy_env.invocations == ["put_credential_secret", "list_tools", "call_tool"]
        assert srv.requests and all(r["authorization"] for r in srv.requests)
        assert srv.count(status=401) == 0
        # And the second invocation reused the container's warm connection (the same MCP session)
        assert mcp_proxy_handler.proxy().proxy._conns[(sid, "tools")] is warm and warm.alive
        # And a tool-level error is a result, not a failure
        failed = proxy_env.gateway.call_tool(sid, "tools", "fail", {"message": "nope"})
        assert failed.is_error is True


def test_an_expired_oauth_token_is_refreshed_and_the_rotated_tokens_are_stored(proxy_env: ProxyEnv) -> None:
    issuer = OAuthIssuer(access_ttl=3600)
    with McpTestServer(oauth=issuer) as srv:
        # Given an mcp_oauth credential whose access token dies before its first use
        access, refresh = issuer.issue()
        vault_id, cred_id = _oauth_vault(proxy_env, srv, issuer, access, refresh)
        sid = proxy_env.session(srv.url, [vault_id])
        issuer.expire_all()
        # When the harness calls a tool through the proxy
        result = proxy_env.gateway.call_tool(sid, "tools", "echo", {"text": "hello"})
        # Then the proxy refreshed once, and the call succeeded with the new token
        assert result.content == [{"type": "text", "text": "hello"}] and not result.is_error
        assert issuer.refresh_count == 1
        # And the rotated access and refresh tokens were written back to Secrets Manager (the client secret kept)
        stored = proxy_env.stored_secret(vault_id, cred_id)
        assert stored["access_token"] not in (access, "") and issuer.valid(stored["access_token"])
        assert stored["refresh_token"] not in (refresh, "")
        assert stored["client_secret"] == issuer.client_secret
        # And the credential record shows the new expiry (the proxy wrote it to the resources table)
        cred = proxy_env.client.beta.vaults.credentials.retrieve(cred_id, vault_id=vault_id)
        assert cred.auth.expires_at is not None
        # And the next call uses the stored token without another refresh
        proxy_env.gateway.call_tool(sid, "tools", "echo", {"text": "again"})
        assert issuer.refresh_count == 1


def test_a_rejected_credential_is_a_typed_authentication_error_without_the_secret(proxy_env: ProxyEnv) -> None:
    wrong = "wrong-bearer-canary-51c0aa"
    with McpTestServer(bearer_token=TOKEN) as srv:
        # Given a vault whose token the server rejects
        vault_id, cred_id = _bearer_vault(proxy_env, srv.url, wrong)
        sid = proxy_env.session(srv.url, [vault_id])
        # When the harness lists the server's tools
        with pytest.raises(McpProxyError) as caught:
            proxy_env.gateway.list_tools(sid, "tools")
        # Then it gets the proxy's authentication error, rebuilt with its type, server and readable message
        err = caught.value
        assert err.error_type == AUTHENTICATION_FAILED and err.server_name == "tools"
        assert "rejected the credentials with HTTP 401" in err.message and cred_id in err.message
        assert wrong not in repr(err) and TOKEN not in repr(err)
        assert err.session_error()["type"] == "mcp_authentication_failed_error"


def test_a_credential_update_merges_through_the_proxy_and_the_api_never_reads_a_secret(
    proxy_env: ProxyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the API's secret store refusing every read and write (on AWS its role may do neither, nor use the key)
    assert proxy_env.api.vaults is not None
    api_secrets = proxy_env.api.vaults.secrets
    read_attempts: list[str] = []

    def no_access(name: str, *_: Any) -> None:
        read_attempts.append(name)
        raise AssertionError("the API read or wrote a vault secret")

    monkeypatch.setattr(api_secrets, "get", no_access)
    monkeypatch.setattr(api_secrets, "put", no_access)
    issuer = OAuthIssuer(access_ttl=3600)
    with McpTestServer(oauth=issuer) as srv:
        old_access, refresh = issuer.issue()
        new_access, _ = issuer.issue()
        vault_id, cred_id = _oauth_vault(proxy_env, srv, issuer, old_access, refresh)
        # When the user replaces only the access token
        proxy_env.client.beta.vaults.credentials.update(
            cred_id, vault_id=vault_id, auth={"type": "mcp_oauth", "access_token": new_access}
        )
        # Then the proxy merged it into the stored secret: new access token, refresh token and client secret kept
        assert proxy_env.stored_secret(vault_id, cred_id) == {
            "type": "mcp_oauth",
            "access_token": new_access,
            "refresh_token": refresh,
            "client_secret": issuer.client_secret,
        }
        assert proxy_env.invocations == ["put_credential_secret", "update_credential_secret"]
        # When the user drops the refresh configuration
        proxy_env.client.beta.vaults.credentials.update(
            cred_id, vault_id=vault_id, auth={"type": "mcp_oauth", "refresh": None}
        )
        assert proxy_env.stored_secret(vault_id, cred_id) == {"type": "mcp_oauth", "access_token": new_access}
        # When the user validates the credential, the proxy probes the server with the stored token
        validation = proxy_env.client.beta.vaults.credentials.mcp_oauth_validate(cred_id, vault_id=vault_id)
        assert validation.status == "valid" and validation.refresh is None
        assert proxy_env.invocations[-1] == "validate_credential"
    # And the API never read or wrote a secret
    assert read_attempts == []


def test_a_credential_whose_secret_is_gone_is_a_conflict_through_the_proxy(proxy_env: ProxyEnv) -> None:
    # Given a credential whose secret was deleted behind the platform's back
    vault_id, cred_id = _bearer_vault(proxy_env, "http://127.0.0.1:9/mcp", TOKEN)
    proxy_env.secretsmanager.delete_secret(
        SecretId=f"{proxy_env.prefix}vaults/{vault_id}/{cred_id}", ForceDeleteWithoutRecovery=True
    )
    # When the user updates its token
    with pytest.raises(anthropic.ConflictError) as caught:
        proxy_env.client.beta.vaults.credentials.update(
            cred_id, vault_id=vault_id, auth={"type": "static_bearer", "token": "new-token-value"}
        )
    # Then the API answers the same 409 as the embedded runtime, and nothing was recreated
    assert "has no stored secret" in str(caught.value)
    assert proxy_env.invocations == ["put_credential_secret", "update_credential_secret"]
    with pytest.raises(proxy_env.secretsmanager.exceptions.ResourceNotFoundException):
        proxy_env.secretsmanager.get_secret_value(SecretId=f"{proxy_env.prefix}vaults/{vault_id}/{cred_id}")


def test_without_the_mcp_proxy_the_api_refuses_secret_writes_instead_of_doing_them_itself(
    proxy_env: ProxyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a credential stored through the proxy, then an API runtime on the same tables without the proxy
    vault_id, cred_id = _bearer_vault(proxy_env, "http://127.0.0.1:9/mcp", TOKEN)
    ws = proxy_env.api.keys.create_workspace("other")
    monkeypatch.delenv(MCP_PROXY_FUNCTION_ENV)
    api = build_aws_runtime(AwsSettings())
    assert api.vaults is not None and api.sessions.vaults is api.vaults
    for method in ("get", "put"):
        monkeypatch.setattr(api.vaults.secrets, method, lambda *a: pytest.fail("the API read or wrote a vault secret"))
    # When a credential is created
    vault = api.vaults.create(ws, VaultCreateParams(display_name="v"))
    params = {"auth": {"type": "static_bearer", "token": TOKEN, "mcp_server_url": "http://127.0.0.1:9/mcp"}}
    with pytest.raises(ServiceUnavailable, match=r"storing a credential's secret needs the MCP proxy Lambda"):
        api.vaults.create_credential(ws, str(vault["id"]), CredentialCreateParams.model_validate(params))
    # Then it is refused with the reason, and neither a record nor a secret was left
    assert api.vaults.list_credentials(ws, str(vault["id"]), ListQuery())[0] == []
    listed = proxy_env.secretsmanager.list_secrets(Filters=[{"Key": "name", "Values": [f"{proxy_env.prefix}vaults/"]}])
    assert [x["Name"] for x in listed["SecretList"]] == [f"{proxy_env.prefix}vaults/{vault_id}/{cred_id}"]
    # And an existing credential's token update is refused too, its stored secret untouched
    vault_rec = proxy_env.api.resources.get_by_id("vault", vault_id)
    assert vault_rec is not None
    update = CredentialUpdateParams.model_validate({"auth": {"type": "static_bearer", "token": "new-token"}})
    with pytest.raises(ServiceUnavailable, match="updating a credential's secret needs the MCP proxy Lambda"):
        api.vaults.update_credential(vault_rec.workspace_id, vault_id, cred_id, update)
    assert proxy_env.stored_secret(vault_id, cred_id)["token"] == TOKEN
    # And the proxy was invoked only for the first credential's put
    assert proxy_env.invocations == ["put_credential_secret"]


def test_the_proxy_creates_new_secrets_with_the_vault_key_and_overwrites_them_whole(
    proxy_env: ProxyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a vault KMS key in the proxy's environment (the stack sets it on the proxy alone)
    key_arn = boto3.client("kms", region_name=REGION).create_key(Description="vault key")["KeyMetadata"]["Arn"]
    monkeypatch.setenv(VAULT_KMS_KEY_ARN_ENV, key_arn)
    _reset_proxy()
    # When a credential is created through the API
    vault_id, cred_id = _bearer_vault(proxy_env, "http://127.0.0.1:9/mcp", TOKEN)
    # Then the proxy created its secret, encrypted with the vault key, holding the whole value
    name = f"{proxy_env.prefix}vaults/{vault_id}/{cred_id}"
    assert proxy_env.secretsmanager.describe_secret(SecretId=name)["KmsKeyId"] == key_arn
    assert proxy_env.stored_secret(vault_id, cred_id) == {"type": "static_bearer", "token": TOKEN}
    assert proxy_env.invocations == ["put_credential_secret"]
    # When the API's gateway puts a whole new value under the same name (the op's overwrite)
    api_gateway = proxy_env.api.vaults.credential_secrets if proxy_env.api.vaults else None
    assert isinstance(api_gateway, LambdaMcpGateway)
    api_gateway.put_secret(f"vaults/{vault_id}/{cred_id}", {"type": "static_bearer", "token": "replaced"})
    # Then the secret holds exactly the new value, as a new version of the same secret (PutSecretValue)
    assert proxy_env.stored_secret(vault_id, cred_id) == {"type": "static_bearer", "token": "replaced"}
    versions = proxy_env.secretsmanager.list_secret_version_ids(SecretId=name)["Versions"]
    assert len(versions) == 2


def test_a_secret_write_the_proxy_cannot_do_is_a_503_envelope_and_leaves_nothing(
    proxy_env: ProxyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the proxy's Secrets Manager refusing to create secrets (as AWS does when the key policy says no)
    from botocore.exceptions import ClientError

    store = mcp_proxy_handler.proxy().proxy.resolver.secrets
    denied = "User: arn:aws:sts::123456789012:assumed-role/proxy is not authorized to perform: kms:GenerateDataKey"

    def create_secret(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": denied}}, "CreateSecret")

    monkeypatch.setattr(store._client, "create_secret", create_secret)  # type: ignore[attr-defined]
    vault = proxy_env.client.beta.vaults.create(display_name="v")
    # When the user creates a credential
    with pytest.raises(anthropic.InternalServerError) as caught:
        proxy_env.client.beta.vaults.credentials.create(
            vault.id, auth={"type": "static_bearer", "token": TOKEN, "mcp_server_url": "http://127.0.0.1:9/mcp"}
        )
    # Then the API answers the error envelope: a 503 whose message names the failed write and its cause
    err = caught.value
    assert err.status_code == 503
    body = err.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "api_error"
    message = body["error"]["message"]
    assert "its secret could not be stored" in message and "Secrets Manager rejected the write" in message
    assert "AccessDeniedException" in message and "kms:GenerateDataKey" in message
    assert TOKEN not in message
    # And no credential and no secret were left behind
    assert proxy_env.client.beta.vaults.credentials.list(vault_id=vault.id).data == []
    listed = proxy_env.secretsmanager.list_secrets(Filters=[{"Key": "name", "Values": [f"{proxy_env.prefix}vaults/"]}])
    assert listed["SecretList"] == []
    assert proxy_env.invocations == ["put_credential_secret"]
