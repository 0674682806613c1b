"""Model requests a session makes from crossing the compaction threshold to idle (issue 13 item 1).

The embedded runtime in-process with the scripted model (echo fallback, so a runaway is never cut short by an
exhausted script), compaction threshold at its minimum (1,000 tokens). A first turn's reply reports a context of
5,000 tokens; every request after the user's next message is counted until the session idles, or until `--seconds`
pass (then `reached_idle` is false: the runaway the issue reports, ~5,000 compactions in 40 s before the fix).

Scenarios:
* `compacts`: the summary brings the context under the threshold (the echo model's own usage estimate);
* `never_fits`: every reply reports 5,000 tokens, so compacting never helps; three user messages in a row.

Prints one JSON line per scenario and message: requests, compactions, whether the session reached idle.
"""

from __future__ import annotations

import argparse
import time

import anthropic
from _common import emit, stack, user_message, wait_until

OVER = {"usage": {"input_tokens": 5000}}


def _compactions(client: anthropic.Anthropic, sid: str) -> int:
    pages = client.beta.sessions.events.list(sid, limit=1000, types=["agent.thread_context_compacted"])
    return sum(1 for _ in pages)  # every page


def run(scenario: str, seconds: float) -> None:
    with stack(compaction_threshold_tokens=1000) as s:
        client = s.client()
        agent, env = s.agent_env(client)
        sid = client.beta.sessions.create(agent=agent, environment_id=env).id
        s.model.push({"content": [{"type": "text", "text": "first answer"}], **OVER})
        if scenario == "never_fits":
            s.model.push(*[{"content": [{"type": "text", "text": "still large"}], **OVER}] * 100_000)
        user_message(client, sid, "first question")
        wait_until(lambda: client.beta.sessions.retrieve(sid).status == "idle" and s.model.requests, timeout=30)
        for n in range(3 if scenario == "never_fits" else 1):
            before, compacted = len(s.model.requests), _compactions(client, sid)
            user_message(client, sid, f"question {n + 2}")
            deadline = time.monotonic() + seconds
            idle = False
            while time.monotonic() < deadline:
                time.sleep(0.05)
                if client.beta.sessions.retrieve(sid).status == "idle":
                    idle = True
                    break
            emit(
                bench="compaction_model_requests",
                scenario=scenario,
                message=n + 2,
                requests_from_crossing_to_idle=len(s.model.requests) - before,
                compactions=_compactions(client, sid) - compacted,
                reached_idle=idle,
                seconds_cap=seconds,
            )
            if not idle:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="stop waiting for idle after this long")
    args = parser.parse_args()
    for scenario in ("compacts", "never_fits"):
        run(scenario, args.seconds)


if __name__ == "__main__":
    main()
