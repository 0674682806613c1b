"""A resource's webhook event is recorded in the transaction of the write that causes it, on both stores.

SQLite: an outbox row in the write's transaction; DynamoDB: a webhook item in the events table, in the write's
TransactWriteItems (the events table's stream carries it to the relay). The fault: the outbox write fails (a
trigger that aborts it on SQLite, the events table gone on DynamoDB), standing in for a crash between the record and
its event. Before, the event was written after the record, so the record was kept and its event lost; now the write
fails whole: the record is not there either, and the caller sees the error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from managed_agents.adapters.aws.dynamodb_event_store import create_events_table, webhook_entry
from managed_agents.adapters.aws.dynamodb_resource_store import DynamoDbResourceStore, create_resources_table
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteOutbox, SqliteResourceStore
from managed_agents.domain.clock import SystemClock
from managed_agents.domain.errors import NotFound
from managed_agents.ports import ListQuery, OutboxEntry, ResourceStore
from managed_agents.services.agents import AgentService
from managed_agents.services.common import Services
from managed_agents.services.environments import EnvironmentService
from managed_agents.services.webhooks import WebhookService
from managed_agents.wire.agents import AgentCreateParams, AgentUpdateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from tests.contract.conftest import fake_aws_env

WS = "wrkspc_atomic"


@dataclass
class Stores:
    resources: ResourceStore
    outbox: Callable[[], list[OutboxEntry]]  # the recorded events, oldest first
    crash: Callable[[], None]  # make every later outbox write fail


@pytest.fixture(params=["sqlite", "dynamodb"])
def stores(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    if request.param == "sqlite":
        db = SqliteDatabase(tmp_path / "data.db")

        def crash() -> None:
            with db.transaction() as conn:
                conn.execute("CREATE TRIGGER crash BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'crash'); END")

        yield Stores(SqliteResourceStore(db), SqliteOutbox(db).pending, crash)
        return
    fake_aws_env(monkeypatch)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        suffix = uuid.uuid4().hex[:12]
        create_resources_table(ddb, f"resources-{suffix}")
        create_events_table(ddb, f"events-{suffix}")
        store = DynamoDbResourceStore(
            table_name=f"resources-{suffix}", dynamodb_client=ddb, outbox_table=f"events-{suffix}"
        )

        def outbox() -> list[OutboxEntry]:
            items = ddb.scan(TableName=f"events-{suffix}")["Items"]
            entries = [e for e in (webhook_entry(item) for item in items) if e is not None]
            return sorted(entries, key=lambda e: e.event_id)  # (event ids are ULIDs: time order)

        yield Stores(store, outbox, lambda: ddb.delete_table(TableName=f"events-{suffix}") and None)


def services(stores: Stores) -> tuple[AgentService, EnvironmentService]:
    svc = Services(stores.resources, SystemClock())
    webhooks = WebhookService(svc)
    webhooks.check_endpoints = False  # (no endpoint here: every event is recorded)
    svc.webhook_entries = webhooks.entries
    return AgentService(svc), EnvironmentService(svc)


def test_each_write_records_its_event(stores: Stores) -> None:
    agents, environments = services(stores)
    # When an agent is created, updated, archived twice, and an environment created and deleted
    agent = agents.create(WS, AgentCreateParams(name="a", model="claude-sonnet-4-6"))
    agents.update(WS, str(agent["id"]), AgentUpdateParams(version=1, name="b"))
    agents.archive(WS, str(agent["id"]))
    agents.archive(WS, str(agent["id"]))
    env = environments.create(WS, EnvironmentCreateParams(name="e"))
    environments.delete(WS, str(env["id"]))
    # Then each write recorded its event once, naming the resource and its workspace
    recorded = [(e.type, e.session_id, e.workspace_id) for e in stores.outbox()]
    assert recorded == [
        ("agent.created", agent["id"], WS),
        ("agent.updated", agent["id"], WS),
        ("agent.archived", agent["id"], WS),
        ("environment.created", env["id"], WS),
        ("environment.deleted", env["id"], WS),
    ]


def test_a_write_whose_event_cannot_be_recorded_is_not_made(stores: Stores) -> None:
    agents, environments = services(stores)
    kept = agents.create(WS, AgentCreateParams(name="kept", model="claude-sonnet-4-6"))
    env = environments.create(WS, EnvironmentCreateParams(name="e"))
    assert len(stores.outbox()) == 2
    # Given the outbox write fails from now on (a crash between the record and its event)
    stores.crash()
    # When an agent is created, another archived, an environment deleted
    with pytest.raises(Exception):  # noqa: B017 -- the store's own error (sqlite3's abort, DynamoDB's missing table)
        agents.create(WS, AgentCreateParams(name="lost", model="claude-sonnet-4-6"))
    with pytest.raises(Exception):  # noqa: B017
        agents.archive(WS, str(kept["id"]))
    with pytest.raises(Exception):  # noqa: B017
        environments.delete(WS, str(env["id"]))
    # Then none of the writes was made: no record without its event
    names = [a["name"] for a in agents.list_agents(WS, ListQuery(include_archived=True))[0]]
    assert names == ["kept"]
    assert agents.get(WS, str(kept["id"]))["archived_at"] is None
    try:
        environments.get(WS, str(env["id"]))
    except NotFound:  # pragma: no cover - the failure this test exists for
        pytest.fail("the environment was deleted without its environment.deleted event")
