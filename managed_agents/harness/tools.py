"""Which tools the model is offered, where each call runs, and what permission it gets.

* `agent_toolset_20260401` sandbox tools (bash read write edit glob grep) are offered with the exact
  definitions of the official SDK's reference toolset (the sandbox worker runs that same toolset) and run in
  the session's sandbox: the worker's `user.tool_result` answers them, logged as `agent.tool_result` on a cloud
  environment (domain.events.builtin_tool_result_type).
* `web_fetch` and `web_search` run in the platform (harness/web.py): `agent.tool_use` → `agent.tool_result`.
  `web_fetch` obeys the environment's networking policy; `web_search` is offered only when a search provider is
  configured (`MANAGED_AGENTS_WEB_SEARCH_URL`); otherwise a call to it gets an error result saying so.
* `custom` tools run in the API client: `agent.custom_tool_use` → `user.custom_tool_result`.
* `mcp_toolset` tools are listed from the MCP server through the MCP proxy (real schemas) and run by the platform
  through it: `agent.mcp_tool_use` → `agent.mcp_tool_result`. A tool whose name is already taken is offered as
  `<server>__<tool>`; events carry the server's own tool name.
Permission policies (api-reference §3.3): agent toolset default `always_allow`, MCP toolsets `always_ask`;
`auto` has no classifier here and resolves to ask, saying so in `evaluation.reason_code`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import cast

from managed_agents.domain.events import JsonObject
from managed_agents.harness.threads import definitions as delegation_tools
from managed_agents.harness.threads import roster_agents
from managed_agents.harness.web import WEB_FETCH_DEFINITION, WEB_SEARCH_DEFINITION

SANDBOX_TOOLS: tuple[str, ...] = ("bash", "read", "write", "edit", "glob", "grep")
WEB_TOOLS: tuple[str, ...] = ("web_fetch", "web_search")
BUILTIN_TOOLS: tuple[str, ...] = SANDBOX_TOOLS + WEB_TOOLS
AGENT_TOOLSET = "agent_toolset_20260401"


_TOOLSET_LOCK = threading.Lock()


@cache
def _build_sandbox_tool_definitions() -> dict[str, JsonObject]:
    from anthropic.lib.tools.agent_toolset import AgentToolContext, beta_agent_toolset_20260401

    tools = beta_agent_toolset_20260401(AgentToolContext(workdir="/"))
    return {t.name: cast(JsonObject, dict(t.to_dict())) for t in tools}


def sandbox_tool_definitions() -> dict[str, JsonObject]:
    """The reference toolset's own tool definitions (name, description, input_schema).

    Built once under a lock: pydantic builds the toolset's input models' schemas lazily and not thread-safely, so
    two sessions' first turns racing here failed one of them with "'dict' object has no attribute 'rebuild'"."""
    with _TOOLSET_LOCK:
        return _build_sandbox_tool_definitions()


@dataclass(frozen=True)
class ToolRoute:
    kind: str  # builtin | custom | mcp | server | thread
    name: str
    permission: str  # allow | ask | deny
    evaluation: JsonObject | None
    server: str | None = None  # mcp: the agent's mcp_servers[].name
    tool: str | None = None  # mcp: the tool's name on that server


def _policy(config: JsonObject | None, default: str = "always_allow") -> str:
    if not config:
        return default
    policy = cast(JsonObject, config.get("permission_policy") or {})
    return str(policy.get("type") or default)


def _route_for_policy(
    kind: str, name: str, policy: str, server: str | None = None, tool: str | None = None
) -> ToolRoute:
    if policy == "always_allow":
        return ToolRoute(kind, name, "allow", {"type": "always_allow"}, server, tool)
    if policy == "always_ask":
        return ToolRoute(kind, name, "ask", {"type": "always_ask"}, server, tool)
    evaluation: JsonObject = {
        "type": "auto",
        "evaluated_permission": {"type": "ask", "reason_code": "no_classifier_configured"},
    }
    return ToolRoute(kind, name, "ask", evaluation, server, tool)


def mcp_servers(agent: JsonObject) -> list[str]:
    """The MCP servers whose tools the agent uses (one mcp_toolset each)."""
    return [
        str(t["mcp_server_name"])
        for t in cast(list[JsonObject], agent.get("tools") or [])
        if t.get("type") == "mcp_toolset"
    ]


