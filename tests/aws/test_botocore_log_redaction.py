"""Secret values never reach a log line, even with botocore at DEBUG (adapters/aws/botocore_log_redaction.py)."""

from __future__ import annotations

import logging

import boto3
import pytest
from moto import mock_aws

from managed_agents.adapters.aws.botocore_log_redaction import REDACTED
from managed_agents.adapters.aws.secrets_manager_store import SecretsManagerSecretStore
from managed_agents.aws_runtime import model_api_key
from managed_agents.settings import AwsSettings
from tests.contract.conftest import fake_aws_env

CANARY = "redaction-canary-7c1e55"


def test_secret_values_written_and_read_through_the_store_stay_out_of_debug_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_aws_env(monkeypatch)
    with mock_aws():
        store = SecretsManagerSecretStore(prefix="t/", client=boto3.client("secretsmanager", region_name="us-east-1"))
        # Given botocore logging at DEBUG (as under a Lambda whose log level is DEBUG)
        caplog.set_level(logging.DEBUG)
        # When a secret is created, rotated and read back
        store.put("cred1", {"token": CANARY + "-1"})
        store.put("cred1", {"token": CANARY + "-2"})
        assert store.get("cred1") == {"token": CANARY + "-2"}
    # Then botocore logged the calls, but no secret value
    botocore = [r for r in caplog.records if r.name in ("botocore.endpoint", "botocore.parsers")]
    assert any(r.getMessage() == REDACTED for r in botocore)
    assert any("GetSecretValue" in r.getMessage() for r in botocore)  # the other lines are untouched
    assert CANARY not in caplog.text


def test_the_model_key_read_from_secrets_manager_stays_out_of_debug_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_aws_env(monkeypatch)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="model-key", SecretString=CANARY + "-model")["ARN"]
        settings = AwsSettings(
            resources_table="res", events_table="evt", spill_bucket="spill", model_api_key_secret_arn=arn
        )
        caplog.set_level(logging.DEBUG)
        assert model_api_key(settings, secrets_client=client) == CANARY + "-model"
    assert any(r.name == "botocore.parsers" for r in caplog.records)
    assert CANARY not in caplog.text
