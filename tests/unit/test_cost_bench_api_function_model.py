"""bench/aws_cost_model.py models the API function's billed duration from what it measures of a request: the round
trips of its AWS calls plus its own CPU time (moto's and the meter's taken out) at Lambda's CPU share for the memory;
and it charges the CPU a request's event-loop steps spend to that request alone."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.own_loop import run_on_own_loop

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_duration_is_round_trips_plus_own_cpu_at_the_memory_cpu_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import aws_cost_model

    # Given a request that spent 124 ms of CPU, 100 of them in moto's backends, and made 4 DynamoDB calls and 1 other
    req = aws_cost_model.RequestCpu("worker POST", cpu=0.124, moto=0.1, calls=Counter({"dynamodb": 4, "states": 1}))
    # Then its own CPU is 24 ms, its round trips 40 ms, and the duration follows the CPU share of the memory
    assert req.own_cpu() == pytest.approx(0.024)
    assert req.io_seconds() == pytest.approx(0.04)
    assert req.duration(1769) == pytest.approx(0.064)  # one vCPU
    assert req.duration(512) == pytest.approx(0.04 + 0.024 * 1769 / 512, abs=0.001)
    assert req.duration(256) == pytest.approx(0.04 + 0.024 * 1769 / 256, abs=0.001)
    assert req.duration(3008) == pytest.approx(0.064)  # (no more than one vCPU helps a single thread)


def test_loop_cpu_is_charged_to_the_request_whose_context_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import aws_cost_model

    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    async def request(req: aws_cost_model.RequestCpu | None, seconds: float) -> None:
        aws_cost_model._request_cpu.set(req)
        for _ in range(3):
            spin(seconds / 3)
            await asyncio.sleep(0)

    async def run(a: aws_cost_model.RequestCpu, b: aws_cost_model.RequestCpu) -> None:
        await asyncio.gather(request(a, 0.06), request(b, 0.015), request(None, 0.03))

    # Given the bench's CPU meter, and two requests interleaved on one loop with work that is no request's
    with pytest.MonkeyPatch.context() as mp:
        aws_cost_model.install_cpu_meter(mp)
        a, b = aws_cost_model.RequestCpu("a"), aws_cost_model.RequestCpu("b")
        run_on_own_loop(run(a, b))
    # Then each was charged its own steps' CPU time only (its first step too, the one that made it a request)
    assert 0.055 <= a.cpu < 0.075 and 0.012 <= b.cpu < 0.03
