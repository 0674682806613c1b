"""Session start to first tool result, with a 5 MB skill on the agent vs none (embedded, cloud sandbox).

Measured from `events.send(user.message)` on a new cloud session to the first `agent.tool_result` in its log (the
sandbox's worker downloads the agent's skills before it runs any tool), for `bash ls skills`, alternating agents
with and without the skill so a noisy moment of this shared machine hits both. The skill's bytes are random (the
zip cannot shrink them). Prints the medians and their ratio.

    uv run python bench/skill_first_tool_call.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from _common import emit, stack, user_message, wait_until

SKILL_BYTES = 5 * 1024 * 1024
PARTS = 5


def first_tool_result(client: Any, model: Any, agent_id: str, env_id: str, *, listed: str = "") -> float:
    sid = client.beta.sessions.create(agent=agent_id, environment_id=env_id).id
    model.push({"content": [{"type": "tool_use", "id": "toolu_ls", "name": "bash", "input": {"command": "ls skills"}}]})
    model.push("done")
    t0 = time.perf_counter()
    user_message(client, sid, "go")

    def result() -> bool:
        return bool(client.beta.sessions.events.list(sid, limit=10, types=["agent.tool_result"]).data)

    wait_until(result, timeout=300, interval=0.01)
    elapsed = time.perf_counter() - t0
    out = client.beta.sessions.events.list(sid, limit=10, types=["agent.tool_result"]).data[0]
    text = "".join(getattr(b, "text", "") for b in out.content or [])
    assert listed in text, f"the sandbox's skills folder does not list {listed!r}: {text[:200]!r}"
    wait_until(lambda: client.beta.sessions.events.list(sid, limit=10, types=["session.status_idle"]).data, 60)
    client.beta.sessions.delete(sid)  # stops its sandbox
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with stack() as s:
        client = s.client()
        chunk = SKILL_BYTES // PARTS
        files = [("big-skill/SKILL.md", b"---\nname: big-skill\ndescription: A large skill.\n---\n")]
        files += [(f"big-skill/data/part{i}.bin", os.urandom(chunk)) for i in range(PARTS)]
        skill = client.beta.skills.create(files=files)
        tools = [{"type": "agent_toolset_20260401"}]
        with_skill = client.beta.agents.create(
            name="b", model="m", tools=tools, skills=[{"type": "custom", "skill_id": skill.id}]
        ).id
        without = client.beta.agents.create(name="b", model="m", tools=tools).id
        env = client.beta.environments.create(name="bench", config={"type": "cloud"}).id
        first_tool_result(client, s.model, without, env)  # warm: the first sandbox start pays imports
        times: dict[str, list[float]] = {"skill": [], "none": []}
        for _ in range(args.runs):
            times["skill"].append(first_tool_result(client, s.model, with_skill, env, listed="big-skill"))
            times["none"].append(first_tool_result(client, s.model, without, env))
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        emit(
            bench="skill_first_tool_call",
            skill_bytes=SKILL_BYTES,
            runs=args.runs,
            isolation=s.rt.provisioner.isolation if s.rt.provisioner else None,
            with_skill_ms=round(med["skill"], 1),
            without_skill_ms=round(med["none"], 1),
            added_ms=round(med["skill"] - med["none"], 1),
            ratio=round(med["skill"] / med["none"], 3),
        )


if __name__ == "__main__":
    main()
