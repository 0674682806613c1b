"""A turn's request shares the transcript's messages instead of copying the whole conversation each turn (a copy
that grew with the session), and nothing that builds the request changes the transcript: the cache breakpoints and
the inlined files are on new dicts only."""

from __future__ import annotations

import copy
from typing import Any

from managed_agents.harness.context import EPHEMERAL, build_request
from managed_agents.harness.file_blocks import inline_file_sources
from managed_agents.harness.tools import Toolbox

AGENT: dict[str, Any] = {
    "model": {"id": "m"},
    "system": "You are terse.",
    "tools": [
        {"type": "custom", "name": "lookup", "description": "Look up.", "input_schema": {"type": "object"}},
        {"type": "custom", "name": "save", "description": "Save.", "input_schema": {"type": "object"}},
    ],
    "mcp_servers": [],
}
FILE_BLOCK = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}


def _transcript(turns: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(turns):
        out.append({"role": "user", "content": [{"type": "text", "text": f"question {i}"}, dict(FILE_BLOCK)]})
        out.append({"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]})
    out.append({"role": "user", "content": [{"type": "text", "text": "last"}]})
    return out


def test_the_request_shares_earlier_messages_and_leaves_the_transcript_and_tools_as_they_were() -> None:
    # Given a session's transcript and its agent's tools
    transcript = _transcript(3)
    toolbox = Toolbox(AGENT)
    before, tools_before = copy.deepcopy(transcript), copy.deepcopy(toolbox.definitions)
    # When the turn's request is built
    req = build_request(AGENT, toolbox, transcript, max_tokens=10)
    # Then the last block and the last tool carry the cache breakpoint
    assert req["messages"][-1]["content"][-1] == {"type": "text", "text": "last", "cache_control": EPHEMERAL}
    assert req["tools"][-1]["cache_control"] == EPHEMERAL and "cache_control" not in req["tools"][0]
    # And the earlier messages are the transcript's own (not copied), which is unchanged, as are the tools
    assert all(a is b for a, b in zip(req["messages"][:-1], transcript[:-1], strict=True))
    assert transcript == before
    assert toolbox.definitions == tools_before


def test_inlining_files_into_the_request_leaves_the_transcript_referencing_them() -> None:
    # Given a request built from a transcript with file-sourced images
    transcript = _transcript(2)
    before = copy.deepcopy(transcript)
    req = build_request(AGENT, Toolbox(AGENT), transcript, max_tokens=10)
    # When the files are inlined
    out = inline_file_sources(req, "wrkspc_1", lambda ws, file_id: ("image/png", b"\x89PNG"))
    # Then the request carries the bytes
    images = [b for m in out["messages"] for b in m["content"] if b["type"] == "image"]
    assert [b["source"]["type"] for b in images] == ["base64", "base64"]
    # And the transcript (the session state's) still references the files, and the built request is as it was
    assert transcript == before
    assert [b["source"] for m in req["messages"] for b in m["content"] if b["type"] == "image"] == [
        FILE_BLOCK["source"],
        FILE_BLOCK["source"],
    ]
