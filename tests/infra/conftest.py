"""Synthesized templates of the CDK app (app.py), shared by the infra tests.

`default_synth` runs `python app.py` exactly as a user or CI would (a subprocess, offline, outdir in a tmp dir) once
per test session; a failed synth, including any unacknowledged cdk-nag finding, fails every test that uses it.
`synth_variant` builds the app in-process with extra context, for the settings that change the template.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_NAME = "ManagedAgents"
JSII_ENV = {
    "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
}


@dataclass
class Synth:
    outdir: Path
    template: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{STACK_NAME}.template.json"

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.template["Resources"].items() if r["Type"] == type_}

    def one(self, type_: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(type_)
        assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
        return next(iter(found.items()))


def _load(outdir: Path) -> Synth:
    template = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
    metadata = json.loads((outdir / f"{STACK_NAME}.metadata.json").read_text())
    return Synth(outdir=outdir, template=template, metadata=metadata)


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk-out")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "AWS_"))}
    env.update(JSII_ENV, CDK_OUTDIR=str(outdir))
    proc = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"python app.py failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return _load(outdir)


@pytest.fixture(scope="session")
def synth_variant(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, Any]], Synth]:
    """Synthesize the app in-process with `context` (cdk-nag included); one call per distinct context."""
    cache: dict[str, Synth] = {}

    def build(context: dict[str, Any]) -> Synth:
        key = json.dumps(context, sort_keys=True)
        if key not in cache:
            os.environ.update(JSII_ENV)
            import aws_cdk as cdk

            from app import build_app

            outdir = tmp_path_factory.mktemp("cdk-variant")
            app, _ = build_app(cdk.App(outdir=str(outdir), context=context))
            app.synth()
            cache[key] = _load(outdir)
        return cache[key]

    return build
