"""bench/aws_cost_model.py counts each API request once, the event send answered by api/hot_routes.py included (it
never reaches the routers the meter wraps, so the bench stopped counting the sends and their time)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from managed_agents.api.hot_routes import HotRoutes
from tests.own_loop import run_on_own_loop

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_a_send_answered_by_the_hot_route_is_metered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the cost bench's API meter installed over a hot route whose answer is a stub
    monkeypatch.syspath_prepend(str(BENCH))
    import aws_cost_model

    answered: list[str] = []

    async def answer(self: Any, route: Any, sid: str, scope: Any, receive: Any, send: Any, headers: Any) -> None:
        answered.append(sid)

    monkeypatch.setattr(HotRoutes, "_send_events", answer)
    meter = aws_cost_model.Meter()
    aws_cost_model.install_api_meter(monkeypatch, meter)
    # When the worker's send is answered there
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/sessions/sesn_011CZabcdefghijklmnop/events",
        "headers": [(b"user-agent", b"AsyncAnthropic/Python 0.99")],
    }
    run_on_own_loop(HotRoutes._send_events(object(), None, "sesn_1", scope, None, None, None))
    # Then it was answered and counted once, as the worker's send
    assert answered == ["sesn_1"]
    assert meter.api_requests == {"worker POST /v1/sessions/{id}/events": 1}
    sys.modules.pop("aws_cost_model", None)
