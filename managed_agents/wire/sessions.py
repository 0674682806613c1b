"""Session and session-event request models (api-reference §2.3, §3.1)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from managed_agents.wire.agents import (
    ModelConfigParams,
    SkillParams,
    ToolParams,
    URLMCPServerParams,
)
from managed_agents.wire.common import Metadata, MetadataPatch, Params, ToolResultContent, UserContent
from managed_agents.wire.session_resources import ResourceParams

# A session's resources: the reference caps a deployment's at 500 ("Maximum 500", SDK deployment_create_params) and
# gives none for a session; every session a valid deployment stands for must be creatable, so sessions take as many.
MAX_SESSION_RESOURCES = 500


class AgentRefParams(Params):
    type: Literal["agent"]
    id: Annotated[str, Field(min_length=1)]
    version: Annotated[int, Field(ge=1)] | None = None


class AgentWithOverridesParams(Params):
    type: Literal["agent_with_overrides"]
    id: Annotated[str, Field(min_length=1)]
    version: Annotated[int, Field(ge=1)] | None = None
    model: Annotated[str, Field(min_length=1)] | ModelConfigParams | None = None
    system: Annotated[str, Field(max_length=100_000)] | None = None
    tools: Annotated[list[ToolParams], Field(max_length=256)] | None = None
    mcp_servers: Annotated[list[URLMCPServerParams], Field(max_length=20)] | None = None
    skills: list[SkillParams] | None = None


class UserMessageParams(Params):
    type: Literal["user.message"]
    content: Annotated[list[UserContent], Field(min_length=1)]


class UserInterruptParams(Params):
    type: Literal["user.interrupt"]
    session_thread_id: str | None = None


class UserToolConfirmationParams(Params):
    type: Literal["user.tool_confirmation"]
    tool_use_id: Annotated[str, Field(min_length=1)]
    result: Literal["allow", "deny"]
    deny_message: Annotated[str, Field(max_length=10_000)] | None = None


class UserCustomToolResultParams(Params):
    type: Literal["user.custom_tool_result"]
    custom_tool_use_id: Annotated[str, Field(min_length=1)]
    content: list[ToolResultContent] | None = None
    is_error: bool | None = None


class UserToolResultParams(Params):
    type: Literal["user.tool_result"]
    tool_use_id: Annotated[str, Field(min_length=1)]
    content: list[ToolResultContent] | None = None
    is_error: bool | None = None


class TextRubric(Params):
    type: Literal["text"]
    content: Annotated[str, Field(max_length=262_144)]


class FileRubric(Params):
    type: Literal["file"]
    file_id: str


class UserDefineOutcomeParams(Params):
    type: Literal["user.define_outcome"]
    description: str
    rubric: Annotated[TextRubric | FileRubric, Field(discriminator="type")]
    max_iterations: Annotated[int, Field(ge=1, le=20)] | None = None


class SystemTextBlock(Params):
    type: Literal["text"]
    text: str


class SystemMessageParams(Params):
    type: Literal["system.message"]
    content: Annotated[list[SystemTextBlock], Field(min_length=1)]


EventParams = Annotated[
    UserMessageParams
    | UserInterruptParams
    | UserToolConfirmationParams
    | UserCustomToolResultParams
    | UserToolResultParams
    | UserDefineOutcomeParams
    | SystemMessageParams,
    Field(discriminator="type"),
]
InitialEventParams = Annotated[UserMessageParams | UserDefineOutcomeParams, Field(discriminator="type")]


class EventSendParams(Params):
    events: Annotated[list[EventParams], Field(min_length=1, max_length=100)]


class MonetaryAmountParams(Params):
    """Minor units as an integer decimal string with no leading zeros ("2500" is $25.00); USD only."""

    amount: Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,17})$")]
    currency: Literal["USD"]


class BudgetLimitParams(Params):
    type: Literal["limit"]
    max_list_cost: MonetaryAmountParams


class SessionCreateParams(Params):
    agent: (
        Annotated[str, Field(min_length=1)]
        | Annotated[AgentRefParams | AgentWithOverridesParams, Field(discriminator="type")]
    )
    environment_id: Annotated[str, Field(min_length=1)]
    initial_events: Annotated[list[InitialEventParams], Field(max_length=50)] = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)
    title: Annotated[str, Field(max_length=1024)] | None = None
    vault_ids: Annotated[list[str], Field(max_length=50)] = Field(default_factory=list)
    resources: Annotated[list[ResourceParams], Field(max_length=MAX_SESSION_RESOURCES)] = Field(default_factory=list)
    budget: BudgetLimitParams | None = None


class SessionAgentUpdate(Params):
    tools: Annotated[list[ToolParams], Field(max_length=256)] | None = None
    mcp_servers: Annotated[list[URLMCPServerParams], Field(max_length=20)] | None = None


class SessionUpdateParams(Params):
    agent: SessionAgentUpdate | None = None
    budget: BudgetLimitParams | None = None
    metadata: MetadataPatch | None = None
    title: Annotated[str, Field(max_length=1024)] | None = None
    vault_ids: list[str] | None = None
