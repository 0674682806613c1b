"""Synthesized templates of the CDK app (app.py), shared by the infra tests.

`default_synth` runs `python app.py` exactly as a user or CI would (a subprocess, offline, outdir in a tmp dir) once
per test run; a failed synth, including any unacknowledged cdk-nag finding, fails every test that uses it.
`synth_variant` builds the app in-process with extra context, for the settings that change the template.

A synth takes ~25 s of CPU (most of it in jsii's node process). Under xdist every worker is its own process, so each
synth is made once per run by whichever worker needs it first, in a directory all workers share (the run's basetemp
root), and read by the others: tests only read a synth's outdir.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's directory for synths: under xdist the workers' basetemps (popen-gwN) share a parent unique to the
    run; without xdist, the basetemp itself."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "synths"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _synth_once(root: Path, key: str, make: Callable[[Path], None]) -> Synth:
    """The synth named `key` under `root`, made by `make(outdir)` unless a worker already made it; a synth that failed
    is tried again by the next worker that needs it (and fails its tests there too)."""
    outdir = root / key
    done = root / f"{key}.done"
    with _exclusive(root / f"{key}.lock"):
        if not done.exists():
            shutil.rmtree(outdir, ignore_errors=True)
            outdir.mkdir()
            make(outdir)
            done.touch()
    return _load(outdir)


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    def make(outdir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "AWS_"))}
        env.update(JSII_ENV, CDK_OUTDIR=str(outdir))
        proc = subprocess.run(
            [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, f"python app.py failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"

    return _synth_once(_shared_root(tmp_path_factory), "default", make)


@pytest.fixture(scope="session")
def synth_variant(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, Any]], Synth]:
    """Synthesize the app in-process with `context` (cdk-nag included); once per distinct context and run."""
    cache: dict[str, Synth] = {}
    root = _shared_root(tmp_path_factory)

    def make_with(context: dict[str, Any]) -> Callable[[Path], None]:
        def make(outdir: Path) -> None:
            os.environ.update(JSII_ENV)
            import aws_cdk as cdk

            from app import build_app

            app, _ = build_app(cdk.App(outdir=str(outdir), context=context))
            app.synth()

        return make

    def build(context: dict[str, Any]) -> Synth:
        key = json.dumps(context, sort_keys=True)
        if key not in cache:
            name = "variant-" + hashlib.sha256(key.encode()).hexdigest()[:16]
            cache[key] = _synth_once(root, name, make_with(context))
        return cache[key]

    return build


# Every non-default context setting the infra tests check, in one synth: a synth is ~25 s of CPU, and the settings are
# independent (each test reads what its own setting changes), so one "everything set" variant stands for the ones
# each test once made for itself (limited networking, destroy, Spot, Container Insights).
CONTEXT_VARIANT: dict[str, Any] = {
    "prefix": "acme-agents",
    "sandboxNetworking": "limited",
    "maxTurnsPerExecution": "7",  # -c values arrive as strings
    "removalPolicy": "destroy",
    "logRetentionDays": 7,
    "sandboxCpu": 2048,
    "sandboxMemoryMb": 4096,
    "harness": {"max_tokens": 16000},
    "anthropicBaseUrl": "https://llm.example.internal",
    "toolHeartbeatSeconds": 120,
    "sandboxSpot": "true",
    "containerInsights": "true",
}


@pytest.fixture(scope="session")
def context_variant(synth_variant: Callable[[dict[str, Any]], Synth]) -> Synth:
    return synth_variant(CONTEXT_VARIANT)
