"""The Lambda bundle, built on the deploying machine without Docker (CDK local bundling).

One code asset serves every Python Lambda of the stack (same package, different handlers). It holds, at /var/task:

* the locked runtime dependencies (`uv.lock`: the base dependencies and the `aws` extra, nothing of `cdk` or `dev`),
  installed as manylinux aarch64 wheels for the function's Python with `uv pip install --python-platform
  --python-version --target`, so any machine builds them: wheels only (every locked dependency has arm64 wheels),
  hashes checked against the lock;
* the application package `managed_agents/` and the thin entry points `functions/`;
* bytecode of all of it, compiled once here (see `compile_bytecode`).

The dependencies are cached by content hash in `.build/lambda-deps/` (the lock, pyproject.toml, the Python version,
the platform, and whether bytecode was compiled): a synth whose lock did not change links them from there in well
under a second, and only the application code is copied and compiled again.

Needs `uv` (the one running the app: `$UV`, else PATH), and for the bytecode an interpreter of the runtime's Python
version (`find_interpreter`: uv-managed, on PATH, pyenv's, or one uv downloads). Without one, the bundle ships
sources only and says so on stderr: every cold start then compiles what it imports (about twice the import time,
bench/lambda_cold_path.py), which SnapStart functions pay once per version, at publish.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PLATFORM = "aarch64-manylinux2014"  # Lambda arm64 (Amazon Linux 2023, glibc 2.34); the wheels' platform tag
EXTRAS = ("aws",)
CODE_DIRS = ("managed_agents", "functions")
LOCK_FILES = ("pyproject.toml", "uv.lock")
CACHE_DIR = REPO_ROOT / ".build" / "lambda-deps"
CACHE_KEEP = 3  # dependency sets kept in the cache (the newest)
TASK_ROOT = "/var/task"  # where Lambda puts the asset
INTERPRETER_ENV = "MANAGED_AGENTS_BUNDLE_PYTHON"  # an interpreter of the runtime's version to compile bytecode with
_BUILDER_VERSION = "2"  # bump when what build_dependencies produces changes for the same inputs
_COMPLETE = ".complete"


class BundlingError(RuntimeError):
    """The bundle could not be built; the message says what to install or fix."""


def _say(message: str) -> None:
    print(f"lambda bundle: {message}", file=sys.stderr, flush=True)


def _uv() -> str:
    """The uv that runs the app (`uv run` says which in `$UV`; scripts/uv may have put it outside PATH), else PATH's."""
    ran = os.environ.get("UV")
    found = ran if ran and os.access(ran, os.X_OK) else shutil.which("uv")
    if found is None:
        raise BundlingError(
            "uv not found: run the app through `scripts/uv run` (cdk.json does; it installs uv when missing) or put "
            "uv on PATH (https://docs.astral.sh/uv/)"
        )
    return found


def _run(cmd: list[str], *, what: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-3000:]
        raise BundlingError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{detail}")
    return proc.stdout


@functools.cache
def find_interpreter(python: str) -> str | None:
    """An interpreter of Python `python` (e.g. "3.13") to compile the bundle's bytecode with, or None.

    In order: `$MANAGED_AGENTS_BUNDLE_PYTHON`; one uv knows (uv-managed or on PATH); pyenv's; one uv downloads
    (`uv python install`, which needs the internet)."""
    override = os.environ.get(INTERPRETER_ENV)
    if override:
        return override
    uv = _uv()

    def uv_find() -> str | None:
        proc = subprocess.run(
            [uv, "python", "find", "--no-project", python], capture_output=True, text=True, check=False, timeout=120
        )
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    found = uv_find()
    if found:
        return found
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for candidate in sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{python}.*", "bin", f"python{python}"))):
        if os.access(candidate, os.X_OK):
            return candidate
    proc = subprocess.run([uv, "python", "install", python], capture_output=True, text=True, check=False, timeout=600)
    return uv_find() if proc.returncode == 0 else None


