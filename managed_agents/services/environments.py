"""Environments (api-reference §2.2): `cloud` and `self_hosted` configs stored faithfully and fully resolved."""

from __future__ import annotations

from typing import cast

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.errors import Conflict, InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_id
from managed_agents.ports import ListQuery, Record
from managed_agents.services.common import Services, archive_record, check_metadata, list_page, patch_metadata, render
from managed_agents.services.records import mutate
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


class EnvironmentService:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def create(self, ws: str, params: EnvironmentCreateParams) -> JsonObject:
        now = self.svc.clock.now()
        doc: JsonObject = {
            "id": new_id("environment"),
            "type": "environment",
            "name": params.name,
            "description": params.description,
            "config": resolve_config(params.config),
            "metadata": check_metadata(dict(params.metadata)),
            "scope": params.scope,
            "created_at": rfc3339(now),
            "updated_at": rfc3339(now),
            "archived_at": None,
        }
        self.svc.resources.insert(Record("environment", ws, str(doc["id"]), doc, now))
        return render(doc)

    def record(self, ws: str, env_id: str) -> Record:
        rec = self.svc.resources.get("environment", ws, env_id)
        if rec is None:
            raise NotFound(f"environment {env_id!r} not found", error_code="environment_not_found")
        return rec

    def get(self, ws: str, env_id: str) -> JsonObject:
        return render(self.record(ws, env_id).doc)

    def update(self, ws: str, env_id: str, params: EnvironmentUpdateParams) -> JsonObject:
        fields = params.model_fields_set
        rec = self.record(ws, env_id)
        if rec.archived:
            raise InvalidRequest(f"environment {env_id!r} is archived", error_code="environment_archived")
        if "name" in fields and params.name is None:
            raise InvalidRequest("name: cannot be cleared")

        def change(r: Record) -> None:
            doc = r.doc
            before = dict(doc)
            if "name" in fields:
                doc["name"] = params.name
            if "description" in fields:
                doc["description"] = params.description
            if "scope" in fields:
                doc["scope"] = params.scope
            if "config" in fields and params.config is not None:
                current = cast(JsonObject, doc["config"])
                if params.config.type != current["type"]:
                    raise InvalidRequest(
                        f"config.type: an environment cannot change from {current['type']} to {params.config.type}",
                        error_code="invalid_config_type_change",
                    )
                doc["config"] = resolve_config(params.config, current)
            if "metadata" in fields and params.metadata is not None:
                doc["metadata"] = patch_metadata(
                    cast(dict[str, str], doc["metadata"]), params.metadata, empty_deletes=True
                )
            if doc != before:
                doc["updated_at"] = rfc3339(self.svc.clock.now())

        return render(mutate(self.svc.resources, rec, change).doc)

    def archive(self, ws: str, env_id: str) -> JsonObject:
        return render(archive_record(self.svc.resources, self.svc.clock, self.record(ws, env_id)).doc)

    def delete(self, ws: str, env_id: str) -> JsonObject:
        self.record(ws, env_id)
        busy = ListQuery(limit=1, include_archived=True, equals={"environment_id": env_id})
        busy.any_of["status"] = ("running", "rescheduling")
        rows, _ = self.svc.resources.list_records("session", ws, busy)
        if rows:
            raise Conflict(
                f"environment {env_id!r} has running sessions (e.g. {rows[0].id}); interrupt or delete them first"
            )
        self.svc.resources.delete("environment", ws, env_id)
        return {"id": env_id, "type": "environment_deleted"}

    def list_environments(self, ws: str, query: ListQuery) -> tuple[list[JsonObject], str | None]:
        rows, nxt = list_page(self.svc.resources, "environment", ws, query)
        return [render(r.doc) for r in rows], nxt
