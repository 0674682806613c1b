"""VaultService: every secret write goes through `CredentialSecrets`; the service itself only deletes secrets.

On AWS `CredentialSecrets` is the MCP proxy Lambda (the API may not use the vault key) and `secrets` a store the API
may only delete from; embedded, both are the local encrypted store. Resources are a real SQLite store in tmp_path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from managed_agents.adapters.local.secret_file_store import EncryptedFileSecretStore
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteResourceStore
from managed_agents.domain.clock import SystemClock
from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.ports import ListQuery, Record, SecretPatch, SecretStoreError
from managed_agents.services.common import Services
from managed_agents.services.vaults import CREDENTIAL, StoreCredentialSecrets, VaultService
from managed_agents.wire.vaults import CredentialCreateParams, CredentialUpdateParams, VaultCreateParams

TOKEN = "bearer-canary-3f9a27"
WS = "wrkspc_vault_writes"


@dataclass
class DeleteOnlySecrets:
    """The API's store on AWS as the vault service may use it: deletes only (a write or read would fail the test)."""

    deleted: list[str] = field(default_factory=list)
    fail_deletes: bool = False

    def delete(self, name: str) -> bool:
        self.deleted.append(name)
        if self.fail_deletes:
            raise SecretStoreError(f"secret {name!r}: Secrets Manager delete failed (Throttling: slow down)")
        return False

    def put(self, name: str, value: Mapping[str, str]) -> None:
        raise AssertionError("the vault service wrote a secret itself")

    def get(self, name: str) -> dict[str, str] | None:
        raise AssertionError("the vault service read a secret")


@dataclass
class ScriptedCredentialSecrets:
    """Stands in for the MCP proxy Lambda: stores puts, or raises what the test scripts."""

    stored: dict[str, dict[str, str]] = field(default_factory=dict)
    raise_: Exception | None = None
    calls: list[str] = field(default_factory=list)

    def put_secret(self, name: str, value: Mapping[str, str]) -> None:
        self.calls.append(f"put {name}")
        if self.raise_ is not None:
            raise self.raise_
        self.stored[name] = dict(value)

    def merge_update(self, name: str, patch: SecretPatch) -> bool:
        self.calls.append(f"merge {name}")
        if self.raise_ is not None:
            raise self.raise_
        if name not in self.stored:
            return False
        self.stored[name] = patch.apply(self.stored[name])
        return True


@dataclass
class World:
    vaults: VaultService
    resources: SqliteResourceStore
    secrets: DeleteOnlySecrets
    writer: ScriptedCredentialSecrets
    vault_id: str

    def credentials(self) -> list[Record]:
        q = ListQuery(limit=100, include_archived=True)
        return self.resources.list_records(CREDENTIAL.name, WS, q)[0]


BEARER = CredentialCreateParams.model_validate(
    {"auth": {"type": "static_bearer", "token": TOKEN, "mcp_server_url": "https://mcp.example.com/mcp"}}
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    resources = SqliteResourceStore(SqliteDatabase(tmp_path / f"resources-{uuid.uuid4().hex[:8]}.db"))
    secrets, writer = DeleteOnlySecrets(), ScriptedCredentialSecrets()
    vaults = VaultService(Services(resources, SystemClock()), secrets, credential_secrets=writer)
    vault_id = str(vaults.create(WS, VaultCreateParams(display_name="v"))["id"])
    return World(vaults, resources, secrets, writer, vault_id)


def test_a_new_credential_s_secret_is_written_whole_through_credential_secrets(world: World) -> None:
    # When a credential is created
    cred = world.vaults.create_credential(WS, world.vault_id, BEARER)
    # Then its whole secret was put once through CredentialSecrets, under the name its record points to
    name = f"vaults/{world.vault_id}/{cred['id']}"
    assert world.writer.calls == [f"put {name}"]
    assert world.writer.stored == {name: {"type": "static_bearer", "token": TOKEN}}
    (rec,) = world.credentials()
    assert rec.doc["_secret"] == name and TOKEN not in str(rec.doc)
    # And the service deleted nothing (and neither wrote nor read its own store: DeleteOnlySecrets would have failed)
    assert world.secrets.deleted == []


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (
            SecretStoreError(
                "secret 'vaults/x/y': Secrets Manager rejected the write (AccessDeniedException: not authorized to"
                " perform kms:GenerateDataKey)"
            ),
            "its secret could not be stored: secret 'vaults/x/y': Secrets Manager rejected the write"
            " (AccessDeniedException: not authorized to perform kms:GenerateDataKey)",
        ),
        (
            ServiceUnavailable("the MCP proxy Lambda did not answer (ReadTimeoutError) during storing a credential's"),
            "the MCP proxy Lambda did not answer (ReadTimeoutError)",
        ),
    ],
)
def test_a_failed_secret_write_is_a_503_and_leaves_neither_record_nor_secret(
    world: World, failure: Exception, message: str
) -> None:
    # Given a writer (the MCP proxy) that fails: the store refused, or the Lambda did not answer
    world.writer.raise_ = failure
    # When a credential is created
    with pytest.raises(ServiceUnavailable) as caught:
        world.vaults.create_credential(WS, world.vault_id, BEARER)
    # Then the API error is a 503 whose message says what failed
    assert caught.value.status == 503 and message in caught.value.message
    assert TOKEN not in caught.value.message
    # And no credential record exists, and whatever the write may have left under the new name was purged
    assert world.credentials() == []
    (put,) = world.writer.calls
    assert world.secrets.deleted == [put.removeprefix("put ")]


