"""Outcomes without I/O: what the fold makes of the outcome spans, what step.decide does next, the grader's verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from managed_agents.domain.events import JsonObject, StoredEvent
from managed_agents.domain.session_state import fold
from managed_agents.harness import step
from managed_agents.harness.outcomes import render_transcript, verdict
from managed_agents.ports import ModelResponse, ModelUsage

Entry = tuple[str, JsonObject, JsonObject | None]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEFINE: Entry = (
    "user.define_outcome",
    {"description": "a poem", "rubric": {"type": "text", "content": "RUBRIC"}, "max_iterations": 2, "outcome_id": "o"},
    None,
)
START: Entry = ("span.model_request_start", {}, None)


def _end(text: str) -> Entry:
    payload: JsonObject = {"model_request_start_id": "x", "is_error": False, "model_usage": {"output_tokens": 3}}
    return ("span.model_request_end", payload, {"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"})


def _eval_end(result: str, iteration: int) -> Entry:
    payload: JsonObject = {
        "outcome_evaluation_start_id": "s",
        "outcome_id": "o",
        "iteration": iteration,
        "result": result,
        "explanation": f"why {iteration}",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    return ("span.outcome_evaluation_end", payload, None)


def _eval_start(iteration: int) -> Entry:
    return ("span.outcome_evaluation_start", {"outcome_id": "o", "iteration": iteration}, None)


def _log(*events: Entry) -> list[StoredEvent]:
    return [StoredEvent("sesn_a", i + 1, f"sevt_{i + 1}", t, NOW, p, x) for i, (t, p, x) in enumerate(events)]


def _decide(*events: Entry) -> step.Action:
    return step.decide(fold(_log(*events)), now=NOW, tool_timeout=timedelta(seconds=60))


def test_the_agent_ending_its_turn_on_an_outcome_calls_the_grader() -> None:
    st = fold(_log(DEFINE, ("session.status_running", {}, None), START, _end("draft")))
    assert st.active_outcome is not None and st.active_outcome.result == "running" and st.needs_evaluation
    assert "RUBRIC" in str(st.transcript[0]["content"])  # the agent was told the rubric
    assert _decide(DEFINE, ("session.status_running", {}, None), START, _end("draft")) == step.Evaluate()


def test_needs_revision_feeds_back_and_the_last_iteration_ends_the_outcome() -> None:
    base = (DEFINE, START, _end("draft"), _eval_start(0), _eval_end("needs_revision", 0))
    st = fold(_log(*base))
    assert st.active_outcome is not None and st.active_outcome.iteration == 1
    assert "why 0" in str(st.pending) and st.usage.output_tokens == 3 + 5
    assert isinstance(_decide(*base), step.RunModel)
    st = fold(_log(*base, START, _end("draft 2"), _eval_start(1), _eval_end("max_iterations_reached", 1)))
    assert st.active_outcome is None and st.outcomes[0].result == "max_iterations_reached"
    assert st.outcomes[0].completed_at == NOW and "why 1" in str(st.pending)  # one acknowledgment turn follows


def test_an_evaluation_without_its_end_runs_again_unless_interrupted() -> None:
    base = (DEFINE, START, _end("draft"), _eval_start(0))
    assert fold(_log(*base)).outcomes[0].result == "evaluating"
    assert _decide(*base) == step.Evaluate(rerun=True)
    assert _decide(*base, ("user.interrupt", {}, None)) == step.HandleInterrupt(close_request=False)


def test_the_grader_verdict_is_read_from_its_tags() -> None:
    def reply(text: str) -> ModelResponse:
        return ModelResponse(content=[{"type": "text", "text": text}], stop_reason="end_turn", usage=ModelUsage())

    assert verdict(reply("<verdict>Satisfied</verdict><explanation> all good </explanation>")) == (
        "satisfied",
        "all good",
    )
    assert verdict(reply("<verdict>failed</verdict> not a poem")) == ("failed", "not a poem")
    assert verdict(reply("I think it is fine")) == ("needs_revision", "I think it is fine")


def test_the_grader_reads_the_transcript_as_text() -> None:
    transcript: list[JsonObject] = [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "bash", "input": {"c": "ls"}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "a.txt"}]}],
        },
    ]
    assert render_transcript(transcript) == '[user] go\n[tool call bash] {"c": "ls"}\n[tool result] a.txt'