def _alias(server: str, tool: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", server)
    return f"{safe}__{tool}"[:128]


class Toolbox:
    """The tools of one agent snapshot: definitions for the model and a route for every call."""

    def __init__(
        self,
        agent: JsonObject,
        *,
        web_search_available: bool = False,
        mcp_tools: Mapping[str, list[JsonObject]] | None = None,
    ) -> None:
        """`mcp_tools`: each MCP server's tool definitions as listed by the proxy (servers absent: not offered)."""
        self.routes: dict[str, ToolRoute] = {}
        self.definitions: list[JsonObject] = []
        toolsets = cast(list[JsonObject], agent.get("tools") or [])
        for tool in toolsets:
            if tool.get("type") == AGENT_TOOLSET:
                self._add_toolset(tool, web_search_available)
            elif tool.get("type") == "custom":
                name = str(tool["name"])
                self.routes[name] = ToolRoute("custom", name, "allow", None)
                self.definitions.append(
                    {"name": name, "description": tool.get("description", ""), "input_schema": tool["input_schema"]}
                )
        for tool in toolsets:  # after the others: an MCP tool never takes a built-in or custom tool's name
            if tool.get("type") == "mcp_toolset" and mcp_tools and str(tool["mcp_server_name"]) in mcp_tools:
                self._add_mcp_toolset(tool, mcp_tools[str(tool["mcp_server_name"])])
        if agent.get("multiagent"):  # a coordinator: one delegation tool per callable agent (harness/threads.py)
            for definition in delegation_tools(agent):
                if definition["name"] not in self.routes:
                    self.routes[str(definition["name"])] = ToolRoute("thread", str(definition["name"]), "allow", None)
                    self.definitions.append(definition)

    def _add_toolset(self, toolset: JsonObject, web_search_available: bool) -> None:
        default = cast(JsonObject, toolset.get("default_config") or {})
        configs = {str(c["name"]): c for c in cast(list[JsonObject], toolset.get("configs") or [])}
        defs = sandbox_tool_definitions()
        for name in BUILTIN_TOOLS:
            cfg = configs.get(name, {})
            enabled = cfg.get("enabled", default.get("enabled", True))
            if enabled is False or (name == "web_search" and not web_search_available):
                continue
            policy = _policy(cfg) if cfg.get("permission_policy") else _policy(default)
            kind = "builtin" if name in SANDBOX_TOOLS else "server"
            self.routes[name] = _route_for_policy(kind, name, policy)
            if name in defs:
                self.definitions.append(defs[name])
            elif name == "web_fetch":
                self.definitions.append(WEB_FETCH_DEFINITION)
            elif name == "web_search":
                self.definitions.append(WEB_SEARCH_DEFINITION)

    def _add_mcp_toolset(self, toolset: JsonObject, tools: list[JsonObject]) -> None:
        server = str(toolset["mcp_server_name"])
        default = cast(JsonObject, toolset.get("default_config") or {})
        configs = {str(c["name"]): c for c in cast(list[JsonObject], toolset.get("configs") or [])}
        for definition in tools:
            name = str(definition["name"])
            cfg = configs.get(name, {})
            if cfg.get("enabled", default.get("enabled", True)) is False:
                continue
            policy = _policy(cfg, "always_ask") if cfg.get("permission_policy") else _policy(default, "always_ask")
            alias = name if name not in self.routes else _alias(server, name)
            if alias in self.routes:
                continue
            self.routes[alias] = _route_for_policy("mcp", alias, policy, server, name)
            self.definitions.append({**definition, "name": alias})

    def route(self, name: str) -> ToolRoute:
        if name in WEB_TOOLS and name not in self.routes:
            return ToolRoute("server", name, "deny", None)
        return self.routes.get(name) or ToolRoute("builtin", name, "deny", None)

    @staticmethod
    def builtin_config(agent: JsonObject, name: str) -> JsonObject:
        """The agent toolset's per-tool config of `name` (web_fetch domains and content limits)."""
        for tool in cast(list[JsonObject], agent.get("tools") or []):
            if tool.get("type") == AGENT_TOOLSET:
                for cfg in cast(list[JsonObject], tool.get("configs") or []):
                    if cfg.get("name") == name:
                        return cfg
        return {}

    @property
    def has_sandbox_tools(self) -> bool:
        return any(r.kind == "builtin" for r in self.routes.values())


def runs_sandbox_tools(agent: JsonObject) -> bool:
    """Whether a session of this agent needs a sandbox: for its own tools, or a subagent's it may delegate to (threads
    share the session's sandbox; an inline agent has the coordinator's tools)."""
    return any(Toolbox(a).has_sandbox_tools for a in (agent, *roster_agents(agent)))