def test_a_failed_record_insert_purges_the_secret_just_written(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a resource store that refuses the credential record
    def refuse(rec: Record) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(world.resources, "insert", refuse)
    # When a credential is created
    with pytest.raises(RuntimeError, match="disk full"):
        world.vaults.create_credential(WS, world.vault_id, BEARER)
    # Then the secret written for it was deleted again
    (name,) = world.writer.stored
    assert world.secrets.deleted == [name]


def test_a_failed_purge_does_not_hide_the_original_failure(world: World) -> None:
    world.writer.raise_ = ServiceUnavailable("the MCP proxy Lambda did not answer")
    world.secrets.fail_deletes = True
    with pytest.raises(ServiceUnavailable, match="did not answer"):
        world.vaults.create_credential(WS, world.vault_id, BEARER)
    assert len(world.secrets.deleted) == 1


def test_a_failed_merge_is_a_503_naming_the_credential_and_the_store_error(world: World) -> None:
    # Given a stored credential, then a writer whose store fails
    cred_id = str(world.vaults.create_credential(WS, world.vault_id, BEARER)["id"])
    world.writer.raise_ = SecretStoreError("secret 'vaults/x/y': Secrets Manager read failed (Throttling: slow)")
    # When its token is updated
    update = CredentialUpdateParams.model_validate({"auth": {"type": "static_bearer", "token": "new-token"}})
    with pytest.raises(ServiceUnavailable) as caught:
        world.vaults.update_credential(WS, world.vault_id, cred_id, update)
    # Then the 503 names the credential and the cause, and the record is unchanged
    assert caught.value.message == (
        f"credential {cred_id!r}: its secret could not be updated: secret 'vaults/x/y': Secrets Manager read failed"
        " (Throttling: slow)"
    )
    (rec,) = world.credentials()
    assert rec.rev == 1


def test_embedded_default_writes_through_the_local_store(tmp_path: Path) -> None:
    # Given the embedded wiring's shape: a whole SecretStore and no CredentialSecrets
    resources = SqliteResourceStore(SqliteDatabase(tmp_path / "resources.db"))
    store = EncryptedFileSecretStore(tmp_path / "secrets", os.urandom(32))
    vaults = VaultService(Services(resources, SystemClock()), store, StoreCredentialSecrets(store))
    vault_id = str(vaults.create(WS, VaultCreateParams(display_name="v"))["id"])
    # When a credential is created and its token updated
    cred_id = str(vaults.create_credential(WS, vault_id, BEARER)["id"])
    update = CredentialUpdateParams.model_validate({"auth": {"type": "static_bearer", "token": "new-token"}})
    vaults.update_credential(WS, vault_id, cred_id, update)
    # Then the local store holds the merged secret
    assert store.get(f"vaults/{vault_id}/{cred_id}") == {"type": "static_bearer", "token": "new-token"}
