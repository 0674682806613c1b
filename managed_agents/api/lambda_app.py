"""The API Lambda's ASGI app: `create_app` on the AWS runtime (DynamoDB, S3, Step Functions).

`functions/api/run.sh` serves `managed_agents.api.lambda_app:app` with uvicorn behind Lambda Web Adapter. The app is
built on first access of `app` (uvicorn's import at init, before a SnapStart snapshot); building it reads the
environment (`AwsSettings`) and creates no AWS connection; under SnapStart it also creates the DynamoDB client.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from managed_agents.api.admin_bootstrap import install_admin_key_bootstrap
from managed_agents.api.app import create_app
from managed_agents.aws_runtime import AwsClients, build_aws_runtime, prime_clients
from managed_agents.lambda_init import init_runs_ahead
from managed_agents.settings import AwsSettings

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_lambda_app(settings: AwsSettings | None = None, *, clients: AwsClients | None = None) -> FastAPI:
    settings = settings or AwsSettings()  # required fields come from the environment
    clients = clients or AwsClients()
    rt = build_aws_runtime(settings, clients=clients)
    app = create_app(rt)
    # settings.max_request_bytes, what one Lambda invocation can carry, caps every route's body (api/edge.py): a
    # readable 413 rather than API Gateway's 502
    # The admin key is read and registered on the first request, never at init (admin_bootstrap.py).
    install_admin_key_bootstrap(app, rt.keys, settings.admin_key_secret_arn, secrets_client=clients.secretsmanager)
    return app


@functools.cache
def _app() -> FastAPI:
    app = create_lambda_app()
    if init_runs_ahead():  # SnapStart: the first request then finds the DynamoDB client made (in the snapshot)
        prime_clients(app.state.runtime)
    return app


def __getattr__(name: str) -> object:
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
