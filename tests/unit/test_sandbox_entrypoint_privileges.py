"""The sandbox entrypoint installs packages as root, then drops to the image's user (sandbox/entrypoint.py).

The Fargate image starts it as root with MANAGED_AGENTS_SANDBOX_USER=sandbox (sandbox_task/Dockerfile); the embedded
sandboxes start it as whoever runs the server.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from managed_agents.adapters.aws.ecs_sandbox_provisioner import encode_packages
from managed_agents.sandbox import entrypoint
from managed_agents.sandbox.entrypoint import decode_packages, system_packages

ENTRYPOINT = Path(entrypoint.__file__)


def test_debian_packages_come_first_with_the_managers_the_image_lacks() -> None:
    # Given an environment listing apt, npm and go packages, on an image with go but neither node nor npm
    packages: dict[str, object] = {"apt": ["ripgrep"], "npm": ["left-pad"], "go": ["x/y@latest"], "pip": ["rich"]}
    # Then the apt list comes first, then the Debian packages of the missing managers only
    assert system_packages(packages, have=lambda tool: tool == "go") == ["ripgrep", "nodejs", "npm"]
    assert system_packages({"pip": ["rich"]}, have=lambda tool: False) == []


def test_packages_round_trip_plain_or_compressed() -> None:
    short = {"pip": ["rich"]}
    long = {"pip": [f"package-number-{i}" for i in range(400)], "apt": ["ripgrep"]}
    assert encode_packages(short) == json.dumps(short, separators=(",", ":"))
    packed = encode_packages(long)
    assert packed.startswith(entrypoint.PACKED_PACKAGES_PREFIX) and len(packed) < len(json.dumps(long)) / 3
    assert decode_packages(encode_packages(short)) == short and decode_packages(packed) == long


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(ENTRYPOINT.parents[2])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_apt_packages_are_refused_with_a_reason_when_not_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a sandbox process that is not root (an embedded sandbox)
    monkeypatch.setattr(entrypoint.os, "geteuid", lambda: 1000)
    # When it installs an environment's apt packages, Then it stops with the packages exit code and says why (apt
    # would only print its own permission errors)
    with pytest.raises(SystemExit) as stopped:
        entrypoint.install_packages({"apt": ["ripgrep"]}, str(tmp_path))
    assert stopped.value.code == entrypoint.EXIT_PACKAGES
    assert "apt needs root, and this sandbox runs as uid 1000" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (the Fargate container starts as root)")
def test_as_root_the_workdir_goes_to_the_user_and_root_is_given_up_for_good(tmp_path: Path) -> None:
    # Given a working directory with what root installed, and the image's user setting (nobody stands in for it)
    workdir = tmp_path / "workspace"
    (workdir / ".packages" / "pip").mkdir(parents=True)
    (workdir / ".packages" / "pip" / "mod.py").write_text("x = 1\n")
    workdir.chmod(0o777)
    tmp_path.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    # When the entrypoint drops privileges
    proc = _run(
        "import os\n"
        "from managed_agents.sandbox.entrypoint import drop_privileges\n"
        f"drop_privileges({str(workdir)!r})\n"
        "print(os.getuid(), os.geteuid(), os.getgid(), os.environ['HOME'],\n"
        "      os.environ.get('MANAGED_AGENTS_SANDBOX_USER'))\n"
        "try:\n"
        "    os.setuid(0)\n"
        "    print('regained root')\n"
        "except PermissionError:\n"
        "    print('root is gone')\n",
        {**os.environ, entrypoint.SANDBOX_USER_ENV: "nobody"},
    )
    # Then the process runs as the user, cannot become root again, and owns what was installed
    assert proc.returncode == 0, proc.stderr
    ids, verdict = proc.stdout.strip().splitlines()
    assert ids.split() == [str(nobody.pw_uid), str(nobody.pw_uid), str(nobody.pw_gid), nobody.pw_dir, "None"]
    assert verdict == "root is gone"
    for path in (workdir, workdir / ".packages" / "pip" / "mod.py"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)


def test_without_a_user_setting_nothing_changes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != entrypoint.SANDBOX_USER_ENV}
    proc = _run(
        f"import os\nfrom managed_agents.sandbox.entrypoint import drop_privileges\n"
        f"drop_privileges({str(tmp_path)!r})\nprint(os.getuid())\n",
        env,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == str(os.getuid())
