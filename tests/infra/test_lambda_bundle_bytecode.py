"""The Lambda asset ships bytecode compiled at build time, reproducibly (stacks/lambda_bundle.py `compile_bytecode`).

The bundle compiles with an interpreter of the function's Python version; here the step runs on a copy of the
application package with this machine's Python (the pycs then carry its version tag). The whole bundle, built as a
synth builds it, is checked by tests/infra/test_lambda_bundle_imports.py.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from stacks.lambda_bundle import REPO_ROOT, compile_bytecode

# PEP 552: the pyc header's flags word; bit 0 = hash-based, bit 1 = check the source.
UNCHECKED_HASH_FLAGS = 0b01


def build(out: Path) -> None:
    shutil.copytree(REPO_ROOT / "managed_agents", out / "managed_agents", ignore=shutil.ignore_patterns("__pycache__"))
    stale = out / "managed_agents" / "__pycache__"
    stale.mkdir()
    (stale / "stale.cpython-311.pyc").write_bytes(b"left over from a local run")
    compile_bytecode(out, sys.executable)


def pycs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.pyc"))}


def test_the_bytecode_step_compiles_every_module_as_unchecked_hash_pycs(tmp_path: Path) -> None:
    # Given a copy of the application package with a stale cache
    # When the bundle's bytecode step runs on it
    build(tmp_path)
    # Then the stale cache is gone and every module has a pyc for this interpreter that skips the source check
    assert not (tmp_path / "managed_agents" / "__pycache__" / "stale.cpython-311.pyc").exists()
    sources = sorted((tmp_path / "managed_agents").rglob("*.py"))
    assert len(sources) > 50
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source)))
        header = pyc.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, pyc
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH_FLAGS, pyc


def test_the_bytecode_is_what_python_loads_without_reading_the_source(tmp_path: Path) -> None:
    # Given a built copy whose source then changes (Lambda never changes /var/task; this shows the source is not read)
    build(tmp_path)
    (tmp_path / "managed_agents" / "lambda_init.py").write_text("raise RuntimeError('the source was compiled')\n")
    # When a fresh interpreter imports the module from there
    proc = subprocess.run(
        [sys.executable, "-c", "import managed_agents.lambda_init as m; print(m.INIT_TYPE_ENV)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it ran the build's bytecode
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "AWS_LAMBDA_INITIALIZATION_TYPE"


def test_the_bytecode_step_is_reproducible(tmp_path: Path) -> None:
    # Given two builds of the same sources in different directories, at different times
    build(tmp_path / "a")
    build(tmp_path / "b")
    # Then they hold the same pyc files, byte for byte (no mtimes; the recorded file names are the deployed ones)
    a, b = pycs(tmp_path / "a"), pycs(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 50
    assert [name for name in a if a[name] != b[name]] == []
