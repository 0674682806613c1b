"""Work queue and environment key request models (api-reference §2.2.1)."""

from __future__ import annotations

from pydantic import Field

from managed_agents.wire.common import MetadataPatch, Params


class WorkStopParams(Params):
    force: bool | None = None


class WorkUpdateParams(Params):
    metadata: MetadataPatch


class EnvironmentKeyCreateParams(Params):
    name: str = Field("", max_length=256)
