"""Session creation rate through the official SDK: sessions per second with 1 and with 8 client threads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
from _common import emit, stack

PER_THREAD = 200


def main() -> None:
    with stack() as s:
        setup = s.client()
        agent_id, env_id = s.agent_env(setup)
        for threads in (1, 8):
            clients = [s.client() for _ in range(threads)]
            for c in clients:  # warm-up: connection per client
                c.beta.sessions.create(agent=agent_id, environment_id=env_id)

            def create_many(i: int, clients: list[anthropic.Anthropic] = clients) -> int:
                for _ in range(PER_THREAD):
                    clients[i].beta.sessions.create(agent=agent_id, environment_id=env_id)
                return PER_THREAD

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=threads) as pool:
                total = sum(pool.map(create_many, range(threads)))
            wall = time.perf_counter() - t0
            emit(
                bench="session_create_rate",
                client_threads=threads,
                sessions=total,
                wall_s=round(wall, 3),
                sessions_per_s=round(total / wall, 1),
            )


if __name__ == "__main__":
    main()
