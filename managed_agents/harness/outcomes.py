"""The outcome grader (api-reference §3.2 `span.outcome_evaluation_*`, §3.3 Outcomes).

When the agent ends a turn on an outcome it is working on, the harness asks the grader: a separate model request
(the agent's model) whose only context is the rubric, the outcome's description and a plain-text rendering of the
session's transcript, never the agent's own request (no system prompt, no tools, no cache prefix of the agent's).
The verdict ends the span: `satisfied` and `failed` end the turn; `needs_revision` hands the explanation to the
agent (domain/outcomes.py) until the last allowed iteration, which ends `max_iterations_reached` after one final
acknowledgment turn of the agent's. A long grader request logs `span.outcome_evaluation_ongoing` heartbeats.

Re-run safe like the rest of the harness: the start and end batches have deterministic ids per (outcome,
iteration), and an evaluation whose start is logged without its end is run again.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, cast

from managed_agents.domain.events import JsonObject
from managed_agents.domain.outcomes import Outcome
from managed_agents.harness.context import model_id
from managed_agents.harness.event_batches import Entry, session_error
from managed_agents.ports import Cancelled, CancelToken, ModelError, ModelResponse

if TYPE_CHECKING:
    from managed_agents.harness.turn import Outcome as StepOutcome
    from managed_agents.harness.turn import _Turn

GRADER_SYSTEM = (
    "You are a strict grader. You are given an outcome an agent was asked to produce, the rubric to judge it by, and"
    " the transcript of the agent's session. Judge only whether the work in the transcript meets the rubric. Reply"
    " with <verdict>satisfied</verdict> when every criterion is met, <verdict>needs_revision</verdict> when some are"
    " not (say which and what is missing), or <verdict>failed</verdict> only when the rubric cannot apply to what the"
    " agent produced. Then give your reasons in <explanation>...</explanation>."
)
GRADER_MAX_TOKENS = 4096
BLOCK_CHARS = 20_000  # a tool input or result longer than this is cut in the grader's transcript
_VERDICT = re.compile(r"<verdict>\s*(satisfied|needs_revision|failed)\s*</verdict>", re.IGNORECASE)
_EXPLANATION = re.compile(r"<explanation>(.*?)(?:</explanation>|$)", re.IGNORECASE | re.DOTALL)


def _cut(text: str) -> str:
    return text if len(text) <= BLOCK_CHARS else text[:BLOCK_CHARS] + " [...]"


def render_transcript(transcript: list[JsonObject]) -> str:
    """The session as plain text for the grader: who said what, which tools ran with which input and result."""
    lines: list[str] = []
    for message in transcript:
        role = str(message.get("role"))
        for block in cast(list[JsonObject], message.get("content") or []):
            btype = block.get("type")
            if btype == "text":
                lines.append(f"[{role}] {_cut(str(block.get('text', '')))}")
            elif btype == "tool_use":
                lines.append(f"[tool call {block.get('name')}] {_cut(json.dumps(block.get('input'), sort_keys=True))}")
            elif btype == "tool_result":
                content = block.get("content")
                parts = content if isinstance(content, list) else [{"type": "text", "text": str(content or "")}]
                text = " ".join(
                    str(c.get("text", "")) for c in cast(list[JsonObject], parts) if c.get("type") == "text"
                )
                error = " (error)" if block.get("is_error") else ""
                lines.append(f"[tool result{error}] {_cut(text)}")
    return "\n".join(lines)


def grader_request(agent: JsonObject, outcome: Outcome, transcript: list[JsonObject]) -> JsonObject:
    text = (
        f"<outcome>\n{outcome.description}\n</outcome>\n"
        f"<rubric>\n{outcome.rubric}\n</rubric>\n"
        f"<transcript>\n{render_transcript(transcript)}\n</transcript>"
    )
    return {
        "model": model_id(agent),
        "max_tokens": GRADER_MAX_TOKENS,
        "system": GRADER_SYSTEM,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }


def verdict(response: ModelResponse) -> tuple[str, str]:
    """(result, explanation) of the grader's reply; no verdict reads as needs_revision (max_iterations bounds it)."""
    text = "\n".join(str(b.get("text", "")) for b in response.content if b.get("type") == "text")
    found = _VERDICT.search(text)
    reason = _EXPLANATION.search(text)
    explanation = (reason.group(1) if reason else _VERDICT.sub("", text)).strip()
    if found is None:
        return "needs_revision", explanation or "The grader gave no verdict."
    return found.group(1).lower(), explanation or found.group(1).lower()


