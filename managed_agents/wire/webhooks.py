"""Webhook endpoint request models: the SDK's organization webhooks (`types/beta/organization/webhook_*_params`),
with `enabled_events` taking the reference's workspace event types too (services/webhooks.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from managed_agents.wire.common import Params

Url = Annotated[str, Field(min_length=1, max_length=2048)]
EventType = Annotated[str, Field(min_length=1, max_length=128)]


class WebhookEndpointCreateParams(Params):
    url: Url
    enabled_events: Annotated[list[EventType], Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=2048)] | None = None


class WebhookEndpointUpdateParams(Params):
    url: Url | None = None
    enabled_events: Annotated[list[EventType], Field(max_length=64)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=2048)] | None = None
    state: Literal["enabled", "disabled"] | None = None
