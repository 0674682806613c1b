"""The API Lambda's ASGI app: `create_app` on the AWS runtime (DynamoDB, S3, Step Functions).

`functions/api/run.sh` serves `managed_agents.api.lambda_app:app` with uvicorn behind Lambda Web Adapter. The app is
built on first access of `app` (uvicorn's import at init, before a SnapStart snapshot); building it reads the
environment (`AwsSettings`) and creates no AWS connection.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from managed_agents.api.app import create_app
from managed_agents.aws_runtime import AwsClients, build_aws_runtime
from managed_agents.settings import AwsSettings

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_lambda_app(settings: AwsSettings | None = None, *, clients: AwsClients | None = None) -> FastAPI:
    return create_app(build_aws_runtime(settings, clients=clients))


@functools.cache
def _app() -> FastAPI:
    return create_lambda_app()


def __getattr__(name: str) -> object:
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
