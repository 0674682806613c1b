"""Every environment variable the platform reads, declared once (style: settings.py).

The model endpoint and key are the official SDK's own variables, `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL`
(any Anthropic-compatible endpoint); the SDK reads them itself. Everything else is `MANAGED_AGENTS_*`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MANAGED_AGENTS_"


class HarnessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    max_tokens: int = Field(8192, description="max_tokens of each model request")
    model_max_attempts: int = Field(4, ge=1, description="attempts per model request before retries_exhausted")
    retry_base_seconds: float = Field(1.0, ge=0, description="first backoff after a retryable model error")
    retry_max_seconds: float = Field(30.0, ge=0, description="cap of the exponential backoff")
    model_timeout_seconds: float = Field(600.0, gt=0, description="read timeout of one model request")
    tool_timeout_seconds: float = Field(300.0, gt=0, description="how long a sandbox tool call may wait for its result")
    web_search_url: str | None = Field(
        None,
        description="web_search provider: a SearXNG-compatible JSON endpoint, called as GET URL?q=QUERY&format=json"
        " (unset: web_search is not offered)",
    )
    compaction_threshold_tokens: int = Field(
        160_000, ge=1000, description="compact the context when a request would exceed this many tokens"
    )


class ServerSettings(HarnessSettings):
    data_dir: str = Field(".data", description="embedded runtime: where the SQLite file and admin key live")
    sse_ping_seconds: float = Field(15.0, gt=0, description="keep-alive interval of event streams")
    sse_max_seconds: float = Field(0.0, ge=0, description="close streams cleanly after this long (0 = never)")
    max_concurrent_sessions: int = Field(256, ge=1, description="harness worker threads of the embedded runtime")
    log_level: str = Field("INFO")
    # sandboxes (hands): the work queue and the embedded provisioner of `cloud` environments
    sandbox_api_url: str | None = Field(
        None, description="the API base URL sandboxes call back (serve sets it from --host/--port when unset)"
    )
    work_lease_ttl_seconds: int = Field(60, ge=2, le=3600, description="lease of a work item between heartbeats")
    sandbox_isolation: str = Field(
        "auto", pattern="^(auto|bubblewrap|none)$", description="auto: bubblewrap when the machine has it"
    )
    sandbox_idle_seconds: float = Field(300.0, gt=0, description="a sandbox stops after this long idle")
    sandbox_start_timeout_seconds: float = Field(
        900.0, gt=0, description="a cloud sandbox must start heartbeating within this (package installs included)"
    )
    sandbox_start_delay_seconds: float = Field(0.0, ge=0, description="artificial provisioning delay (benchmarks)")
