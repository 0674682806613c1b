"""The reference toolset's definitions are built once, by one thread at a time.

pydantic builds the toolset's input models' schemas lazily and not thread-safely: a session's first turn (the
harness thread) racing a worker poll (an API thread, `WorkService` asks whether the agent has sandbox tools) failed
the turn with "'dict' object has no attribute 'rebuild'" (seen in CI under load)."""

from __future__ import annotations

import threading
import time

import pytest

from managed_agents.harness import tools
from managed_agents.harness.tools import SANDBOX_TOOLS


def test_concurrent_first_calls_build_the_toolset_once_and_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a builder that records how many threads are inside it at once
    inside = 0
    most_inside = 0
    builds = 0
    guard = threading.Lock()
    real = tools._build_sandbox_tool_definitions.__wrapped__

    def slow_build() -> dict[str, object]:
        nonlocal inside, most_inside, builds
        with guard:
            inside += 1
            builds += 1
            most_inside = max(most_inside, inside)
        time.sleep(0.05)  # widen the window the race needs
        try:
            return real()
        finally:
            with guard:
                inside -= 1

    cached = tools.cache(slow_build)
    monkeypatch.setattr(tools, "_build_sandbox_tool_definitions", cached)
    results: list[object] = []
    barrier = threading.Barrier(6)

    def first_turn() -> None:
        barrier.wait()
        results.append(tools.sandbox_tool_definitions())

    # When six threads ask for the definitions at the same moment
    threads = [threading.Thread(target=first_turn) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one built them, alone, and all got the same full toolset
    assert (builds, most_inside) == (1, 1)
    assert len(results) == 6 and all(r is results[0] for r in results)
    assert set(SANDBOX_TOOLS) <= set(results[0])  # type: ignore[arg-type]
