"""Outcomes (api-reference §3.1 `user.define_outcome`, §3.2 `span.outcome_evaluation_*`, §3.3 Outcomes): the state
the fold keeps of each outcome, and the words the agent is given.

An outcome is `pending` until the agent's first request, `running` while the agent works or revises, `evaluating`
while the grader (harness/outcomes.py) judges, then `satisfied`, `max_iterations_reached`, `failed` or `interrupted`.
`iteration` is the 0-indexed evaluate-then-revise cycle. A `needs_revision` verdict hands the grader's explanation to
the agent as its next user turn; the last allowed one (`max_iterations_reached`) does too, for one final
acknowledgment turn, after which the session goes idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.events import JsonObject

DEFAULT_MAX_ITERATIONS = 3
TERMINAL = frozenset({"satisfied", "max_iterations_reached", "failed", "interrupted"})
VERDICTS = ("satisfied", "needs_revision", "failed")


@dataclass
class Outcome:
    outcome_id: str
    description: str
    rubric: str
    max_iterations: int
    iteration: int = 0
    result: str = "pending"
    explanation: str | None = None
    completed_at: datetime | None = None
    agent_done: bool = False  # the agent ended a turn since the last verdict: the grader runs next

    @property
    def terminal(self) -> bool:
        return self.result in TERMINAL

    def render(self) -> JsonObject:
        return {
            "type": "outcome_evaluation",
            "outcome_id": self.outcome_id,
            "description": self.description,
            "iteration": self.iteration,
            "result": self.result,
            "explanation": self.explanation,
            "completed_at": rfc3339(self.completed_at) if self.completed_at else None,
        }


def brief(description: str, rubric: str) -> str:
    """What the agent is asked: the outcome and the rubric it will be graded against."""
    return (
        "<outcome>\n"
        f"Produce this outcome: {description}\n\n"
        "When you are done, a separate grader will judge your work against this rubric:\n"
        f"<rubric>\n{rubric}\n</rubric>\n"
        "</outcome>"
    )


def feedback(result: str, explanation: str, iteration: int) -> str:
    """The grader's verdict as the agent's next user turn."""
    if result == "max_iterations_reached":
        return (
            f'<outcome_evaluation iteration="{iteration}" result="max_iterations_reached">\n{explanation}\n'
            "</outcome_evaluation>\nThe outcome is still not met and no further evaluations will run. Briefly"
            " acknowledge what remains unmet and stop."
        )
    return (
        f'<outcome_evaluation iteration="{iteration}" result="needs_revision">\n{explanation}\n'
        "</outcome_evaluation>\nThe grader found the outcome not yet met. Revise your work to meet the rubric."
    )
