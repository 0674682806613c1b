"""The API Lambda registers the deployment's admin key secret on its first request (api/admin_bootstrap.py).

On moto: DynamoDB tables and a Secrets Manager secret generated as the CDK stack generates it (48 letters and digits).
Each `create_lambda_app()` is one Lambda container's cold start; the official SDK calls each over loopback.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from managed_agents.adapters.aws.dynamodb_event_store import create_events_table
from managed_agents.adapters.aws.dynamodb_resource_store import DynamoDbResourceStore, create_resources_table
from managed_agents.api.admin_bootstrap import AdminKeyBootstrap
from managed_agents.api.lambda_app import create_lambda_app
from managed_agents.ports import ListQuery
from managed_agents.services.keys import SYSTEM, KeyService
from managed_agents.settings import (
    ADMIN_KEY_SECRET_ARN_ENV,
    EVENTS_TABLE_ENV,
    RESOURCES_TABLE_ENV,
    SPILL_BUCKET_ENV,
)
from managed_agents.testing.loopback import UvicornThread, free_port
from tests.contract.conftest import fake_aws_env

REGION = "us-east-1"


@dataclass
class Deployment:
    secrets: Any
    secret_arn: str
    resources: DynamoDbResourceStore

    def secret(self) -> str:
        return str(self.secrets.get_secret_value(SecretId=self.secret_arn)["SecretString"])

    def api_keys(self) -> list[dict[str, Any]]:
        rows, _ = self.resources.list_records("api_key", SYSTEM, ListQuery(limit=100, include_archived=True))
        return [r.doc for r in rows]

    def workspaces(self) -> list[dict[str, Any]]:
        rows, _ = self.resources.list_records("workspace", SYSTEM, ListQuery(limit=100))
        return [r.doc for r in rows]


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    fake_aws_env(monkeypatch)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    suffix = uuid.uuid4().hex[:10]
    parameters.clear_caches()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        sm = boto3.client("secretsmanager", region_name=REGION)
        create_resources_table(ddb, f"resources-{suffix}")
        create_events_table(ddb, f"events-{suffix}")
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=f"spill-{suffix}")
        # The stack's SecretStringGenerator(password_length=48, exclude_punctuation=True, include_space=False)
        value = sm.get_random_password(PasswordLength=48, ExcludePunctuation=True, IncludeSpace=False)["RandomPassword"]
        arn = sm.create_secret(Name=f"managed-agents-{suffix}/admin-api-key", SecretString=value)["ARN"]
        monkeypatch.setenv(RESOURCES_TABLE_ENV, f"resources-{suffix}")
        monkeypatch.setenv(EVENTS_TABLE_ENV, f"events-{suffix}")
        monkeypatch.setenv(SPILL_BUCKET_ENV, f"spill-{suffix}")
        monkeypatch.setenv(ADMIN_KEY_SECRET_ARN_ENV, arn)
        yield Deployment(sm, arn, DynamoDbResourceStore(table_name=f"resources-{suffix}", dynamodb_client=ddb))
    parameters.clear_caches()


def _client(port: int, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=key, max_retries=0)


def test_two_cold_starts_register_one_key_and_the_sdk_authenticates_with_the_secret(deployment: Deployment) -> None:
    # Given two API containers cold-started at once; building them read no secret and wrote nothing
    apps = [create_lambda_app(), create_lambda_app()]
    assert deployment.api_keys() == [] and deployment.workspaces() == []
    ports = [free_port(), free_port()]
    key = deployment.secret()
    with UvicornThread(apps[0], ports[0]), UvicornThread(apps[1], ports[1]):
        # When the first request of each arrives at the same moment, with the secret's value as the API key
        results: dict[int, Any] = {}

        def first_request(port: int) -> None:
            try:
                results[port] = _client(port, key).beta.agents.create(name="first", model="claude-sonnet-4-6")
            except Exception as exc:  # surfaced by the assertion below
                results[port] = exc

        threads = [threading.Thread(target=first_request, args=(p,)) for p in ports]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        # Then both requests were authenticated by the key the bootstrap registered just before serving them
        assert all(getattr(r, "type", None) == "agent" for r in results.values()), results
        # And the store holds exactly one workspace and one key, the key's hash being the secret's
        (doc,) = deployment.api_keys()
        assert doc["bootstrap"] is True and doc["revoked_at"] is None and doc["name"] == "admin (bootstrap)"
        assert [w["id"] for w in deployment.workspaces()] == [doc["workspace_id"]]
        # And the key works from then on, while any other key is refused with the API's 401
        assert [a.name for a in _client(ports[1], key).beta.agents.list()] == ["first", "first"]
        with pytest.raises(anthropic.AuthenticationError):
            _client(ports[0], key[:-1] + ("A" if key[-1] != "A" else "B")).beta.agents.list()


def test_a_rotated_secret_replaces_the_key_and_revokes_the_old_one(deployment: Deployment) -> None:
    # Given a container that registered the deployed secret on its first request
    app = create_lambda_app()
    bootstrap: AdminKeyBootstrap = app.state.admin_key_bootstrap
    port, old = free_port(), deployment.secret()
    with UvicornThread(app, port):
        assert _client(port, old).beta.agents.list().data == []
        # When the operator puts a new value and the container's next check comes (the cached value expired)
        new = "N3w" + uuid.uuid4().hex + uuid.uuid4().hex
        deployment.secrets.put_secret_value(SecretId=deployment.secret_arn, SecretString=new + "\n")
        parameters.clear_caches()
        bootstrap._next_check = 0.0
        # Then the new value authenticates and the old one no longer does
        assert _client(port, new).beta.agents.list().data == []
        with pytest.raises(anthropic.AuthenticationError):
            _client(port, old).beta.agents.list()
    keys = {d["hint"][-4:]: d for d in deployment.api_keys()}
    assert keys[old[-4:]]["revoked_at"] is not None and keys[new[-4:]]["revoked_at"] is None
    # And a container cold-starting later with the old value cached cannot bring the revoked key back
    KeyService(deployment.resources, bootstrap.keys.clock).ensure_bootstrap_key(old)
    assert next(d for d in deployment.api_keys() if d["hint"][-4:] == old[-4:])["revoked_at"] is not None


def test_an_unreadable_secret_does_not_fail_requests_and_is_retried(deployment: Deployment) -> None:
    # Given a container whose first secret read fails (Secrets Manager unavailable, or no permission)
    app = create_lambda_app()
    bootstrap: AdminKeyBootstrap = app.state.admin_key_bootstrap
    read = bootstrap.read_secret
    calls: list[str] = []

    def flaky() -> str:
        calls.append("read")
        if len(calls) == 1:
            raise RuntimeError("AccessDeniedException")
        return read()

    bootstrap.read_secret = flaky
    port, key = free_port(), deployment.secret()
    with UvicornThread(app, port):
        # When a request comes: it is served (401 here: no key registered), and the next one within the retry
        # interval does not read again
        for _ in range(2):
            with pytest.raises(anthropic.AuthenticationError):
                _client(port, key).beta.agents.list()
        assert calls == ["read"]
        # Then after the retry interval the bootstrap runs again and the key works
        bootstrap._next_check = 0.0
        assert _client(port, key).beta.agents.list().data == []
        assert calls == ["read", "read"]


def test_a_secret_that_is_not_a_usable_key_is_refused() -> None:
    keys = KeyService(None, None)  # type: ignore[arg-type]  # refused before any store access
    for bad in ("short", "x" * 31, "has space " + "x" * 40, "ek-ma-" + "x" * 40, "wt-ma-" + "x" * 40):
        with pytest.raises(ValueError, match="bootstrap API key"):
            keys.ensure_bootstrap_key(bad)
