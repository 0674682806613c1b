"""Agent request models (api-reference §2.1, §4). Responses are built by services/agents.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from managed_agents.wire.common import Metadata, MetadataPatch, Params, PermissionPolicy

BuiltinToolName = Literal["bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]


class EffortObject(Params):
    type: Effort


class ModelConfigParams(Params):
    id: Annotated[str, Field(min_length=1, max_length=256)]
    effort: Effort | EffortObject | None = None
    speed: Literal["standard", "fast"] | None = None
    inference_geo: str | None = None


class ToolsetDefaultConfigParams(Params):
    enabled: bool | None = None
    permission_policy: PermissionPolicy | None = None


class ToolReference(Params):
    type: Literal["tool_reference"]
    name: Annotated[str, Field(min_length=1, max_length=128)]


class UrlSourceFilter(Params):
    type: Literal["all", "none", "only", "except"]
    tools: Annotated[list[ToolReference], Field(min_length=1, max_length=128)] | None = None


class WebFetchUrlSources(Params):
    user_input: Literal["all", "none"] | UrlSourceFilter | None = None
    client_tool_results: Literal["all", "none"] | UrlSourceFilter | None = None
    server_tool_results: Literal["all", "none"] | UrlSourceFilter | None = None


class UserLocation(Params):
    type: Literal["approximate"]
    city: str | None = None
    region: str | None = None
    country: Annotated[str, Field(min_length=2, max_length=2)] | None = None
    timezone: str | None = None


class AgentToolConfigParams(Params):
    name: BuiltinToolName
    type: BuiltinToolName | None = None
    enabled: bool | None = None
    permission_policy: PermissionPolicy | None = None
    allowed_domains: Annotated[list[str], Field(min_length=1, max_length=64)] | None = None
    blocked_domains: Annotated[list[str], Field(min_length=1, max_length=64)] | None = None
    max_content_tokens: Annotated[int, Field(ge=1)] | None = None
    url_sources: WebFetchUrlSources | None = None
    user_location: UserLocation | None = None

    @model_validator(mode="after")
    def _check(self) -> AgentToolConfigParams:
        if self.type is not None and self.type != self.name:
            raise ValueError(f"type {self.type!r} does not match name {self.name!r}")
        web_fetch_only = ("max_content_tokens", "url_sources")
        if self.name != "web_fetch":
            for f in web_fetch_only:
                if getattr(self, f) is not None:
                    raise ValueError(f"{f} is only valid for the web_fetch tool")
        if self.name != "web_search" and self.user_location is not None:
            raise ValueError("user_location is only valid for the web_search tool")
        if self.name not in ("web_fetch", "web_search"):
            for f in ("allowed_domains", "blocked_domains"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f} is only valid for the web_fetch and web_search tools")
        return self


class AgentToolsetParams(Params):
    type: Literal["agent_toolset_20260401"]
    default_config: ToolsetDefaultConfigParams | None = None
    configs: list[AgentToolConfigParams] = Field(default_factory=list)


class MCPToolConfigParams(Params):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    enabled: bool | None = None
    permission_policy: PermissionPolicy | None = None


class MCPToolsetParams(Params):
    type: Literal["mcp_toolset"]
    mcp_server_name: Annotated[str, Field(min_length=1, max_length=255)]
    default_config: ToolsetDefaultConfigParams | None = None
    configs: list[MCPToolConfigParams] = Field(default_factory=list)


class CustomToolInputSchema(Params):
    model_config = Params.model_config | {"extra": "allow"}
    type: Literal["object"]
    properties: dict[str, object] | None = None
    required: list[str] | None = None


class CustomToolParams(Params):
    type: Literal["custom"]
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str
    input_schema: CustomToolInputSchema


ToolParams = Annotated[AgentToolsetParams | MCPToolsetParams | CustomToolParams, Field(discriminator="type")]


class URLMCPServerParams(Params):
    type: Literal["url"]
    name: Annotated[str, Field(min_length=1, max_length=255)]
    url: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://")]


class SkillParams(Params):
    type: Literal["anthropic", "custom"]
    skill_id: Annotated[str, Field(min_length=1, max_length=255)]
    version: str | None = None


class ServiceAccountIdentity(Params):
    type: Literal["service_account"]


class AwsRoleIdentity(Params):
    type: Literal["aws_role"]
    role_arn: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^arn:")]


ExecutionIdentity = Annotated[ServiceAccountIdentity | AwsRoleIdentity, Field(discriminator="type")]


class AgentRef(Params):
    type: Literal["agent"]
    id: Annotated[str, Field(min_length=1, max_length=256)]
    version: Annotated[int, Field(ge=1)] | None = None


class SelfRef(Params):
    type: Literal["self"]


class AdvisorEntry(Params):
    type: Literal["advisor"]
    model: Annotated[str, Field(min_length=1, max_length=256)]


PredefinedAgent = str | Annotated[AgentRef | SelfRef, Field(discriminator="type")]
RosterEntry = str | Annotated[AgentRef | SelfRef | AdvisorEntry, Field(discriminator="type")]


class CoordinatorParams(Params):
    """Legacy roster (api-reference §4.5): 1-20 distinct agents, at most one `self`, one advisor at most."""

    type: Literal["coordinator"]
    agents: Annotated[list[RosterEntry], Field(min_length=1, max_length=20)]


class Enabled(Params):
    type: Literal["enabled"]


class Disabled(Params):
    type: Literal["disabled"]


class AdvisorEnabled(Params):
    type: Literal["enabled"]
    model: Annotated[str, Field(min_length=1, max_length=256)]


class DelegationEnabled(Params):
    """`subagents` or `workflows` enabled: inline agents (default enabled) and predefined agents (at most 20)."""

    type: Literal["enabled"]
    inline_agents: Annotated[Enabled | Disabled, Field(discriminator="type")] | None = None
    predefined_agents: Annotated[list[PredefinedAgent], Field(max_length=20)] | None = None


Delegation = Annotated[DelegationEnabled | Disabled, Field(discriminator="type")]


class Multiagent20261001Params(Params):
    """Each level is enabled or disabled on its own; on update it merges into a stored one level by level."""

    type: Literal["multiagent_20261001"]
    advisor: Annotated[AdvisorEnabled | Disabled, Field(discriminator="type")] | None = None
    subagents: Delegation | None = None
    workflows: Delegation | None = None


MultiagentParams = Annotated[CoordinatorParams | Multiagent20261001Params, Field(discriminator="type")]


Name = Annotated[str, Field(min_length=1, max_length=256)]


class AgentCreateParams(Params):
    name: Name
    model: Annotated[str, Field(min_length=1, max_length=256)] | ModelConfigParams
    description: Annotated[str, Field(max_length=2048)] | None = None
    system: Annotated[str, Field(max_length=100_000)] | None = None
    tools: Annotated[list[ToolParams], Field(max_length=256)] = Field(default_factory=list)
    mcp_servers: Annotated[list[URLMCPServerParams], Field(max_length=20)] = Field(default_factory=list)
    skills: list[SkillParams] = Field(default_factory=list)
    multiagent: MultiagentParams | None = None
    metadata: Metadata = Field(default_factory=dict)
    execution_identity: ExecutionIdentity | None = None


class AgentUpdateParams(Params):
    name: Name | None = None
    model: Annotated[str, Field(min_length=1, max_length=256)] | ModelConfigParams | None = None
    description: Annotated[str, Field(max_length=2048)] | None = None
    system: Annotated[str, Field(max_length=100_000)] | None = None
    tools: Annotated[list[ToolParams], Field(max_length=256)] | None = None
    mcp_servers: Annotated[list[URLMCPServerParams], Field(max_length=20)] | None = None
    skills: list[SkillParams] | None = None
    multiagent: MultiagentParams | None = None
    metadata: MetadataPatch | None = None
    execution_identity: ExecutionIdentity | None = None
    version: Annotated[int, Field(ge=1)] | None = None
