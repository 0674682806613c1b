"""Time from a session's first message to its first tool result with a 50 MB private repository to clone (served by
`git http-backend` on loopback behind a token check) vs no resource, same run, embedded server with bubblewrap.

    uv run python bench/repository_first_tool_call.py [--mb 50] [--sessions 3]

The repository's content is random (incompressible), so the clone moves about `--mb` MB. Prints the medians and the
ratio with / without.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, stack, user_message, wait_until

from managed_agents.testing.git_server import GitHttpServer, make_repository

TOKEN = "bench-token"


def first_result_seconds(sessions: int, resources: list[dict[str, Any]]) -> list[float]:
    out = []
    with stack() as s:
        client = s.client()
        agent = client.beta.agents.create(
            name="bench", model="claude-sonnet-4-6", tools=[{"type": "agent_toolset_20260401"}]
        )
        env = client.beta.environments.create(name="bench", config={"type": "cloud"})
        for i in range(sessions):
            sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=resources).id
            step = {"type": "tool_use", "id": f"toolu_{i}", "name": "bash", "input": {"command": "ls /workspace"}}
            s.model.push({"content": [step]}, "done")
            t0 = time.perf_counter()
            user_message(client, sid, "go")
            wait_until(
                lambda sid=sid: client.beta.sessions.events.list(sid, types=["agent.tool_result"]).data, timeout=300
            )
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "git"
        files = {f"blob{i}.bin": os.urandom(1024 * 1024) for i in range(args.mb)}
        make_repository(root, "big.git", files)
        with GitHttpServer(root, token=TOKEN) as git:
            repo = [{"type": "github_repository", "url": git.url("big.git"), "authorization_token": TOKEN}]
            none = first_result_seconds(args.sessions, [])
            cloned = first_result_seconds(args.sessions, repo)
    n, c = statistics.median(none), statistics.median(cloned)
    emit(
        bench="repository_first_tool_call",
        repo_mb=args.mb,
        sessions=args.sessions,
        no_resource_s=round(n, 3),
        with_repo_s=round(c, 3),
        ratio=round(c / n, 2),
        added_s=round(c - n, 3),
    )


if __name__ == "__main__":
    main()