def _usage(response: ModelResponse | None) -> JsonObject:
    u = response.usage if response is not None else None
    return {
        "input_tokens": u.input_tokens if u else 0,
        "output_tokens": u.output_tokens if u else 0,
        "cache_read_input_tokens": u.cache_read_input_tokens if u else 0,
        "cache_creation_input_tokens": u.cache_creation_input_tokens if u else 0,
    }


def end_event(start_id: str, outcome: Outcome, result: str, explanation: str, response: ModelResponse | None) -> Entry:
    payload: JsonObject = {
        "outcome_evaluation_start_id": start_id,
        "outcome_id": outcome.outcome_id,
        "iteration": outcome.iteration,
        "result": result,
        "explanation": explanation,
        "usage": _usage(response),
    }
    return ("span.outcome_evaluation_end", payload, None)


def evaluate(turn: _Turn, rerun: bool, cancel: CancelToken | None) -> StepOutcome:
    from managed_agents.harness.turn import RetryAfter, RunAgain, budget_gate

    deps, st = turn.deps, turn.state
    outcome = st.active_outcome
    assert outcome is not None
    key = f"eval:{outcome.outcome_id}:{outcome.iteration}"
    if not rerun:
        stopped = budget_gate(turn)
        if stopped is not None:
            return stopped
        start: list[Entry] = []
        if st.status != "running":
            start.append(("session.status_running", {}, None))
        payload: JsonObject = {"outcome_id": outcome.outcome_id, "iteration": outcome.iteration}
        start.append(("span.outcome_evaluation_start", payload, None))
        turn.append(f"{key}:start", start)
        if st.evaluation_inflight is None:  # someone else ran this evaluation meanwhile
            return RunAgain()
    assert st.evaluation_inflight is not None
    start_id = st.evaluation_inflight.id
    request = grader_request(turn.agent, outcome, st.transcript)
    try:
        response = _grade(turn, key, outcome, request, cancel)
    except Cancelled:
        return RunAgain()
    except ModelError as exc:
        attempt = st.evaluation_errors + 1
        if exc.retryable and attempt < deps.settings.model_max_attempts:
            delay = min(deps.settings.retry_base_seconds * 2 ** (attempt - 1), deps.settings.retry_max_seconds)
            message = f"Outcome grader request failed: {exc.message}. Retrying in {delay:g} s."
            turn.append(f"{key}:error{attempt}", [session_error("model_request_failed_error", message, "retrying")])
            return RetryAfter(delay)
        explanation = f"The grader could not judge the outcome: {exc.message}"
        turn.append(
            f"{key}:end",
            [end_event(start_id, outcome, "failed", explanation, None), _idle()],
        )
        return RunAgain()
    result, explanation = verdict(response)
    if result == "needs_revision" and outcome.iteration + 1 >= outcome.max_iterations:
        result = "max_iterations_reached"
    batch = [end_event(start_id, outcome, result, explanation, response)]
    if result in ("satisfied", "failed"):
        batch.append(_idle())
    turn.append(f"{key}:end", batch)
    return RunAgain()


def _idle() -> Entry:
    return ("session.status_idle", {"stop_reason": {"type": "end_turn"}}, None)


def _grade(turn: _Turn, key: str, outcome: Outcome, request: JsonObject, cancel: CancelToken | None) -> ModelResponse:
    """The grader's request, with a `span.outcome_evaluation_ongoing` every `outcome_heartbeat_seconds` it takes.

    The request runs on a helper thread so that the heartbeats are appended from this one, like every other append
    of the step (never from the model client's event loop). A heartbeat is only logged while this step's state is
    the end of the log: once anything else was logged (an interrupt, or on AWS a run that took over before this
    invocation's cancel token noticed) the step says nothing more until its request ends."""
    interval = turn.deps.settings.outcome_heartbeat_seconds
    payload: JsonObject = {"outcome_id": outcome.outcome_id, "iteration": outcome.iteration}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-grader") as pool:
        future = pool.submit(turn.deps.model.stream_message, request, cancel=cancel)
        beats = 0
        while True:
            try:
                with turn.deps.waiting():
                    return future.result(timeout=interval)
            except FutureTimeout:
                if (cancel is not None and cancel.cancelled) or turn.deps.events.last_seq(
                    turn.sid
                ) != turn.state.last_seq:
                    continue  # the log moved on without this step (an interrupt, another run): no more heartbeats
                beats += 1
                turn.append(f"{key}:ongoing{beats}", [("span.outcome_evaluation_ongoing", payload, None)])
