"""AWS secret store: one Secrets Manager secret per vault secret, named `<prefix><name>` (architecture: "Credentials").

The value is the JSON object as the SecretString. Deletes skip the recovery window: a deleted vault credential
must stop working at once, and credential ids are never reused, so no name is ever recreated after a delete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from managed_agents.adapters.aws import botocore_log_redaction
from managed_agents.adapters.secret_names import check_secret_name
from managed_agents.ports import SecretStoreError

DEFAULT_PREFIX = "managed-agents/"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class SecretsManagerSecretStore:
    """`SecretStore` on AWS Secrets Manager."""

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        client: Any | None = None,
        kms_key_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if prefix:
            check_secret_name(prefix.rstrip("/") or "x")
        botocore_log_redaction.install()  # secret values stay out of botocore's DEBUG lines
        self._prefix = prefix
        self._client = client or boto3.client("secretsmanager")
        self._kms_key_id = kms_key_id
        self._tags = [{"Key": k, "Value": v} for k, v in (tags or {}).items()]

    def _name(self, name: str) -> str:
        return self._prefix + check_secret_name(name)

    def put(self, name: str, value: Mapping[str, str]) -> None:
        full = self._name(name)
        body = json.dumps(dict(value), separators=(",", ":"), sort_keys=True)
        try:
            try:
                self._client.put_secret_value(SecretId=full, SecretString=body)
            except ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
                kwargs: dict[str, Any] = {"Name": full, "SecretString": body}
                if self._kms_key_id:
                    kwargs["KmsKeyId"] = self._kms_key_id
                if self._tags:
                    kwargs["Tags"] = self._tags
                try:
                    self._client.create_secret(**kwargs)
                except ClientError as create_exc:
                    if _code(create_exc) != "ResourceExistsException":
                        raise
                    # a concurrent writer created it first: last writer wins, as with put_secret_value
                    self._client.put_secret_value(SecretId=full, SecretString=body)
        except (ClientError, BotoCoreError) as exc:
            raise SecretStoreError(f"secret {name!r}: Secrets Manager rejected the write ({_describe(exc)})") from exc

    def get(self, name: str) -> dict[str, str] | None:
        full = self._name(name)
        try:
            resp = self._client.get_secret_value(SecretId=full)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            if _code(exc) == "InvalidRequestException":  # scheduled for deletion: gone as far as we are concerned
                return None
            raise SecretStoreError(f"secret {name!r}: Secrets Manager read failed ({_describe(exc)})") from exc
        except BotoCoreError as exc:
            raise SecretStoreError(f"secret {name!r}: Secrets Manager read failed ({_describe(exc)})") from exc
        raw = resp.get("SecretString")
        if raw is None:
            raise SecretStoreError(f"secret {name!r}: stored as binary, not as the expected JSON string")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise SecretStoreError(f"secret {name!r}: the stored value is not JSON") from exc
        if not isinstance(value, dict):
            raise SecretStoreError(f"secret {name!r}: the stored value is not a JSON object")
        return {str(k): str(v) for k, v in value.items()}

    def delete(self, name: str) -> bool:
        full = self._name(name)
        try:
            # delete_secret answers success for a secret already deleted (moto, and AWS within the purge delay)
            if self._client.describe_secret(SecretId=full).get("DeletedDate"):
                return False
            self._client.delete_secret(SecretId=full, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if _code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
                return False
            raise SecretStoreError(f"secret {name!r}: Secrets Manager delete failed ({_describe(exc)})") from exc
        except BotoCoreError as exc:
            raise SecretStoreError(f"secret {name!r}: Secrets Manager delete failed ({_describe(exc)})") from exc
        return True


def _describe(exc: Exception) -> str:
    """The error code and AWS's own message (which names resources, never secret values)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}"[:300]
    return type(exc).__name__
