"""A coordinator fanning out to subagents vs one agent doing all the turns itself (issue 17, threads).

The embedded runtime in-process with the scripted model at `--latency-ms` per request. The fan-out: a coordinator
delegates to `--subagents` subagents in one turn; each takes `--turns` model requests (a call to a tool the agent
does not have, answered at once by the platform, then the next request; the last one answers) and the coordinator
writes its answer from theirs (2 coordinator requests). The baseline: one agent taking `subagents * turns` requests
the same way. Both timed from `events.send` to the session's idle, in the same run.

Prints JSON lines: per repeat, both wall times, their ratio (goal <= 0.35 for 4 x 5 turns at 200 ms), model requests
of each (counts), and the ideal ratio if only model latency counted ((2 + turns) / (subagents * turns)); and where the
time between model requests went, from the logs' `processed_at` (a request's start is logged just before it is sent,
its end just after its response is read), in ms:
* `gaps_ms.start`: from the end of the coordinator's delegating request to each child's first request (sorted);
* `gaps_ms.child_turn` / `gaps_ms.solo_turn`: mean from one request's end to the next one's start, in a child / in the
  single agent (the per-turn cost the fan-out pays on its critical path under 4 concurrent threads, and alone);
* `gaps_ms.answer`: from the end of the last child's last request to the coordinator's next request;
* `gaps_ms.child_request` / `gaps_ms.solo_request`: mean model request (200 ms of scripted latency + the round trip).

Why 0.35 is a floor, not a target that overhead cuts can reach: with T the single agent's time per turn, C what either
run pays once (the send, the first wake, seeing the idle) and F what only the fan-out pays (its threads' start and
answer, its children's contention), ratio = (7T + F + C) / (20T + C) = 0.35 + (F + 0.65 C) / (20T + C) for 4 x 5
turns: the per-turn cost cancels out, and 0.35 needs F <= -0.65 C (children's turns cheaper than the single agent's
by more than the fan-out's own costs).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from datetime import datetime
from typing import Any

import anthropic
from _common import emit, idle_count, stack, user_message, wait_until


def _noop(name: str) -> dict[str, Any]:
    return {"content": [{"type": "tool_use", "name": name, "input": {}}]}


def _spans(events: list[Any]) -> list[tuple[datetime, datetime]]:
    """(start, end) of each model request in a log, by processed_at."""
    starts = {e.id: e.processed_at for e in events if e.type == "span.model_request_start"}
    return [(starts[e.model_request_start_id], e.processed_at) for e in events if e.type == "span.model_request_end"]


def _turn_gaps(spans: list[tuple[datetime, datetime]]) -> list[float]:
    return [(b[0] - a[1]).total_seconds() * 1000 for a, b in itertools.pairwise(spans)]


def _request_ms(spans: list[tuple[datetime, datetime]]) -> list[float]:
    return [(end - start).total_seconds() * 1000 for start, end in spans]


def _solo(client: anthropic.Anthropic, env: str, push: Any, requests: int) -> tuple[float, dict[str, float]]:
    agent = client.beta.agents.create(name="solo", model="claude-sonnet-4-6")
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env).id
    push(*[_noop("noop") for _ in range(requests - 1)], "all done")
    started = time.perf_counter()
    user_message(client, sid, "do everything")
    wait_until(lambda: idle_count(client, sid) >= 1, timeout=300, interval=0.02)
    elapsed = time.perf_counter() - started
    spans = _spans(list(client.beta.sessions.events.list(sid, limit=1000)))
    gaps = {
        "solo_turn": round(statistics.mean(_turn_gaps(spans)), 1),
        "solo_request": round(statistics.mean(_request_ms(spans)), 1),
    }
    return elapsed, gaps


def _fan_out(
    client: anthropic.Anthropic, env: str, push: Any, subagents: int, turns: int
) -> tuple[float, dict[str, Any]]:
    helpers = [client.beta.agents.create(name=f"helper{k}", model="claude-sonnet-4-6") for k in range(subagents)]
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [h.id for h in helpers]}
    )
    sid = client.beta.sessions.create(agent=lead.id, environment_id=env).id
    calls = [
        {"type": "tool_use", "name": f"delegate_to_helper{k}", "input": {"message": f"job {k}"}}
        for k in range(subagents)
    ]
    steps: list[Any] = [{"match": "fan out", "content": calls}]
    for k in range(subagents):
        # each child's requests: matched by its own message, then by the error result of its own tool
        steps.append({"match": f"job {k}", **_noop(f"noop_{k}")})
        steps += [{"match": f"'noop_{k}'", **_noop(f"noop_{k}")} for _ in range(turns - 2)]
        steps.append({"match": f"'noop_{k}'", "content": [{"type": "text", "text": f"{k} done"}]})
    steps.append({"match": "0 done", "content": [{"type": "text", "text": "everything done"}]})
    push(*steps)
    started = time.perf_counter()
    user_message(client, sid, "fan out")
    wait_until(lambda: idle_count(client, sid) >= 1, timeout=300, interval=0.02)
    elapsed = time.perf_counter() - started
    last = [e for e in client.beta.sessions.events.list(sid, limit=1000).data if e.type == "agent.message"][-1]
    assert last.content[0].text == "everything done", last  # type: ignore[union-attr]
    coordinator = _spans(list(client.beta.sessions.events.list(sid, limit=1000)))
    children = [
        _spans(list(client.beta.sessions.threads.events.list(t.id, session_id=sid, limit=1000)))
        for t in client.beta.sessions.threads.list(sid)
        if t.parent_thread_id
    ]
    delegated, answered = coordinator[0][1], coordinator[1][0]
    gaps = {
        "start": sorted(round((c[0][0] - delegated).total_seconds() * 1000, 1) for c in children),
        "child_turn": round(statistics.mean(g for c in children for g in _turn_gaps(c)), 1),
        "answer": round((answered - max(c[-1][1] for c in children)).total_seconds() * 1000, 1),
        "child_request": round(statistics.mean(r for c in children for r in _request_ms(c)), 1),
    }
    return elapsed, gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subagents", type=int, default=4)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with stack(latency_ms=args.latency_ms) as s:
        client = s.client()
        env = client.beta.environments.create(name="bench", config={"type": "cloud"}).id
        for repeat in range(args.repeats):
            before = len(s.model.requests)
            fan_s, fan_gaps = _fan_out(client, env, s.model.push, args.subagents, args.turns)
            fan_requests = len(s.model.requests) - before
            before = len(s.model.requests)
            solo_s, solo_gaps = _solo(client, env, s.model.push, args.subagents * args.turns)
            solo_requests = len(s.model.requests) - before
            emit(
                bench="threads_fanout",
                repeat=repeat,
                subagents=args.subagents,
                turns=args.turns,
                latency_ms=args.latency_ms,
                fan_out_s=round(fan_s, 3),
                solo_s=round(solo_s, 3),
                fan_out_over_solo=round(fan_s / solo_s, 3),
                ideal_ratio=round((2 + args.turns) / (args.subagents * args.turns), 3),
                fan_out_model_requests=fan_requests,
                solo_model_requests=solo_requests,
                gaps_ms={**fan_gaps, **solo_gaps},
            )


if __name__ == "__main__":
    main()
