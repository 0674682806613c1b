"""What the outcome grader adds per iteration (issue 17 item 4).

The embedded runtime in-process with the scripted model at `--latency-ms` per request. An outcome that the grader
sends back `--iterations - 1` times and then accepts is timed from `events.send` to idle; the baseline is the same
number of agent turns without an outcome (one user message each, sent as the previous turn idles) in the same run.

Prints JSON lines: per run, model requests and events per iteration (counts), and the grader's added wall time per
iteration as a ratio to one scripted model request (about 1.0 means the grader costs one model request and nothing
else), plus the outcome session's time over the baseline's.
"""

from __future__ import annotations

import argparse
import time

import anthropic
from _common import emit, idle_count, stack, user_message, wait_until


def _verdict(result: str) -> str:
    return f"<verdict>{result}</verdict><explanation>{result}</explanation>"


def _outcome_run(client: anthropic.Anthropic, agent: str, env: str, push: object, iterations: int) -> tuple[float, int]:
    sid = client.beta.sessions.create(agent=agent, environment_id=env).id
    steps: list[str] = []
    for i in range(iterations):
        steps += [f"draft {i}", _verdict("satisfied" if i == iterations - 1 else "needs_revision")]
    push(*steps)  # type: ignore[operator]
    started = time.perf_counter()
    outcome = {
        "type": "user.define_outcome",
        "description": "a draft",
        "rubric": {"type": "text", "content": "good"},
        "max_iterations": iterations,
    }
    client.beta.sessions.events.send(sid, events=[outcome])  # type: ignore[list-item]
    wait_until(lambda: idle_count(client, sid) >= 1, timeout=120)
    elapsed = time.perf_counter() - started
    events = len(client.beta.sessions.events.list(sid, limit=1000).data)
    return elapsed, events


def _baseline_run(client: anthropic.Anthropic, agent: str, env: str, push: object, turns: int) -> float:
    sid = client.beta.sessions.create(agent=agent, environment_id=env).id
    push(*[f"draft {i}" for i in range(turns)])  # type: ignore[operator]
    started = time.perf_counter()
    for i in range(turns):
        user_message(client, sid, f"turn {i}")
        wait_until(lambda n=i: idle_count(client, sid) >= n + 1, timeout=120)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with stack(latency_ms=args.latency_ms) as s:
        client = s.client()
        agent, env = s.agent_env(client)
        for repeat in range(args.repeats):
            before = len(s.model.requests)
            outcome_s, events = _outcome_run(client, agent, env, s.model.push, args.iterations)
            requests = len(s.model.requests) - before
            baseline_s = _baseline_run(client, agent, env, s.model.push, args.iterations)
            added = (outcome_s - baseline_s) / args.iterations
            emit(
                bench="outcome_grader_latency",
                repeat=repeat,
                iterations=args.iterations,
                latency_ms=args.latency_ms,
                model_requests_per_iteration=requests / args.iterations,
                events_per_iteration=round(events / args.iterations, 2),
                grader_added_per_iteration_in_model_requests=round(added / (args.latency_ms / 1000), 2),
                outcome_over_baseline=round(outcome_s / baseline_s, 2),
            )


if __name__ == "__main__":
    main()
