"""Vault and credential request models (api-reference §2.4; SDK `types/beta/vault_*`, `types/beta/vaults/*`).

Secret fields (`token`, `access_token`, `refresh_token`, `client_secret`, `secret_value`) are accepted here and
go only to the SecretStore; validation messages never echo input values (api/errors.py renders `msg` only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from managed_agents.wire.common import Metadata, MetadataPatch, Params

DisplayName = Annotated[str, Field(min_length=1, max_length=255)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
SecretValue = Annotated[str, Field(min_length=1, max_length=16384)]
ShortText = Annotated[str, Field(max_length=2048)]


class VaultCreateParams(Params):
    display_name: DisplayName
    metadata: Metadata = Field(default_factory=dict)


class VaultUpdateParams(Params):
    display_name: DisplayName | None = None
    metadata: MetadataPatch | None = None


# --- token endpoint authentication (mcp_oauth refresh) ---


class TokenEndpointAuthNone(Params):
    type: Literal["none"]


class TokenEndpointAuthBasic(Params):
    type: Literal["client_secret_basic"]
    client_secret: SecretValue


class TokenEndpointAuthPost(Params):
    type: Literal["client_secret_post"]
    client_secret: SecretValue


TokenEndpointAuth = Annotated[
    TokenEndpointAuthNone | TokenEndpointAuthBasic | TokenEndpointAuthPost, Field(discriminator="type")
]


class TokenEndpointAuthBasicUpdate(Params):
    type: Literal["client_secret_basic"]
    client_secret: SecretValue | None = None


class TokenEndpointAuthPostUpdate(Params):
    type: Literal["client_secret_post"]
    client_secret: SecretValue | None = None


TokenEndpointAuthUpdate = Annotated[
    TokenEndpointAuthBasicUpdate | TokenEndpointAuthPostUpdate, Field(discriminator="type")
]


class McpOAuthRefreshParams(Params):
    client_id: Annotated[str, Field(min_length=1, max_length=1024)]
    refresh_token: SecretValue
    token_endpoint: Url
    token_endpoint_auth: TokenEndpointAuth
    resource: ShortText | None = None
    scope: ShortText | None = None


class McpOAuthRefreshUpdateParams(Params):
    refresh_token: SecretValue | None = None
    scope: ShortText | None = None
    token_endpoint_auth: TokenEndpointAuthUpdate | None = None


# --- networking and injection (environment_variable) ---


class UnrestrictedCredentialNetworking(Params):
    type: Literal["unrestricted"]


class LimitedCredentialNetworking(Params):
    type: Literal["limited"]
    allowed_hosts: Annotated[list[Annotated[str, Field(min_length=1, max_length=253)]], Field(max_length=16)]


CredentialNetworking = Annotated[
    UnrestrictedCredentialNetworking | LimitedCredentialNetworking, Field(discriminator="type")
]


class InjectionLocationParams(Params):
    header: bool | None = None
    body: bool | None = None


# --- auth create / update unions ---


class StaticBearerCreateParams(Params):
    type: Literal["static_bearer"]
    token: SecretValue
    mcp_server_url: Url


class McpOAuthCreateParams(Params):
    type: Literal["mcp_oauth"]
    access_token: SecretValue
    mcp_server_url: Url
    expires_at: datetime | None = None
    refresh: McpOAuthRefreshParams | None = None


class EnvironmentVariableCreateParams(Params):
    type: Literal["environment_variable"]
    secret_name: Annotated[str, Field(min_length=1, max_length=256)]
    secret_value: SecretValue
    networking: CredentialNetworking
    injection_location: InjectionLocationParams | None = None


AuthCreateParams = Annotated[
    StaticBearerCreateParams | McpOAuthCreateParams | EnvironmentVariableCreateParams, Field(discriminator="type")
]


class StaticBearerUpdateParams(Params):
    type: Literal["static_bearer"]
    token: SecretValue | None = None


class McpOAuthUpdateParams(Params):
    type: Literal["mcp_oauth"]
    access_token: SecretValue | None = None
    expires_at: datetime | None = None
    refresh: McpOAuthRefreshUpdateParams | None = None


class EnvironmentVariableUpdateParams(Params):
    type: Literal["environment_variable"]
    secret_value: SecretValue | None = None
    networking: CredentialNetworking | None = None
    injection_location: InjectionLocationParams | None = None


AuthUpdateParams = Annotated[
    StaticBearerUpdateParams | McpOAuthUpdateParams | EnvironmentVariableUpdateParams, Field(discriminator="type")
]


class CredentialCreateParams(Params):
    auth: AuthCreateParams
    display_name: Annotated[str, Field(max_length=255)] | None = None
    metadata: Metadata = Field(default_factory=dict)


class CredentialUpdateParams(Params):
    auth: AuthUpdateParams | None = None
    display_name: DisplayName | None = None
    metadata: MetadataPatch | None = None
