"""Adapters under contract. Every port suite here runs once per adapter (style: tests/contract)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore, create_events_table
from managed_agents.adapters.aws.dynamodb_resource_store import DynamoDbResourceStore, create_resources_table
from managed_agents.adapters.aws.secrets_manager_store import SecretsManagerSecretStore
from managed_agents.adapters.local.secret_file_store import EncryptedFileSecretStore
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore, SqliteResourceStore
from managed_agents.ports import EventStore, ResourceStore, SecretStore

EVENT_STORES = ["sqlite", "dynamodb"]
RESOURCE_STORES = ["sqlite", "dynamodb"]
SECRET_STORES = ["file", "secretsmanager"]

# (writers, events per writer) of test_concurrent_writers_get_a_gapless_sequence. moto is far slower than DynamoDB:
# it serves one request at a time here (see _serialize_moto) and copies the whole table for every item of a
# transaction, so 10,000 contended appends would take hours; 20 racing writers still exercise every conflict path.
CONCURRENT_LOAD: dict[str, tuple[int, int]] = {"sqlite": (20, 500), "dynamodb": (20, 10)}

_FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def _serialize_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every mocked AWS request atomic, as each request is on the real services.

    moto's in-process backends take no lock: with concurrent threads, TransactWriteItems checks conditions and
    writes without isolation, deep-copies tables while other threads mutate them ("dictionary changed size during
    iteration") and rolls a cancelled transaction back to a snapshot that erases writes committed meanwhile.
    """
    lock = threading.RLock()
    process_request: Callable[..., Any] = BotocoreStubber.process_request

    def serialized(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return process_request(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialized)


def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, and serialized moto requests (see _serialize_moto)."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in _FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    _serialize_moto(monkeypatch)


@contextmanager
def moto_event_store(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Iterator[DynamoDbEventStore]:
    """A DynamoDbEventStore on a fresh table and bucket inside moto, with fake credentials."""
    fake_aws_env(monkeypatch)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        suffix = uuid.uuid4().hex[:12]
        table, bucket = f"events-{suffix}", f"events-spill-{suffix}"
        create_events_table(dynamodb, table)
        s3.create_bucket(Bucket=bucket)
        yield DynamoDbEventStore(table_name=table, bucket_name=bucket, dynamodb_client=dynamodb, s3_client=s3, **kwargs)


@pytest.fixture(params=EVENT_STORES)
def event_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EventStore]:
    if request.param == "sqlite":
        db = SqliteDatabase(tmp_path_factory.mktemp("sqlite") / "events.db")
        yield SqliteEventStore(db)
    elif request.param == "dynamodb":
        with moto_event_store(monkeypatch) as store:
            yield store
    else:  # pragma: no cover - new adapters register here
        raise AssertionError(request.param)


@pytest.fixture
def concurrent_load(request: pytest.FixtureRequest) -> tuple[int, int]:
    """(writers, events per writer) for the adapter the test runs on."""
    return CONCURRENT_LOAD[request.node.callspec.params["event_store"]]


@pytest.fixture
def dynamodb_event_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDbEventStore]:
    with moto_event_store(monkeypatch) as store:
        yield store


@contextmanager
def moto_resource_store(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Iterator[DynamoDbResourceStore]:
    """A DynamoDbResourceStore on a fresh table inside moto, with fake credentials."""
    fake_aws_env(monkeypatch)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        table = f"resources-{uuid.uuid4().hex[:12]}"
        create_resources_table(dynamodb, table)
        yield DynamoDbResourceStore(table_name=table, dynamodb_client=dynamodb, **kwargs)


@pytest.fixture(params=RESOURCE_STORES)
def resource_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ResourceStore]:
    if request.param == "sqlite":
        yield SqliteResourceStore(SqliteDatabase(tmp_path_factory.mktemp("sqlite") / "resources.db"))
    elif request.param == "dynamodb":
        with moto_resource_store(monkeypatch) as store:
            yield store
    else:  # pragma: no cover - new adapters register here
        raise AssertionError(request.param)


@pytest.fixture
def dynamodb_resource_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDbResourceStore]:
    with moto_resource_store(monkeypatch) as store:
        yield store


@pytest.fixture(params=SECRET_STORES)
def secret_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecretStore]:
    if request.param == "file":
        monkeypatch.delenv("MANAGED_AGENTS_SECRET_KEY", raising=False)
        yield EncryptedFileSecretStore.in_data_dir(tmp_path_factory.mktemp("data"))
    elif request.param == "secretsmanager":
        fake_aws_env(monkeypatch)
        with mock_aws():
            client = boto3.client("secretsmanager", region_name="us-east-1")
            yield SecretsManagerSecretStore(prefix=f"test-{uuid.uuid4().hex[:8]}/", client=client)
    else:  # pragma: no cover - new adapters register here
        raise AssertionError(request.param)
