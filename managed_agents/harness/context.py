"""Build the Messages API request for a turn from the agent snapshot and the folded transcript.

Prompt caching: breakpoints on the last tool definition and the system prompt (the stable prefix: same for
every turn of a session) and on the last block of the conversation, so each turn reads the previous turn's
prefix from the cache (at most 4 breakpoints are allowed; we use 3).
"""

from __future__ import annotations

import copy
from typing import cast

from managed_agents.domain.events import JsonObject
from managed_agents.harness.tools import Toolbox

EPHEMERAL: JsonObject = {"type": "ephemeral"}


def model_id(agent: JsonObject) -> str:
    return str(cast(JsonObject, agent["model"])["id"])


def build_request(
    agent: JsonObject, toolbox: Toolbox, transcript: list[JsonObject], *, max_tokens: int, effort: str | None = None
) -> JsonObject:
    messages = copy.deepcopy(transcript)
    if messages:
        last = cast(list[JsonObject], messages[-1]["content"])
        if last:
            last[-1] = {**last[-1], "cache_control": EPHEMERAL}
    request: JsonObject = {"model": model_id(agent), "max_tokens": max_tokens, "messages": messages}
    system = agent.get("system")
    if system:
        request["system"] = [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    if toolbox.definitions:
        tools = copy.deepcopy(toolbox.definitions)
        tools[-1] = {**tools[-1], "cache_control": EPHEMERAL}
        request["tools"] = tools
    if effort:  # only an effort the user chose: not every model accepts the parameter
        request["output_config"] = {"effort": effort}
    return request
