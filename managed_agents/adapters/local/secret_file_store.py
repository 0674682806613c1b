"""Embedded secret store: one AES-256-GCM encrypted file per secret (architecture: "Credentials").

The master key comes from MANAGED_AGENTS_SECRET_KEY (base64 of 16, 24 or 32 bytes) or, when that is unset, from
DATA_DIR/secret.key, generated on first use with mode 0600. Each secret lives in DATA_DIR/secrets/<sha256(name)>
as `version byte | 12-byte nonce | ciphertext+tag`, with the secret's name as associated data, so a file copied
under another name does not decrypt. Writes go to a temporary file that is fsynced and renamed over the old one.
Losing the key loses the secrets; keep it out of backups of the data dir, or set it from the environment.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets as pysecrets
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from managed_agents.adapters.secret_names import check_secret_name
from managed_agents.ports import SecretStoreError

SECRET_KEY_ENV = "MANAGED_AGENTS_SECRET_KEY"
KEY_FILE = "secret.key"
SECRETS_DIR = "secrets"
_VERSION = b"\x01"
_NONCE_BYTES = 12


def _decode_key(raw: str, source: str) -> bytes:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretStoreError(f"{source}: not valid base64") from exc
    if len(key) not in (16, 24, 32):
        raise SecretStoreError(f"{source}: an AES key is 16, 24 or 32 bytes, this one is {len(key)}")
    return key


def load_or_create_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The master key: from the environment, else from DATA_DIR/secret.key (created 0600 when missing)."""
    env = os.environ if environ is None else environ
    if env.get(SECRET_KEY_ENV):
        return _decode_key(env[SECRET_KEY_ENV], SECRET_KEY_ENV)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretStoreError(
                f"{path}: the key file must not be readable by group or others (mode {mode:o}); run chmod 600"
            ) from None
        return _decode_key(path.read_text(), str(path))
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return _decode_key(path.read_text(), str(path))


class EncryptedFileSecretStore:
    """`SecretStore` on the local file system; safe for threads and processes sharing the directory."""

    def __init__(self, directory: Path, key: bytes) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self._dir, 0o700)
        self._aead = AESGCM(key)

    @classmethod
    def in_data_dir(cls, data_dir: str | Path, environ: Mapping[str, str] | None = None) -> EncryptedFileSecretStore:
        root = Path(data_dir)
        return cls(root / SECRETS_DIR, load_or_create_key(root, environ))

    def _path(self, name: str) -> Path:
        return self._dir / hashlib.sha256(check_secret_name(name).encode()).hexdigest()

    def put(self, name: str, value: Mapping[str, str]) -> None:
        path = self._path(name)
        plaintext = json.dumps(dict(value), separators=(",", ":"), sort_keys=True).encode()
        nonce = pysecrets.token_bytes(_NONCE_BYTES)
        blob = _VERSION + nonce + self._aead.encrypt(nonce, plaintext, name.encode())
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, name: str) -> dict[str, str] | None:
        path = self._path(name)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            raise SecretStoreError(f"secret {name!r}: the stored file is not in a known format")
        try:
            plaintext = self._aead.decrypt(blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :], name.encode())
        except InvalidTag as exc:
            raise SecretStoreError(
                f"secret {name!r}: cannot decrypt (a different master key, or the file was altered)"
            ) from exc
        value = json.loads(plaintext)
        return {str(k): str(v) for k, v in value.items()}

    def delete(self, name: str) -> bool:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            return False
        return True
