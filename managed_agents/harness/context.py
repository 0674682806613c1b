"""Build the Messages API request for a turn from the agent snapshot and the folded transcript.

Prompt caching: breakpoints on the last tool definition and the system prompt (the stable prefix: same for
every turn of a session) and on the last block of the conversation, so each turn reads the previous turn's
prefix from the cache (at most 4 breakpoints are allowed; we use 3).

The system prompt is the agent's, then what the session carries (`session_context`): its skills (name,
description, where SKILL.md is) and its memory stores (mount path, access, description, instructions). Both are
fixed when the session is created, so the prefix stays the same for every turn and is cached with the rest.
"""

from __future__ import annotations

from typing import cast

from managed_agents.domain.events import JsonObject
from managed_agents.harness.tools import Toolbox

EPHEMERAL: JsonObject = {"type": "ephemeral"}


def model_id(agent: JsonObject) -> str:
    return str(cast(JsonObject, agent["model"])["id"])


SKILLS_DIR = "skills"  # under the sandbox's working directory (the official worker's `{workdir}/skills/<name>/`)


def session_context(session: JsonObject, *, memory_mounted: bool = True) -> str | None:
    """The system prompt's part about the session's skills and memory stores, or None when it has neither.
    `memory_mounted=False` (an unisolated embedded sandbox, which has no /mnt of its own): the stores are named as
    attached but not available as files, so the model does not look for them there."""
    parts: list[str] = []
    skills = cast(list[JsonObject], session.get("_skills") or [])
    if skills:
        lines = [
            "# Skills",
            "Skills are folders of instructions, scripts and resources in your working directory. When a task matches"
            " a skill's description, read its SKILL.md first (with the read tool or bash) and follow it.",
        ]
        for sk in skills:
            lines.append(f"- {sk['name']}: {sk['description']} (instructions: {SKILLS_DIR}/{sk['name']}/SKILL.md)")
        parts.append("\n".join(lines))
    resources = session.get("resources", session.get("_resources"))  # a child thread's copy of its session's
    stores = [r for r in cast(list[JsonObject], resources or []) if r.get("type") == "memory_store"]
    if stores and not memory_mounted:
        names = ", ".join(str(st.get("name") or st.get("memory_store_id")) for st in stores)
        parts.append(
            "# Memory\nMemory stores are attached to this session but this sandbox cannot mount them (it runs"
            f" without isolation), so they are not available as files here: {names}."
        )
    elif stores:
        lines = [
            "# Memory",
            "Memory stores are folders that persist across sessions. Read them before starting work; write what is"
            " worth remembering as files there (read-only stores cannot be changed).",
        ]
        for st in stores:
            access = "read-only" if st.get("access") == "read_only" else "read-write"
            line = f"- {st.get('mount_path')} ({st.get('name')}, {access})"
            if st.get("description"):
                line += f": {st['description']}"
            if st.get("instructions"):
                line += f"\n  Instructions: {st['instructions']}"
            lines.append(line)
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or None


def build_request(
    agent: JsonObject,
    toolbox: Toolbox,
    transcript: list[JsonObject],
    *,
    max_tokens: int,
    effort: str | None = None,
    context: str | None = None,
) -> JsonObject:
    # The request shares the transcript's messages and blocks (no copy of the whole conversation per turn: it grew
    # with the session); only what gets a cache breakpoint is a new dict. Nothing may change the request's nested
    # parts in place (file_blocks.py builds new messages).
    messages = list(transcript)
    if messages:
        last = cast(list[JsonObject], messages[-1]["content"])
        if last:
            messages[-1] = {**messages[-1], "content": [*last[:-1], {**last[-1], "cache_control": EPHEMERAL}]}
    request: JsonObject = {"model": model_id(agent), "max_tokens": max_tokens, "messages": messages}
    system: list[JsonObject] = [{"type": "text", "text": t} for t in (agent.get("system"), context) if t]
    if system:
        system[-1]["cache_control"] = EPHEMERAL
        request["system"] = system
    if toolbox.definitions:
        tools = [*toolbox.definitions[:-1], {**toolbox.definitions[-1], "cache_control": EPHEMERAL}]
        request["tools"] = tools
    if effort:  # only an effort the user chose: not every model accepts the parameter
        request["output_config"] = {"effort": effort}
    return request
