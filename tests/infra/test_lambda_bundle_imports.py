"""Every Lambda of the synthesized stack imports its handler from the real bundle alone, as Lambda would at init.

moto cannot see packaging (testing.md, "What moto cannot see"): a handler that imports something the bundle lacks
fails only on AWS, where SnapStart runs the init at version publish and the stack rolls back. So:

* the bundle is the one `python app.py` built for `default_synth` (stacks/lambda_bundle.py: manylinux aarch64 wheels
  for Python 3.13, not runnable here);
* its twin for this machine: host wheels of the same distributions at the same versions (names and versions read
  from the bundle's `*.dist-info`), then the bundle's own code (every file no distribution's RECORD lists) on top;
* each function's handler imported with `python -S -P` (no site-packages, no current directory: the twin alone),
  the function's environment from the template (intrinsics resolved to plausible values), Lambda's own variables and
  `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`, so the SnapStart priming runs too.

The interpreter is this machine's (3.11), not the runtime's; the distributions and our code are the bundle's.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stacks.asl import render
from stacks.lambda_bundle import _uv
from tests.infra.conftest import Synth

pytestmark = pytest.mark.slow

REGION, ACCOUNT = "us-east-1", "123456789012"
PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
UVICORN_TARGET = re.compile(r"uvicorn\s+([\w.]+):(\w+)")


@dataclass(frozen=True)
class Function:
    logical_id: str
    module: str
    attribute: str
    environment: dict[str, str]
    runner: str | None = None  # the module a script handler runs the app with (`python -m uvicorn`)


def bundle_dir(synth: Synth, function: Mapping[str, Any]) -> Path:
    """The asset directory of a function's code (its S3 key is `<asset hash>.zip`)."""
    key = function["Properties"]["Code"]["S3Key"]
    asset_hash = str(render(key, lambda node: "")).removesuffix(".zip")
    manifest = json.loads((synth.outdir / "ManagedAgents.assets.json").read_text())
    return synth.outdir / manifest["files"][asset_hash]["source"]["path"]


