"""Which tools the model is offered, where each call runs, and what permission it gets.

* `agent_toolset_20260401` sandbox tools (bash read write edit glob grep) are offered with the exact
  definitions of the official SDK's reference toolset (the sandbox worker runs that same toolset) and run in
  the session's sandbox: a `user.tool_result` answers them.
* `web_fetch` / `web_search` run in the platform (the MCP/web proxy issue); until a provider is configured
  they are not offered to the model.
* `custom` tools run in the API client: `agent.custom_tool_use` → `user.custom_tool_result`.
Permission policies (api-reference §3.3): agent toolset default `always_allow`, MCP toolsets `always_ask`;
`auto` has no classifier here and resolves to ask, saying so in `evaluation.reason_code`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import cast

from managed_agents.domain.events import JsonObject

SANDBOX_TOOLS: tuple[str, ...] = ("bash", "read", "write", "edit", "glob", "grep")
WEB_TOOLS: tuple[str, ...] = ("web_fetch", "web_search")
BUILTIN_TOOLS: tuple[str, ...] = SANDBOX_TOOLS + WEB_TOOLS
AGENT_TOOLSET = "agent_toolset_20260401"


@cache
def sandbox_tool_definitions() -> dict[str, JsonObject]:
    """The reference toolset's own tool definitions (name, description, input_schema)."""
    from anthropic.lib.tools.agent_toolset import AgentToolContext, beta_agent_toolset_20260401

    tools = beta_agent_toolset_20260401(AgentToolContext(workdir="/"))
    return {t.name: cast(JsonObject, dict(t.to_dict())) for t in tools}


@dataclass(frozen=True)
class ToolRoute:
    kind: str  # builtin | custom | mcp | server
    name: str
    permission: str  # allow | ask | deny
    evaluation: JsonObject | None


def _policy(config: JsonObject | None) -> str:
    if not config:
        return "always_allow"
    policy = cast(JsonObject, config.get("permission_policy") or {})
    return str(policy.get("type") or "always_allow")


def _route_for_policy(kind: str, name: str, policy: str) -> ToolRoute:
    if policy == "always_allow":
        return ToolRoute(kind, name, "allow", {"type": "always_allow"})
    if policy == "always_ask":
        return ToolRoute(kind, name, "ask", {"type": "always_ask"})
    return ToolRoute(
        kind,
        name,
        "ask",
        {"type": "auto", "evaluated_permission": {"type": "ask", "reason_code": "no_classifier_configured"}},
    )


class Toolbox:
    """The tools of one agent snapshot: definitions for the model and a route for every call."""

    def __init__(self, agent: JsonObject, *, web_tools_available: bool = False) -> None:
        self.routes: dict[str, ToolRoute] = {}
        self.definitions: list[JsonObject] = []
        for tool in cast(list[JsonObject], agent.get("tools") or []):
            if tool.get("type") == AGENT_TOOLSET:
                self._add_toolset(tool, web_tools_available)
            elif tool.get("type") == "custom":
                name = str(tool["name"])
                self.routes[name] = ToolRoute("custom", name, "allow", None)
                self.definitions.append(
                    {"name": name, "description": tool.get("description", ""), "input_schema": tool["input_schema"]}
                )

    def _add_toolset(self, toolset: JsonObject, web_tools_available: bool) -> None:
        default = cast(JsonObject, toolset.get("default_config") or {})
        configs = {str(c["name"]): c for c in cast(list[JsonObject], toolset.get("configs") or [])}
        defs = sandbox_tool_definitions()
        for name in BUILTIN_TOOLS:
            cfg = configs.get(name, {})
            enabled = cfg.get("enabled", default.get("enabled", True))
            if enabled is False or (name in WEB_TOOLS and not web_tools_available):
                continue
            policy = _policy(cfg) if cfg.get("permission_policy") else _policy(default)
            kind = "builtin" if name in SANDBOX_TOOLS else "server"
            self.routes[name] = _route_for_policy(kind, name, policy)
            if name in defs:
                self.definitions.append(defs[name])

    def route(self, name: str) -> ToolRoute:
        return self.routes.get(name) or ToolRoute("builtin", name, "deny", None)

    @property
    def has_sandbox_tools(self) -> bool:
        return any(r.kind == "builtin" for r in self.routes.values())
