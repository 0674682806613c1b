"""Agents: create, versioned updates with an optimistic version check, archive (api-reference §2.1, §4.6).

Every change stores a new immutable version (kind `agent_version`) and bumps `version`; an update that
changes nothing keeps the version. Responses always carry the resolved forms: `model` as an object with
`effort`, toolsets with `default_config` and typed `configs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from pydantic import BaseModel

from managed_agents.domain.errors import InvalidRequest, NotFound, VersionConflict
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_id
from managed_agents.harness.tools import BUILTIN_TOOLS
from managed_agents.ports import ListQuery, Record
from managed_agents.services.common import Services, list_page, render
from managed_agents.services.crud import Collection, Kind, Page, assign, assign_metadata
from managed_agents.services.multiagent import Snapshot, follow_owner, resolve_multiagent
from managed_agents.services.skills import check_skill_refs
from managed_agents.wire.agents import (
    AgentCreateParams,
    AgentToolsetParams,
    AgentUpdateParams,
    CustomToolParams,
    MCPToolsetParams,
    ModelConfigParams,
    SkillParams,
    URLMCPServerParams,
)

DEFAULT_EFFORT = "high"
DEFAULT_SPEED = "standard"  # hosted: a model given as a string reads back with speed "standard" (api-reference §9)
TOOLSET_DEFAULT_POLICY = {"agent_toolset_20260401": "always_allow", "mcp_toolset": "always_ask"}


def _dump(m: BaseModel) -> JsonObject:
    return cast(JsonObject, m.model_dump(mode="json", exclude_none=True))


def resolve_model(model: str | ModelConfigParams) -> tuple[JsonObject, str | None]:
    """The response form of `model` and the effort the user chose explicitly (sent to the Messages API)."""
    if isinstance(model, str):
        return {"id": model, "effort": {"type": DEFAULT_EFFORT}, "speed": DEFAULT_SPEED, "inference_geo": None}, None
    explicit = model.effort if isinstance(model.effort, str) or model.effort is None else model.effort.type
    return (
        {
            "id": model.id,
            "effort": {"type": explicit or DEFAULT_EFFORT},
            "speed": model.speed or DEFAULT_SPEED,
            "inference_geo": model.inference_geo,
        },
        explicit,
    )


def _policy(p: BaseModel | None, default: str) -> JsonObject:
    return _dump(p) if p is not None else {"type": default}


def skill_refs(svc: Services, ws: str, skills: Sequence[SkillParams]) -> list[JsonObject]:
    """An agent's `skills` as stored (`version` "latest" when not pinned); its custom skills must exist."""
    refs = [{**_dump(s), "version": s.version or "latest"} for s in skills]
    check_skill_refs(svc.resources, ws, refs)
    return refs


def resolve_tools(tools: list[AgentToolsetParams | MCPToolsetParams | CustomToolParams]) -> list[JsonObject]:
    out: list[JsonObject] = []
    for tool in tools:
        if isinstance(tool, CustomToolParams):
            out.append(_dump(tool))
            continue
        dc = tool.default_config
        default_enabled = True if dc is None or dc.enabled is None else dc.enabled
        default_policy = _policy(dc.permission_policy if dc else None, TOOLSET_DEFAULT_POLICY[tool.type])
        configs: list[JsonObject] = []
        for cfg in tool.configs:
            item = _dump(cfg)
            item["enabled"] = default_enabled if cfg.enabled is None else cfg.enabled
            item["permission_policy"] = (
                dict(default_policy) if cfg.permission_policy is None else item["permission_policy"]
            )
            if isinstance(tool, AgentToolsetParams):
                item["type"] = item["name"]
            configs.append(item)
        resolved: JsonObject = {
            "type": tool.type,
            "default_config": {"enabled": default_enabled, "permission_policy": default_policy},
            "configs": configs,
        }
        if isinstance(tool, MCPToolsetParams):
            resolved["mcp_server_name"] = tool.mcp_server_name
        out.append(resolved)
    return out


