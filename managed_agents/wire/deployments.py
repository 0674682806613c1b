"""Deployment and deployment-run request models (api-reference §2.8; SDK `deployment_create_params`,
`deployment_update_params`).

`resources` and `budget` are the session create's own shapes (`SessionCreateParams`): a deployment stamps them onto
each session it creates, and sessions validate them (services/deployments.py checks a deployment through the
sessions service's own checks).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from managed_agents.wire.common import Metadata, MetadataPatch, Params
from managed_agents.wire.sessions import (
    MAX_SESSION_RESOURCES,
    AgentRefParams,
    SystemMessageParams,
    UserDefineOutcomeParams,
    UserMessageParams,
)

DeploymentInitialEventParams = Annotated[
    UserMessageParams | UserDefineOutcomeParams | SystemMessageParams, Field(discriminator="type")
]
InitialEvents = Annotated[list[DeploymentInitialEventParams], Field(min_length=1, max_length=50)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Description = Annotated[str, Field(max_length=2048)]
AgentParam = Annotated[str, Field(min_length=1)] | AgentRefParams
# The shapes are checked where sessions check them: services/deployments.py validates a deployment as the session
# create it stands for (SessionCreateParams and the sessions service's checks), so the two cannot drift apart.
Resources = Annotated[list[dict[str, object]], Field(max_length=MAX_SESSION_RESOURCES)]  # "Maximum 500" (SDK)
Budget = dict[str, object]
VaultIds = Annotated[list[str], Field(max_length=50)]


class CronScheduleParams(Params):
    type: Literal["cron"]
    expression: Annotated[str, Field(min_length=1, max_length=256)]
    timezone: Annotated[str, Field(min_length=1, max_length=64)]


class DeploymentCreateParams(Params):
    agent: AgentParam
    environment_id: Annotated[str, Field(min_length=1)]
    name: Name
    initial_events: InitialEvents
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)
    resources: Resources = Field(default_factory=list)
    vault_ids: VaultIds = Field(default_factory=list)
    budget: Budget | None = None
    schedule: CronScheduleParams | None = None


class DeploymentUpdateParams(Params):
    """Omitted keeps, `null` clears where the SDK allows it (description, resources, vault_ids, budget, schedule)."""

    agent: AgentParam | None = None
    environment_id: Annotated[str, Field(min_length=1)] | None = None
    name: Name | None = None
    initial_events: InitialEvents | None = None
    description: Description | None = None
    metadata: MetadataPatch | None = None
    resources: Resources | None = None
    vault_ids: VaultIds | None = None
    budget: Budget | None = None
    schedule: CronScheduleParams | None = None
