"""`managed-agents serve` freezes its heap (gc.freeze) once built, before it serves (api/server.py `freeze_heap`).

A full garbage collection over the server's ~250,000 start-up objects paused the event loop and every thread for
100-500 ms whenever a burst of requests set one off; frozen objects are never scanned."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from managed_agents import cli


def test_serve_freezes_what_it_built_before_it_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}

    def run(self: uvicorn.Server, sockets: object = None) -> None:
        seen["frozen"] = gc.get_freeze_count()  # what the server holds frozen as it starts serving

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "unused")
    gc.unfreeze()
    try:
        result = CliRunner().invoke(
            cli.app, ["serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--workers", "1"]
        )
    finally:
        gc.unfreeze()  # this test process goes on as it was
    assert result.exit_code == 0, result.output
    assert seen["frozen"] > 10_000, seen  # the modules, the runtime and the app, not a handful of objects
