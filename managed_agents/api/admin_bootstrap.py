"""The API Lambda's admin key: the deployment's Secrets Manager secret becomes an API key on the first request.

The CDK stack generates the secret (`{prefix}/admin-api-key`, 48 random letters and digits) and gives the API Lambda
`MANAGED_AGENTS_ADMIN_KEY_SECRET_ARN` and read access to it. Nothing is read while the app is built (Lambda init,
which SnapStart snapshots: the snapshot must hold no secret and make no AWS call); the first HTTP request runs the
bootstrap, before the request itself is served, so that request can already use the key:

* the secret is read through Powertools Parameters (cached `SECRET_MAX_AGE_SECONDS`, as the model key is);
* `KeyService.ensure_bootstrap_key` registers it: deterministic workspace and key ids and conditional inserts, so
  any number of containers starting at once leave one workspace and one key.

Afterwards each container re-reads the secret every `SECRET_MAX_AGE_SECONDS` while it serves requests (through the
Parameters cache of the same age) and registers a new value: `put-secret-value` rotates the admin key within two
cache periods (10 minutes), revoking the previous one (keys.py). A failed
bootstrap (Secrets Manager or DynamoDB unavailable) is logged and retried after `RETRY_SECONDS`; the request goes on,
so the other keys keep working.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from managed_agents.aws_runtime import SECRET_MAX_AGE_SECONDS

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from starlette.types import ASGIApp, Receive, Scope, Send

    from managed_agents.services.keys import KeyService

log = logging.getLogger("managed_agents.admin_bootstrap")

RETRY_SECONDS = 30.0


def read_admin_key(secret_arn: str, *, secrets_client: SecretsManagerClient | None = None) -> str:
    """The admin key secret's value (whitespace around it is dropped: a value put by hand may end in a newline)."""
    from aws_lambda_powertools.utilities import parameters

    kwargs: dict[str, Any] = {"max_age": SECRET_MAX_AGE_SECONDS}
    if secrets_client is not None:
        kwargs["boto3_client"] = secrets_client
    value = str(parameters.get_secret(secret_arn, **kwargs)).strip()
    if not value:
        raise ValueError(f"secret {secret_arn} is empty")
    return value


class AdminKeyBootstrap:
    """Registers the current admin key secret when it has not been registered by this container yet."""

    def __init__(
        self,
        keys: KeyService,
        read_secret: Callable[[], str],
        *,
        recheck_seconds: float = SECRET_MAX_AGE_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.read_secret = read_secret
        self.recheck_seconds = recheck_seconds
        self.retry_seconds = retry_seconds
        self.monotonic = monotonic
        self.registered: str | None = None  # sha256 of the secret value this container registered last
        self._next_check = 0.0
        self._lock = anyio.Lock()

    def due(self) -> bool:
        return self.monotonic() >= self._next_check

    def run(self) -> bool:
        """Read the secret and register it if it changed; True when this call created the key record."""
        secret = self.read_secret()
        digest = hashlib.sha256(secret.encode()).hexdigest()
        created = False
        if digest != self.registered:
            _, key_id, created = self.keys.ensure_bootstrap_key(secret)
            self.registered = digest
            log.info("admin API key registered", extra={"key_id": key_id, "created": created})
        return created

    async def ensure(self) -> None:
        """Run the bootstrap once per interval whatever the number of concurrent requests; never raises."""
        if not self.due():
            return
        async with self._lock:
            if not self.due():
                return
            try:
                await anyio.to_thread.run_sync(self.run)
            except Exception:
                log.exception("admin API key bootstrap failed; retrying on a later request")
                self._next_check = self.monotonic() + self.retry_seconds
                return
            self._next_check = self.monotonic() + self.recheck_seconds


class AdminKeyBootstrapMiddleware:
    """ASGI middleware: runs `AdminKeyBootstrap.ensure` before HTTP requests (lifespan events pass untouched)."""

    def __init__(self, app: ASGIApp, bootstrap: AdminKeyBootstrap) -> None:
        self.app = app
        self.bootstrap = bootstrap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.bootstrap.ensure()
        await self.app(scope, receive, send)


def install_admin_key_bootstrap(
    app: FastAPI, keys: KeyService, secret_arn: str | None, *, secrets_client: SecretsManagerClient | None = None
) -> AdminKeyBootstrap | None:
    """Add the bootstrap to the app when an admin key secret is configured; returns it (tests inspect it)."""
    if not secret_arn:
        return None
    bootstrap = AdminKeyBootstrap(keys, lambda: read_admin_key(secret_arn, secrets_client=secrets_client))
    app.add_middleware(AdminKeyBootstrapMiddleware, bootstrap=bootstrap)
    app.state.admin_key_bootstrap = bootstrap
    return bootstrap