def check_tools(
    tools: list[AgentToolsetParams | MCPToolsetParams | CustomToolParams], servers: list[URLMCPServerParams]
) -> None:
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise InvalidRequest("mcp_servers: server names must be unique")
    toolsets = [t for t in tools if isinstance(t, AgentToolsetParams)]
    if len(toolsets) > 1:
        raise InvalidRequest("tools: agent_toolset_20260401 may appear at most once")
    for ts in toolsets:
        seen = [c.name for c in ts.configs]
        if len(set(seen)) != len(seen):
            raise InvalidRequest("tools[agent_toolset_20260401].configs: each tool may be configured once")
    referenced: set[str] = set()
    for t in tools:
        if isinstance(t, MCPToolsetParams):
            if t.mcp_server_name not in names:
                raise InvalidRequest(f"tools: mcp_toolset references unknown MCP server {t.mcp_server_name!r}")
            if t.mcp_server_name in referenced:
                raise InvalidRequest(f"tools: MCP server {t.mcp_server_name!r} has more than one mcp_toolset")
            referenced.add(t.mcp_server_name)
    for name in names:
        if name not in referenced:
            raise InvalidRequest(f"mcp_servers: server {name!r} is not referenced by any mcp_toolset in tools")
    custom = [t.name for t in tools if isinstance(t, CustomToolParams)]
    if len(set(custom)) != len(custom):
        raise InvalidRequest("tools: custom tool names must be unique")
    if toolsets:
        clash = sorted(set(custom) & set(BUILTIN_TOOLS))
        if clash:
            raise InvalidRequest(f"tools: custom tool {clash[0]!r} has the name of a built-in tool")


AGENT = Kind("agent", lambda: new_id("agent"))