def plausible(template: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    """A value of the kind a Ref/GetAtt resolves to in AWS (names, ARNs, ids), made from the logical id."""
    if "Ref" in node:
        name = str(node["Ref"])
        if name in PSEUDO:
            return PSEUDO[name]
        kind = template["Resources"][name]["Type"]
        arn = {
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf",
            "AWS::Lambda::Alias": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:live",
            "AWS::ECS::TaskDefinition": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{name}:1",
        }
        return arn.get(kind, name.lower() if kind == "AWS::S3::Bucket" else name)
    target, attribute = node["Fn::GetAtt"]
    if attribute == "GroupId":
        return f"sg-{abs(hash(target)) % 10**8:08d}"
    return f"arn:aws:{template['Resources'][target]['Type'].split('::')[1].lower()}:{REGION}:{ACCOUNT}:{target}"


def functions(synth: Synth, bundle: Path) -> list[Function]:
    out = []
    for lid, resource in sorted(synth.resources("AWS::Lambda::Function").items()):
        props = resource["Properties"]
        handler = props["Handler"]
        if handler.endswith(".sh"):  # the API: Lambda Web Adapter runs the script, which serves an ASGI app
            script = bundle / handler
            assert os.access(script, os.X_OK), f"{handler} is not executable in the bundle"
            match = UVICORN_TARGET.search(script.read_text())
            assert match, f"{handler} names no uvicorn app"
            module, attribute = match.groups()
        else:
            module, attribute = handler.rsplit(".", 1)
        variables = props.get("Environment", {}).get("Variables", {})
        env = {k: render(v, lambda node: plausible(synth.template, node)) for k, v in variables.items()}
        out.append(Function(lid, module, attribute, env, "uvicorn" if handler.endswith(".sh") else None))
    return out


def distributions(bundle: Path) -> dict[str, str]:
    """`{normalized name: version}` of every distribution in the bundle, from its `*.dist-info/METADATA`."""
    found = {}
    for info in bundle.glob("*.dist-info"):
        headers = dict(
            line.split(": ", 1) for line in (info / "METADATA").read_text().splitlines() if ": " in line[:40]
        )
        found[re.sub(r"[-_.]+", "-", headers["Name"]).lower()] = headers["Version"]  # PEP 503 names
    return found


def recorded_files(bundle: Path) -> set[Path]:
    paths = set()
    for record in bundle.glob("*.dist-info/RECORD"):
        with record.open(newline="") as f:
            paths.update((bundle / row[0]).resolve() for row in csv.reader(f) if row)
    return paths


@pytest.fixture(scope="module")
def twin(default_synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the bundle, its twin for this machine); see the module docstring."""
    (_, function), *_ = sorted(default_synth.resources("AWS::Lambda::Function").items())
    bundle = bundle_dir(default_synth, function)
    dists = distributions(bundle)
    twin = tmp_path_factory.mktemp("bundle-twin")
    uv = _uv()  # the uv the stack's bundling used ($UV under `scripts/uv run`, where PATH may have none)
    pins = [f"{name}=={version}" for name, version in sorted(dists.items())]
    proc = subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--python",
            sys.executable,
            "--target",
            str(twin),
            *pins,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    recorded = recorded_files(bundle)
    for path in bundle.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts or ".dist-info" in str(path.relative_to(bundle)):
            continue
        if path.resolve() not in recorded:
            target = twin / path.relative_to(bundle)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return bundle, twin


def test_every_function_shares_the_one_bundle_of_locked_wheels_and_our_code(
    default_synth: Synth, twin: tuple[Path, Path]
) -> None:
    bundle, _ = twin
    # Every function's code is the same asset
    assert {bundle_dir(default_synth, f) for f in default_synth.resources("AWS::Lambda::Function").values()} == {bundle}
    # It holds the X-Ray SDK Powertools' Tracer needs, manylinux aarch64 builds of the compiled dependencies, for 3.13
    dists = distributions(bundle)
    assert {"aws-xray-sdk", "aws-lambda-powertools", "boto3", "pydantic", "anthropic"} <= set(dists)
    assert list(bundle.glob("pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so"))
    assert not list(bundle.rglob("*x86_64*.so"))
    # And what no distribution installed is exactly our code: the application package and the entry points
    recorded = recorded_files(bundle)
    own = {
        p.relative_to(bundle).parts[0]
        for p in bundle.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".dist-info" not in str(p) and p.resolve() not in recorded
    }
    assert own == {"managed_agents", "functions"}


def test_every_handler_imports_from_the_bundle_alone_at_a_snapstart_init(
    default_synth: Synth, twin: tuple[Path, Path]
) -> None:
    bundle, root = twin

    def import_handler(fn: Function) -> tuple[Function, subprocess.CompletedProcess[str]]:
        # Given the function's environment as Lambda sets it at a SnapStart init
        env = {
            **fn.environment,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(root),
            "LAMBDA_TASK_ROOT": str(root),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_SESSION_TOKEN": "token",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        # When a bare interpreter (no site-packages, no current directory) imports its handler from the twin
        code = (
            "import importlib, sys\n"
            f"{fn.runner and f'importlib.import_module({fn.runner!r})'}\n"
            f"module = importlib.import_module({fn.module!r})\n"
            f"assert callable(getattr(module, {fn.attribute!r})) or {fn.attribute!r} == 'app'\n"
            "outside = sorted(m.__file__ for m in list(sys.modules.values())\n"
            "    if getattr(m, '__file__', None) and 'site-packages' in m.__file__)\n"
            "assert not outside, outside\n"
            "print('ok')\n"
        )
        cmd = [sys.executable, "-S", "-P", "-c", code]
        return fn, subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=180, check=False)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(import_handler, functions(default_synth, bundle)))
    # Then each imports, priming included, with nothing from this machine's site-packages
    checked = []
    for fn, proc in results:
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", f"{fn.logical_id} ({fn.module}):\n{proc.stderr}"
        checked.append(fn.module)
    assert len(checked) == len(default_synth.resources("AWS::Lambda::Function")) >= 9
