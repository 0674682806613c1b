"""The Lambda bundle finds the uv that runs the app even when it is not on PATH (stacks/lambda_bundle.py `_uv`).

`scripts/uv` (what cdk.json runs) installs uv into the checkout's `.uv/` on a machine without one, so PATH has no uv
while the app builds its bundle; `uv run` names itself in `$UV`. Found with the real CDK CLI on a fresh clone."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stacks.lambda_bundle import BundlingError, _uv


def test_the_uv_that_runs_the_app_is_used_when_path_has_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a uv outside PATH, named by `uv run` in $UV
    uv = tmp_path / ".uv" / "bin" / "uv"
    uv.parent.mkdir(parents=True)
    uv.write_text("#!/bin/sh\n")
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("UV", str(uv))
    # When the bundle looks for uv / Then it takes that one
    assert _uv() == str(uv)


def test_without_any_uv_the_error_says_how_to_run_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given neither $UV nor a uv on PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("UV", raising=False)
    # When the bundle looks for uv / Then the error names scripts/uv
    with pytest.raises(BundlingError, match="scripts/uv run"):
        _uv()
