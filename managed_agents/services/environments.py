"""Environments (api-reference §2.2): `cloud` and `self_hosted` configs stored faithfully and fully resolved."""

from __future__ import annotations

from typing import cast

from managed_agents.domain.errors import Conflict, InvalidRequest
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_id
from managed_agents.ports import ListQuery, Record
from managed_agents.services.common import Services
from managed_agents.services.crud import Collection, Kind, Page, assign, assign_metadata
from managed_agents.wire.environments import (
    CloudConfigParams,
    EnvironmentCreateParams,
    EnvironmentUpdateParams,
    LimitedNetwork,
    SelfHostedConfigParams,
)

PACKAGE_MANAGERS = ("apt", "cargo", "gem", "go", "npm", "pip")


def resolve_config(
    config: CloudConfigParams | SelfHostedConfigParams | None, current: JsonObject | None = None
) -> JsonObject:
    """The stored (response) form; on update, omitted cloud fields keep their current values."""
    if isinstance(config, SelfHostedConfigParams):
        return {"type": "self_hosted"}
    base = current if current and current.get("type") == "cloud" else None
    networking: JsonObject = cast(JsonObject, base["networking"]) if base else {"type": "unrestricted"}
    packages: JsonObject = (
        dict(cast(JsonObject, base["packages"])) if base else {"type": "packages", **{m: [] for m in PACKAGE_MANAGERS}}
    )
    if config is not None and config.networking is not None:
        net = config.networking
        if isinstance(net, LimitedNetwork):
            networking = {
                "type": "limited",
                "allowed_hosts": list(net.allowed_hosts or []),
                "allow_mcp_servers": bool(net.allow_mcp_servers),
                "allow_package_managers": bool(net.allow_package_managers),
            }
        else:
            networking = {"type": "unrestricted"}
    if config is not None and config.packages is not None:
        for m in PACKAGE_MANAGERS:
            value = getattr(config.packages, m)
            if value is not None:
                packages[m] = list(value)
    has_packages = any(packages.get(m) for m in PACKAGE_MANAGERS)
    if has_packages and networking["type"] == "limited" and not networking.get("allow_package_managers"):
        raise InvalidRequest(
            "config.networking.allow_package_managers: must be true when config.packages lists packages"
            " under limited networking"
        )
    return {"type": "cloud", "networking": networking, "packages": packages}


ENVIRONMENT = Kind(
    "environment",
    lambda: new_id("environment"),
    not_found_code="environment_not_found",
    archived_code="environment_archived",
)


def with_state(doc: JsonObject) -> JsonObject:
    """Hosted environments carry `state`, "active" or "archived" (api-reference §9)."""
    return {**doc, "state": "archived" if doc.get("archived_at") else "active"}


class EnvironmentService:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.items = Collection(svc, ENVIRONMENT, view=with_state)

    def create(self, ws: str, params: EnvironmentCreateParams) -> JsonObject:
        fields: JsonObject = {
            "name": params.name,
            "description": params.description,
            "config": resolve_config(params.config),
            "metadata": dict(params.metadata),
            "scope": params.scope,
        }
        return self.items.create(ws, fields)

    def record(self, ws: str, env_id: str) -> Record:
        return self.items.record(ws, env_id)

    def get(self, ws: str, env_id: str) -> JsonObject:
        return self.items.get(ws, env_id)

    def update(self, ws: str, env_id: str, params: EnvironmentUpdateParams) -> JsonObject:
        def edit(doc: JsonObject) -> None:
            assign(doc, params, ("name", "description", "scope"), required=("name",))
            if "config" in params.model_fields_set and params.config is not None:
                current = cast(JsonObject, doc["config"])
                if params.config.type != current["type"]:
                    raise InvalidRequest(
                        f"config.type: an environment cannot change from {current['type']} to {params.config.type}",
                        error_code="invalid_config_type_change",
                    )
                doc["config"] = resolve_config(params.config, current)
            assign_metadata(doc, params, empty_deletes=True, null_clears=False)

        return self.items.update(ws, env_id, edit)

    def archive(self, ws: str, env_id: str) -> JsonObject:
        return self.items.archive(ws, env_id)

    def delete(self, ws: str, env_id: str) -> JsonObject:
        self.items.record(ws, env_id)
        busy = ListQuery(limit=1, include_archived=True, equals={"environment_id": env_id})
        busy.any_of["status"] = ("running", "rescheduling")
        rows, _ = self.svc.resources.list_records("session", ws, busy)
        if rows:
            raise Conflict(
                f"environment {env_id!r} has running sessions (e.g. {rows[0].id}); interrupt or delete them first"
            )
        return self.items.delete(ws, env_id)

    def list_environments(self, ws: str, query: ListQuery) -> Page:
        return self.items.list(ws, query)