class AgentService:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.items = Collection(svc, AGENT)

    def _snapshots(self, ws: str) -> Snapshot:
        return lambda agent_id, version: self.snapshot(ws, agent_id, version)

    def create(self, ws: str, params: AgentCreateParams) -> JsonObject:
        check_tools(list(params.tools), list(params.mcp_servers))
        model, effort = resolve_model(params.model)
        agent_id = AGENT.new_id()
        multiagent = (
            resolve_multiagent(
                params.multiagent, None, owner_id=agent_id, owner_version=1, snapshot=self._snapshots(ws)
            )
            if params.multiagent
            else None
        )
        fields: JsonObject = {
            "name": params.name,
            "description": params.description or None,  # hosted: "" reads back as null
            "system": params.system or None,
            "model": model,
            "tools": resolve_tools(list(params.tools)),
            "mcp_servers": [_dump(s) for s in params.mcp_servers],
            "skills": skill_refs(self.svc, ws, params.skills),
            "multiagent": multiagent,
            "metadata": dict(params.metadata),
            "execution_identity": _dump(params.execution_identity)
            if params.execution_identity
            else {"type": "service_account"},
            "version": 1,
            "_explicit_effort": effort,
        }
        rec = self.items.insert(ws, fields, attrs={"version": 1}, id_=agent_id)
        self._store_version(rec)
        return render(rec.doc)

    def _store_version(self, rec: Record) -> None:
        version = int(cast(int, rec.doc["version"]))
        self.svc.resources.insert(
            Record(
                "agent_version",
                rec.workspace_id,
                f"{rec.id}@{version:010d}",
                dict(rec.doc),
                self.svc.clock.now(),
                attrs={"agent_id": rec.id, "version": version},
            )
        )

    def record(self, ws: str, agent_id: str) -> Record:
        return self.items.record(ws, agent_id)

    def snapshot(self, ws: str, agent_id: str, version: int | None = None) -> JsonObject:
        """The stored document of a version (latest if None), internal keys included. An older version of an
        archived agent shows the agent's `archived_at` (hosted, api-reference §9): archiving is of the agent."""
        rec = self.record(ws, agent_id)
        if version is None or version == rec.doc["version"]:
            return dict(rec.doc)
        ver = self.svc.resources.get("agent_version", ws, f"{agent_id}@{version:010d}")
        if ver is None:
            raise NotFound(f"agent {agent_id!r} has no version {version} (latest is {rec.doc['version']})")
        return {**ver.doc, "archived_at": rec.doc.get("archived_at")}

    def get(self, ws: str, agent_id: str, version: int | None = None) -> JsonObject:
        if version is not None and version < 1:
            raise InvalidRequest(f"version: must be at least 1, got {version}")
        return render(self.snapshot(ws, agent_id, version))

    def update(self, ws: str, agent_id: str, params: AgentUpdateParams) -> JsonObject:
        fields = params.model_fields_set
        rec = self.items.live(ws, agent_id, doing="updated")
        if params.version is not None and params.version != rec.doc["version"]:
            raise VersionConflict(
                f"version: agent {agent_id!r} is at version {rec.doc['version']}, not {params.version};"
                " re-read it and apply your change again",
                error_code="version_conflict",
            )
        if "model" in fields and params.model is None:
            raise InvalidRequest("model: cannot be cleared")
        doc = dict(rec.doc)
        assign(
            doc, params, ("name", "description", "system"), required=("name",), empty_clears=("description", "system")
        )
        if "model" in fields and params.model is not None:
            doc["model"], doc["_explicit_effort"] = resolve_model(params.model)
        if "tools" in fields or "mcp_servers" in fields:
            tools_p = params.tools if "tools" in fields else None
            servers_p = params.mcp_servers if "mcp_servers" in fields else None
            if tools_p is None and "tools" not in fields:
                # validate new servers against the stored tools by re-parsing them
                from managed_agents.wire.agents import AgentCreateParams as _C

                tools_p = _C.model_validate({"name": "x", "model": "x", "tools": doc["tools"]}).tools
            if servers_p is None and "mcp_servers" not in fields:
                servers_p = [URLMCPServerParams.model_validate(s) for s in cast(list[JsonObject], doc["mcp_servers"])]
            check_tools(list(tools_p or []), list(servers_p or []))
            doc["tools"] = resolve_tools(list(tools_p or []))
            doc["mcp_servers"] = [_dump(s) for s in servers_p or []]
        if "skills" in fields:
            doc["skills"] = skill_refs(self.svc, ws, params.skills or [])
        if "multiagent" in fields:
            doc["multiagent"] = (
                resolve_multiagent(
                    params.multiagent,
                    cast(JsonObject | None, doc.get("multiagent")),
                    owner_id=agent_id,
                    owner_version=int(cast(int, rec.doc["version"])),
                    snapshot=self._snapshots(ws),
                )
                if params.multiagent
                else None
            )
        if "execution_identity" in fields:
            doc["execution_identity"] = (
                _dump(params.execution_identity) if params.execution_identity else {"type": "service_account"}
            )
        assign_metadata(doc, params)
        if doc == rec.doc:
            return render(doc)
        version = int(cast(int, rec.doc["version"])) + 1
        doc["version"] = version
        doc["multiagent"] = follow_owner(cast(JsonObject | None, doc.get("multiagent")), agent_id, version)

        def change(r: Record) -> None:
            if r.doc["version"] != rec.doc["version"]:
                raise VersionConflict(
                    f"version: agent {agent_id!r} changed concurrently (now version {r.doc['version']})",
                    error_code="version_conflict",
                )
            r.doc = doc
            r.attrs["version"] = version

        new = self.items.change(rec, change, event="updated")  # which moves updated_at: the document changed
        self._store_version(new)
        return render(new.doc)

    def archive(self, ws: str, agent_id: str) -> JsonObject:
        return self.items.archive(ws, agent_id)

    def list_agents(self, ws: str, query: ListQuery) -> Page:
        return self.items.list(ws, query)

    def versions(self, ws: str, agent_id: str, query: ListQuery) -> Page:
        agent = self.record(ws, agent_id)
        q = ListQuery(
            limit=query.limit, order="desc", cursor=query.cursor, backward=query.backward, include_archived=True
        )
        q.equals["agent_id"] = agent_id
        page = list_page(self.svc.resources, "agent_version", ws, q)
        archived_at = agent.doc.get("archived_at")
        return [{**render(r.doc), "archived_at": archived_at} for r in page.rows], page.next_page
