"""What only the embedded encrypted-file secret store promises: encryption at rest, the master key's handling."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from managed_agents.adapters.local.secret_file_store import (
    KEY_FILE,
    SECRET_KEY_ENV,
    SECRETS_DIR,
    EncryptedFileSecretStore,
    load_or_create_key,
)
from managed_agents.ports import SecretStoreError

CANARY = "canary-secret-5f1d9a77"


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_generated_key_file_is_0600_and_reused(tmp_path: Path) -> None:
    # When the store is opened twice on a fresh data dir without the env var
    store = EncryptedFileSecretStore.in_data_dir(tmp_path, environ={})
    store.put("s/1", {"token": CANARY})
    again = EncryptedFileSecretStore.in_data_dir(tmp_path, environ={})
    # Then one key file exists, mode 0600, and the second store reads what the first wrote
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text())) == 32
    assert again.get("s/1") == {"token": CANARY}
    assert stat.S_IMODE((tmp_path / SECRETS_DIR).stat().st_mode) == 0o700


def test_nothing_on_disk_holds_the_plaintext(tmp_path: Path) -> None:
    store = EncryptedFileSecretStore.in_data_dir(tmp_path, environ={})
    store.put("vaults/vlt_x/vcrd_y", {"token": CANARY})
    blob = _all_bytes(tmp_path / SECRETS_DIR)
    assert CANARY.encode() not in blob
    assert b"vcrd_y" not in blob  # file names are hashes of the secret names, too
    assert all(not p.name.startswith(".tmp-") for p in (tmp_path / SECRETS_DIR).iterdir())


def test_key_from_environment_is_used_and_no_key_file_is_written(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    store = EncryptedFileSecretStore.in_data_dir(tmp_path, environ={SECRET_KEY_ENV: key})
    store.put("s/1", {"token": CANARY})
    assert not (tmp_path / KEY_FILE).exists()
    # Another key cannot read it, and says why without showing any value
    other = EncryptedFileSecretStore.in_data_dir(
        tmp_path, environ={SECRET_KEY_ENV: base64.b64encode(os.urandom(32)).decode()}
    )
    with pytest.raises(SecretStoreError, match="cannot decrypt") as info:
        other.get("s/1")
    assert CANARY not in str(info.value)


@pytest.mark.parametrize(("raw", "message"), [("not base64!!", "not valid base64"), ("YWJj", "16, 24 or 32 bytes")])
def test_a_malformed_environment_key_is_refused_clearly(tmp_path: Path, raw: str, message: str) -> None:
    with pytest.raises(SecretStoreError, match=message) as info:
        load_or_create_key(tmp_path, {SECRET_KEY_ENV: raw})
    assert SECRET_KEY_ENV in str(info.value)


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_key(tmp_path, {})
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(SecretStoreError, match="chmod 600"):
        load_or_create_key(tmp_path, {})


def test_a_file_moved_under_another_name_does_not_decrypt(tmp_path: Path) -> None:
    # Given two secrets, when one's file is copied over the other's (the name is the associated data)
    store = EncryptedFileSecretStore.in_data_dir(tmp_path, environ={})
    store.put("a/1", {"token": "one"})
    store.put("a/2", {"token": "two"})
    d = tmp_path / SECRETS_DIR
    path1, path2 = store._path("a/1"), store._path("a/2")
    assert path1.parent == d
    path2.write_bytes(path1.read_bytes())
    # Then reading it fails loudly instead of returning the other secret
    with pytest.raises(SecretStoreError, match="cannot decrypt"):
        store.get("a/2")


def test_a_truncated_file_is_reported(tmp_path: Path) -> None:
    store = EncryptedFileSecretStore.in_data_dir(tmp_path, environ={})
    store.put("t/1", {"token": "x"})
    store._path("t/1").write_bytes(b"\x01abc")
    with pytest.raises(SecretStoreError, match="not in a known format"):
        store.get("t/1")
