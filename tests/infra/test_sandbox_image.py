"""The Fargate sandbox image (sandbox_task/Dockerfile) installs the locked SDK and starts as root to install packages.

No Docker engine here: the Dockerfile's content is checked, and its lock step (`uv export`) is run on the repo's lock
as the image's first stage runs it, so the SDK version the image installs is the one the tests run with.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

from stacks.constructs.sandbox import SANDBOX_IMAGE_EXCLUDE
from stacks.lambda_bundle import REPO_ROOT, _uv

DOCKERFILE = REPO_ROOT / "sandbox_task" / "Dockerfile"


def instructions() -> list[str]:
    """The Dockerfile's instructions, comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in DOCKERFILE.read_text().splitlines() if not ln.startswith("#")))
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def test_the_image_installs_anthropic_under_the_locks_constraints_only() -> None:
    steps = instructions()
    # The first stage exports the lock as constraints; the second installs anthropic under them, unpinned nowhere
    assert "COPY pyproject.toml uv.lock /src/" in steps
    assert any("uv export --frozen --no-dev --no-emit-project" in s and "-o /constraints.txt" in s for s in steps)
    installs = [s for s in steps if "pip install" in s and "anthropic" in s]
    assert len(installs) == 1 and "--constraint /opt/sandbox/constraints.txt anthropic" in installs[0]
    assert not any(re.search(r"anthropic\s*[<>=~!]", s) for s in steps)
    # And the build context holds the lock (the CDK asset's allowlist)
    assert {"!pyproject.toml", "!uv.lock"} <= set(SANDBOX_IMAGE_EXCLUDE)


def test_the_locks_constraints_pin_the_sdk_version_the_tests_run_with(tmp_path: Path) -> None:
    # Given only what the image's lock stage copies
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    uv = _uv()  # ($UV under `scripts/uv run`, where PATH may have none)
    # When its export runs there
    subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--quiet", "-o", "c.txt"],
        cwd=tmp_path,
        check=True,
        timeout=120,
    )
    # Then anthropic is pinned at the installed (locked) version
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", (tmp_path / "c.txt").read_text(), re.M))
    assert pins["anthropic"] == version("anthropic")


def test_the_container_starts_as_root_and_names_the_user_the_tools_run_as() -> None:
    steps = instructions()
    # No USER instruction: the entrypoint installs packages as root, then drops to MANAGED_AGENTS_SANDBOX_USER
    assert not [s for s in steps if s.startswith("USER ")]
    env = next(s for s in steps if s.startswith("ENV "))
    assert "MANAGED_AGENTS_SANDBOX_USER=sandbox" in env
    assert any("useradd --create-home --uid 1000" in s and " sandbox" in s for s in steps)
    assert any("chown sandbox:sandbox /workspace" in s for s in steps)
    # And apt reaches Debian over HTTPS (limited networking allows TCP 443 only)
    assert any("s|http://deb.debian.org|https://deb.debian.org|g" in s for s in steps)
    assert steps[-1] == 'ENTRYPOINT ["python", "/opt/sandbox/entrypoint.py"]'


def test_the_image_gives_the_sandbox_user_a_memory_mount_and_turns_memory_on() -> None:
    steps = instructions()
    # The worker mounts the session's memory stores at /mnt/memory/<slug> as `sandbox`, once root is dropped
    assert any("mkdir -p" in s and "/mnt/memory" in s and "chown sandbox:sandbox" in s for s in steps)
    chown = next(s for s in steps if "chown sandbox:sandbox" in s).split("chown sandbox:sandbox", 1)[1]
    assert "/mnt/memory" in chown
    assert any(s.startswith("ENV ") and "MANAGED_AGENTS_SANDBOX_MEMORY=1" in s for s in steps)


def test_the_image_runs_the_init_program_with_git() -> None:
    steps = instructions()
    # The init container (same image, `python /opt/sandbox/materials.py`) clones with git
    assert any("apt-get install" in s and " git " in f"{s} " for s in steps)
    assert "COPY managed_agents/sandbox/entrypoint.py managed_agents/sandbox/materials.py /opt/sandbox/" in steps
    assert "!managed_agents/sandbox/materials.py" in SANDBOX_IMAGE_EXCLUDE
    # And the session volume's mount point exists in the image
    assert any("mkdir -p" in s and "/mnt/session" in s for s in steps)
