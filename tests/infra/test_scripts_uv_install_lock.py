"""scripts/uv installs uv once when several start at once on a fresh checkout (the README's scripted model and server
in two terminals): the others wait for that install and use it. Run with a stand-in `python3` whose `venv` and
`pip install uv` take a second and count the installs (the real ones need the package index), on a PATH that has
nothing else of Python or uv."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("sh", "mkdir", "rmdir", "rm", "find", "sleep", "dirname", "cp", "chmod", "cat")
FAKE_PYTHON = """#!/bin/sh
# python3 -m venv DIR | DIR/bin/python -m pip install --quiet uv | python3 -m pip install --quiet --user uv
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0
fi
if [ "$1 $2 $3" = "-m pip install" ]; then
  case "$*" in *--user*) exit 1 ;; esac
  sleep 1
  echo install >> "$INSTALLS"
  bin="$(dirname "$0")"
  printf '#!/bin/sh\\necho "stand-in uv $*"\\n' > "$bin/uv"
  chmod +x "$bin/uv"
  exit 0
fi
exit 2
"""


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "uv", root / "scripts" / "uv")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed on this machine"
        (bin_dir / tool).symlink_to(found)
    python = bin_dir / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "INSTALLS": str(tmp_path / "installs")}
    return root, env


def test_three_at_once_install_uv_once_and_all_run_it(checkout: tuple[Path, dict[str, str]]) -> None:
    root, env = checkout
    # When three scripts/uv start at once on a checkout without uv
    runs = [
        subprocess.Popen(
            [str(root / "scripts" / "uv"), "run", f"job{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outs = [r.communicate(timeout=60) for r in runs]
    # Then each ran uv, uv was installed once, and no lock is left behind
    assert [r.returncode for r in runs] == [0, 0, 0], outs
    assert sorted(o for o, _ in outs) == [f"stand-in uv run job{i}\n" for i in range(3)]
    assert Path(env["INSTALLS"]).read_text().splitlines() == ["install"]
    assert not (root / ".uv-install.lock").exists()


def test_a_lock_left_by_a_killed_install_is_taken_over(checkout: tuple[Path, dict[str, str]]) -> None:
    root, env = checkout
    # Given the lock of an install killed 11 minutes ago
    lock = root / ".uv-install.lock"
    lock.mkdir()
    old = lock.stat().st_mtime - 11 * 60
    os.utime(lock, (old, old))
    # When scripts/uv runs, then it installs uv and runs it
    uv = str(root / "scripts" / "uv")
    done = subprocess.run([uv, "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "stand-in uv --version\n"
    assert not lock.exists()
