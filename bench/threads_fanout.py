"""A coordinator fanning out to subagents vs one agent doing all the turns itself (issue 17, threads).

The embedded runtime in-process with the scripted model at `--latency-ms` per request. The fan-out: a coordinator
delegates to `--subagents` subagents in one turn; each takes `--turns` model requests (a call to a tool the agent
does not have, answered at once by the platform, then the next request; the last one answers) and the coordinator
writes its answer from theirs (2 coordinator requests). The baseline: one agent taking `subagents * turns` requests
the same way. Both timed from `events.send` to the session's idle, in the same run.

Prints JSON lines: per repeat, both wall times, their ratio (goal <= 0.35 for 4 x 5 turns at 200 ms), model requests
of each (counts), and the ideal ratio if only model latency counted ((2 + turns) / (subagents * turns)).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anthropic
from _common import emit, idle_count, stack, user_message, wait_until


def _noop(name: str) -> dict[str, Any]:
    return {"content": [{"type": "tool_use", "name": name, "input": {}}]}


def _solo(client: anthropic.Anthropic, env: str, push: Any, requests: int) -> float:
    agent = client.beta.agents.create(name="solo", model="claude-sonnet-4-6")
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env).id
    push(*[_noop("noop") for _ in range(requests - 1)], "all done")
    started = time.perf_counter()
    user_message(client, sid, "do everything")
    wait_until(lambda: idle_count(client, sid) >= 1, timeout=300, interval=0.02)
    return time.perf_counter() - started


def _fan_out(client: anthropic.Anthropic, env: str, push: Any, subagents: int, turns: int) -> float:
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
    return elapsed


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
            fan_s = _fan_out(client, env, s.model.push, args.subagents, args.turns)
            fan_requests = len(s.model.requests) - before
            before = len(s.model.requests)
            solo_s = _solo(client, env, s.model.push, args.subagents * args.turns)
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
            )


if __name__ == "__main__":
    main()
