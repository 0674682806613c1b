"""The `anthropic-beta` header, checked per resource as the hosted API checks it (api-reference §1.1, §9).

* A value this API does not know is a 400 naming it (a misspelling never passes silently).
* A resource behind a beta answers 404 `not_found_error` without it, and the message says what to send (curl
  users read it; the SDK sends the right value by default).
* The environments API takes one environments beta: `environments-2025-11-01` or the managed-agents beta (what
  the SDK sends); both in one request is a 400. Its message names `environments-2025-11-01`, as hosted does.
* Files and skills take none (the SDK sends none by default); our own extensions (environment keys) take none.

The known values are the SDK's `AnthropicBetaParam` literals plus the environments beta; a unit test keeps the
list a superset of the installed SDK's (the API Lambda does not import the SDK: it costs a second of cold start).
"""

from __future__ import annotations

from dataclasses import dataclass

from managed_agents.domain.errors import InvalidRequest, NotFound

MANAGED_AGENTS = "managed-agents-2026-04-01"
ENVIRONMENTS = "environments-2025-11-01"
AGENT_MEMORY = "agent-memory-2026-07-22"
DREAMING = "dreaming-2026-04-21"
MCP_TUNNELS = "mcp-tunnels-2026-06-22"
USER_PROFILES = "user-profiles-2026-08-18"
WEBHOOKS = "webhooks-2026-10-07"

KNOWN_BETAS = frozenset(
    {
        ENVIRONMENTS,
        # anthropic 2.17 `types/anthropic_beta_param.py`
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "output-128k-2025-02-19",
        "mcp-client-2025-04-04",
        "mcp-client-2025-11-20",
        "dev-full-thinking-2025-05-14",
        "interleaved-thinking-2025-05-14",
        "code-execution-2025-05-22",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "model-context-window-exceeded-2025-08-26",
        "fast-mode-2026-02-01",
        "output-300k-2026-03-24",
        "user-profiles-2026-03-24",
        "user-profiles-2026-08-18",
        "user-profiles-2026-09-04",
        "advisor-tool-2026-03-01",
        "managed-agents-2026-04-01",
        "dreaming-2026-04-21",
        "thinking-token-count-2026-05-13",
        "server-side-fallback-2026-06-01",
        "server-side-fallback-2026-07-01",
        "fallback-credit-2026-06-01",
        "fallback-credit-2026-07-01",
        "agent-memory-2026-07-22",
        "mid-conversation-tool-changes-2026-07-01",
        "compact-2026-01-12",
        "computer-use-2025-11-24",
        "mcp-tunnels-2026-06-22",
        "structured-outputs-2025-11-13",
        "task-budgets-2026-03-13",
        "thinking-display-updates-2026-08-18",
        "mid-conversation-output-config-2026-07-01",
        "thinking-binding-controls-2026-08-01",
        "mid-conversation-system-clear-at-2026-08-21",
        "compact-2026-09-04",
        "inline-tools-2026-09-15",
        "mcp-client-2026-09-15",
        "ce-plugins-2026-09-01",
        "spend-limit-reads-2026-09-26",
        "telemetry-destinations-2026-08-11",
        "webhooks-2026-10-07",
        "admin-user-sign-out-2026-10-08",
        "message-threads-2026-08-12",
        "analytics-usage-cost-2026-08-24",
        "experimental-claude-tag-2026-10-21",
        "message-batches-2024-09-24",
        "prompt-caching-2024-07-31",
        "pdfs-2024-09-25",
        "token-counting-2024-11-01",
        "token-efficient-tools-2025-02-19",
        "files-api-2025-04-14",
        "extended-cache-ttl-2025-04-11",
        "skills-2025-10-02",
        "cache-diagnosis-2026-04-07",
        "ce-user-management-2026-07-13",
        "ce-claude-code-managed-settings-2026-10-06",
        "efs-2026-10-01",
        "google-managed-data-controls-2026-09-01",
        "user-profiles-billing-2026-10-01",
    }
)


@dataclass(frozen=True)
class BetaRule:
    """What a resource needs in `anthropic-beta`: one of `accepts`, and at most one of them when `exclusive`."""

    api: str  # "agents", "environments": named in the message
    accepts: frozenset[str]
    named: str  # the value the message asks for
    exclusive: bool = False

    @classmethod
    def of(cls, api: str, value: str) -> BetaRule:
        return cls(api, frozenset({value}), value)


AGENTS_API = BetaRule.of("agents", MANAGED_AGENTS)
SESSIONS_API = BetaRule.of("sessions", MANAGED_AGENTS)
VAULTS_API = BetaRule.of("vaults", MANAGED_AGENTS)
DEPLOYMENTS_API = BetaRule.of("deployments", MANAGED_AGENTS)
DEPLOYMENT_RUNS_API = BetaRule.of("deployment runs", MANAGED_AGENTS)
WEBHOOKS_API = BetaRule.of("webhooks", WEBHOOKS)
ENVIRONMENTS_API = BetaRule("environments", frozenset({ENVIRONMENTS, MANAGED_AGENTS}), ENVIRONMENTS, exclusive=True)


def parse(header_values: list[str]) -> list[str]:
    """Every value of every `anthropic-beta` header line, comma-separated, in order."""
    return [v.strip() for line in header_values for v in line.split(",") if v.strip()]


def check(values: list[str], rule: BetaRule | None) -> None:
    unknown = [v for v in dict.fromkeys(values) if v not in KNOWN_BETAS]
    if unknown:
        listed = ", ".join(f"`{v[:100]}`" for v in unknown[:10])
        raise InvalidRequest(f"Unexpected value(s) {listed} for the `anthropic-beta` header.")
    if rule is None:
        return
    present = rule.accepts.intersection(values)
    if rule.exclusive and len(present) > 1:
        raise InvalidRequest(f"Only one {rule.api} beta header may be specified per request.")
    if not present:
        raise NotFound(f"The {rule.api} API requires the `{rule.named}` value in the `anthropic-beta` header.")