def compile_bytecode(root: Path, interpreter: str, *, dirs: list[Path] | None = None) -> None:
    """Replace every `__pycache__` under `root` (or under `dirs` of it) with bytecode compiled once, at build time.

    /var/task is read-only: without bytecode in the asset, every cold start compiles each module it imports from
    source. `unchecked-hash` pycs hold a source hash instead of an mtime and are loaded without looking at the source;
    the file names they record are the deployed ones (`-s root -p /var/task`), and PYTHONHASHSEED=0 fixes the order of
    set constants, so the output does not depend on when or where it was built. The interpreter must be the
    function's Python version (the pyc name and magic number carry it: cpython-313).
    """
    targets = dirs or [root]
    for target in targets:
        for cache in list(target.rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    _run([*cmd, "-s", str(root), "-p", TASK_ROOT, *map(str, targets)], what="compiling bytecode", env=env)


def dependencies_key(python: str, *, bytecode: bool) -> str:
    """The content hash the cached dependency set is stored under."""
    digest = hashlib.sha256()
    for part in (_BUILDER_VERSION, python, PLATFORM, ",".join(EXTRAS), "bytecode" if bytecode else "source"):
        digest.update(part.encode() + b"\0")
    for name in LOCK_FILES:
        digest.update((REPO_ROOT / name).read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def export_requirements(dest: Path) -> Path:
    """The locked runtime dependencies (base + `aws`), with their hashes, as a requirements file."""
    extras = [arg for extra in EXTRAS for arg in ("--extra", extra)]
    _run(
        [_uv(), "export", "--frozen", "--no-dev", *extras, "--no-emit-project", "--quiet", "-o", str(dest)],
        what="exporting the locked requirements",
    )
    return dest


def build_dependencies(python: str, *, interpreter: str | None, cache: Path = CACHE_DIR) -> Path:
    """The locked dependencies installed for Lambda arm64 and Python `python` (from the cache when it has them)."""
    key = dependencies_key(python, bytecode=interpreter is not None)
    final = cache / f"py{python}-{key}"
    if (final / _COMPLETE).exists():
        os.utime(final)  # newest first when the cache is pruned
        return final
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f".building-{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    site = work / "site"
    site.mkdir(parents=True)
    requirements = export_requirements(work / "requirements.txt")
    _say(f"installing the locked dependencies for Python {python} on {PLATFORM} (cached in {final})")
    _run(
        [
            _uv(),
            "pip",
            "install",
            "--quiet",
            "--no-deps",  # exactly the lock's list
            "--only-binary",
            ":all:",
            "--python-platform",
            PLATFORM,
            "--python-version",
            python,
            "--target",
            str(site),
            "-r",
            str(requirements),
        ],
        what="installing the Lambda dependencies",
    )
    (site / ".lock").unlink(missing_ok=True)  # uv's lock of the target directory, not part of the bundle
    if interpreter is not None:
        compile_bytecode(site, interpreter)
    (site / _COMPLETE).write_text(key)
    try:
        site.rename(final)
    except OSError:  # another build of the same key finished first: same content
        if not (final / _COMPLETE).exists():
            raise
    shutil.rmtree(work, ignore_errors=True)
    _prune(cache)
    return final


def _prune(cache: Path) -> None:
    complete = (p for p in cache.iterdir() if p.is_dir() and (p / _COMPLETE).exists())
    sets = sorted(complete, key=lambda p: p.stat().st_mtime)
    for old in sets[:-CACHE_KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> object:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def build_bundle(out: Path, python: str, *, cache: Path = CACHE_DIR) -> None:
    """Build the Lambda bundle in `out` (empty or absent): the dependencies, the application code, its bytecode."""
    interpreter = find_interpreter(python)
    if interpreter is None:
        _say(
            f"no Python {python} interpreter found (nor downloaded by uv): the bundle ships sources only, and cold "
            f"starts compile what they import; set {INTERPRETER_ENV} to one to ship bytecode"
        )
    deps = build_dependencies(python, interpreter=interpreter, cache=cache)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        deps, out, copy_function=_link_or_copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns(_COMPLETE)
    )
    code = [out / name for name in CODE_DIRS]
    for name, target in zip(CODE_DIRS, code, strict=True):
        shutil.rmtree(target, ignore_errors=True)  # a dependency never provides these; ours win
        shutil.copytree(REPO_ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if interpreter is not None:
        compile_bytecode(out, interpreter, dirs=code)
