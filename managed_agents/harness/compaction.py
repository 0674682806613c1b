"""Context compaction: when the next request would not fit under the threshold, the model summarizes the session so
far and the turn continues from that summary.

A compaction is a model request like any other (`span.model_request_start` marked `internal.compaction`, then
`span.model_request_end` with its usage), so its cost is counted, a crash re-runs it, and a failure is retried with
backoff or exhausted as any model request is. It summarizes the transcript and the settled tool results; user input
that arrived meanwhile is not summarized but sent verbatim after the summary. Its end is logged together with
`agent.thread_context_compacted`, whose internal part holds the summary (the fold then starts the context over from
it: domain/session_state.py), and the next request continues the turn.

A compaction must make room. When the first request after a compaction still carries more than the threshold
(the system prompt, the tools, the summary or the new input alone are too large), or a turn has compacted
`compaction_max_per_turn` times, the turn ends with `session.error` `compaction_limit_reached_error` and goes idle
(api-reference §3.2) instead of compacting again: compacting can never loop on paid model calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from managed_agents.domain.events import JsonObject, StoredEvent
from managed_agents.domain.session_state import SessionState
from managed_agents.harness.context import build_request
from managed_agents.harness.event_batches import Entry, request_end
from managed_agents.harness.tools import Toolbox
from managed_agents.ports import ModelResponse
from managed_agents.settings import HarnessSettings

MARK: JsonObject = {"compaction": True}  # the internal part of a compaction's span.model_request_start
SUMMARY_MAX_TOKENS = 4096
INSTRUCTION = (
    "The conversation above is about to be compacted because it no longer fits in the context window. "
    "Write a summary that lets you continue the task without the original messages: the user's goals and "
    "constraints, decisions made, work done so far (files, commands, results), open questions, and the "
    "next steps. Be specific and complete; do not call tools."
)


@dataclass(frozen=True)
class LimitReached:
    message: str


def is_compaction(start: StoredEvent | None) -> bool:
    return start is not None and bool((start.internal or {}).get("compaction"))


def context_estimate(st: SessionState) -> int:
    """Tokens the next request would carry: the last request's measured context plus what was added since (~4
    characters a token); 0 when no request measured the context since it last started over."""
    if st.last_request_input_tokens == 0:
        return 0
    added = sum(len(str(b)) for b in st.pending) + sum(len(str(c.result_content)) for c in st.calls)
    return st.last_request_input_tokens + added // 4


def verdict(st: SessionState, settings: HarnessSettings) -> bool | LimitReached:
    """Before a model request: whether to compact first (True), not (False), or stop the turn (LimitReached)."""
    threshold = settings.compaction_threshold_tokens
    if not st.transcript or context_estimate(st) <= threshold:
        return False
    measured = st.compacted_context_tokens
    if measured is not None and measured > threshold:
        return LimitReached(
            f"The context is over the compaction threshold of {threshold} tokens, and compacting it does not help: "
            f"the request after this turn's last compaction already carried {measured} tokens (the system prompt, "
            "the tools or the latest input are too large). Start a new session or shorten the input."
        )
    if st.compactions_in_turn >= settings.compaction_max_per_turn:
        return LimitReached(
            f"The context was compacted {st.compactions_in_turn} times in this turn, the most allowed "
            f"(compaction_max_per_turn); it is over {threshold} tokens again."
        )
    return True


def request(agent: JsonObject, toolbox: Toolbox, st: SessionState, *, context: str | None = None) -> JsonObject:
    """The summary request: the transcript and the settled tool results, then the instruction. It shares the
    turn requests' prefix (tools, system, transcript), so it reads their prompt cache; it may not call tools."""
    settled = [c.tool_result_block() for c in st.calls]
    tail: list[JsonObject] = [*settled, {"type": "text", "text": INSTRUCTION}]
    messages = list(st.transcript)
    if messages and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": [*cast(list[JsonObject], messages[-1]["content"]), *tail]}
    else:
        messages.append({"role": "user", "content": tail})
    out = build_request(agent, toolbox, messages, max_tokens=SUMMARY_MAX_TOKENS, context=context)
    if "tools" in out:
        out["tool_choice"] = {"type": "none"}
    return out


def events(start_id: str, response: ModelResponse) -> list[Entry]:
    """The compaction's end and the compacted context, logged together."""
    summary = "\n".join(str(b.get("text", "")) for b in response.content if b.get("type") == "text")
    text = (
        "This session's earlier context was compacted. Summary of the conversation so far:\n\n"
        f"{summary}\n\nContinue the task from here."
    )
    return [
        request_end(start_id, response, is_error=False, internal={"stop_reason": response.stop_reason}),
        ("agent.thread_context_compacted", {}, {"summary": text, "keeps_pending": True}),
    ]
