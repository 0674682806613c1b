"""Environment request models (api-reference §2.2)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from managed_agents.wire.common import Metadata, MetadataPatch, Params


class UnrestrictedNetwork(Params):
    type: Literal["unrestricted"]


class LimitedNetwork(Params):
    type: Literal["limited"]
    allowed_hosts: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = None
    allow_mcp_servers: bool | None = None
    allow_package_managers: bool | None = None


class PackagesParams(Params):
    type: Literal["packages"] | None = None
    apt: list[str] | None = None
    cargo: list[str] | None = None
    gem: list[str] | None = None
    go: list[str] | None = None
    npm: list[str] | None = None
    pip: list[str] | None = None


class CloudConfigParams(Params):
    type: Literal["cloud"]
    networking: Annotated[UnrestrictedNetwork | LimitedNetwork, Field(discriminator="type")] | None = None
    packages: PackagesParams | None = None


class SelfHostedConfigParams(Params):
    type: Literal["self_hosted"]


ConfigParams = Annotated[CloudConfigParams | SelfHostedConfigParams, Field(discriminator="type")]
Scope = Literal["organization", "account"]


class EnvironmentCreateParams(Params):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    config: ConfigParams | None = None
    description: Annotated[str, Field(max_length=2048)] | None = None
    metadata: Metadata = Field(default_factory=dict)
    scope: Scope | None = None


class EnvironmentUpdateParams(Params):
    name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    config: ConfigParams | None = None
    description: Annotated[str, Field(max_length=2048)] | None = None
    metadata: MetadataPatch | None = None
    scope: Scope | None = None
