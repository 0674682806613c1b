"""The bubblewrap command line: hidden directories become empty, and what the worker runs from is mounted back."""

from __future__ import annotations

from pathlib import Path

import pytest

from managed_agents.adapters.local import subprocess_sandbox
from managed_agents.adapters.local.subprocess_sandbox import SubprocessSandboxProvisioner
from managed_agents.ports import Mount


def _mounts(args: list[str]) -> list[tuple[str, str]]:
    """(option, path) of every --tmpfs and --ro-bind, in command-line order (later mounts cover earlier ones)."""
    out = []
    for i, arg in enumerate(args):
        if arg in ("--tmpfs", "--ro-bind", "--bind"):
            out.append((arg, args[i + 1]))
    return out


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    # Given a home that holds the checkout (and its data dir) and a uv-managed Python, and a venv under /tmp
    home = tmp_path / "home"
    paths = {
        "home": home,
        "checkout": home / "src" / "proj",
        "data": home / "src" / "proj" / ".data",
        "venv": home / "src" / "proj" / ".venv",
        "uv_python": home / ".local" / "share" / "uv" / "python" / "cpython-3.12",
        "tmp_venv": Path("/tmp") / f"venv-{tmp_path.name}",
    }
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    entrypoint = paths["checkout"] / "managed_agents" / "sandbox" / "entrypoint.py"
    entrypoint.parent.mkdir(parents=True)
    entrypoint.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(subprocess_sandbox, "bubblewrap_path", lambda: "/usr/bin/bwrap")
    yield paths
    paths["tmp_venv"].rmdir()


def _provisioner(
    layout: dict[str, Path],
    interpreter: tuple[Path, ...],
    monkeypatch: pytest.MonkeyPatch,
    resources: tuple[Mount, ...] = (),
) -> list[str]:
    monkeypatch.setattr(subprocess_sandbox, "interpreter_paths", lambda python: interpreter)
    prov = SubprocessSandboxProvisioner(layout["data"] / "sandboxes", isolation="bubblewrap", hidden=(layout["data"],))
    prov.entrypoint = layout["checkout"] / "managed_agents" / "sandbox" / "entrypoint.py"
    workdir = prov.workdir("sesn_1")
    workdir.mkdir()
    return prov._bubblewrap(workdir, resources)


def test_an_interpreter_under_the_home_is_mounted_back_over_the_hidden_home(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the server runs from the checkout's venv, whose base Python is uv's under the home
    venv, uv_python = layout["venv"], layout["uv_python"]
    interpreter = (venv, uv_python, venv / "lib" / "python3.12" / "site-packages", Path("/usr/lib/python3"))
    mounts = _mounts(_provisioner(layout, interpreter, monkeypatch))
    # Then /tmp, the home and the data dir are hidden
    for hidden in ("/tmp", str(layout["home"]), str(layout["data"])):
        assert ("--tmpfs", hidden) in mounts
    # And the venv, uv's Python and the entrypoint's directory are mounted back read-only, after the home is hidden
    home_hidden = mounts.index(("--tmpfs", str(layout["home"])))
    entry_dir = str(layout["checkout"] / "managed_agents" / "sandbox")
    for needed in (str(venv), str(uv_python), entry_dir):
        assert mounts.index(("--ro-bind", needed)) > home_hidden
    # And nothing more: not what a mounted-back directory already holds, not what was never hidden, not the home
    # (the root is a tmpfs holding the host's top-level entries read-only)
    assert mounts[0] == ("--tmpfs", "/")
    binds = [path for option, path in mounts if option == "--ro-bind" and len(Path(path).parts) > 2]
    assert sorted(binds) == sorted([str(venv), str(uv_python), entry_dir])
    # And the session's working directory comes last, writable
    assert mounts[-1] == ("--bind", str(layout["data"] / "sandboxes" / "sesn_1"))


def test_a_venv_under_tmp_is_mounted_back_over_the_private_tmp(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = _mounts(_provisioner(layout, (layout["tmp_venv"], Path("/usr")), monkeypatch))
    assert mounts.index(("--ro-bind", str(layout["tmp_venv"]))) > mounts.index(("--tmpfs", "/tmp"))
    assert mounts.count(("--ro-bind", "/usr")) == 1  # the root's entry, not mounted back again


def test_a_hidden_directory_inside_a_mounted_back_one_stays_hidden(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the whole checkout is what the worker runs from (a venv at its root), the data dir inside it
    mounts = _mounts(_provisioner(layout, (layout["checkout"],), monkeypatch))
    # Then the data dir is hidden again after the checkout is mounted back
    assert mounts.index(("--tmpfs", str(layout["data"]))) > mounts.index(("--ro-bind", str(layout["checkout"])))


def test_session_resources_are_mounted_last_at_their_paths_on_a_read_only_root(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given resources staged by the platform: a read-only file, a writable repository under /workspace (which the
    # host does not have) and the outputs directory under /mnt (which the host has)
    staged = tmp_path / "stage"
    resources = (
        Mount(staged / "uploads", "/mnt/session/uploads", True),
        Mount(staged / "outputs", "/mnt/session/outputs", False),
        Mount(staged / "repos" / "r1", "/workspace/hello", False),
    )
    args = _provisioner(layout, (layout["venv"],), monkeypatch, resources)
    mounts = _mounts(args)
    # Then each is mounted at its path after the workdir, read-only or not as staged
    workdir = mounts.index(("--bind", str(layout["data"] / "sandboxes" / "sesn_1")))
    assert mounts.index(("--ro-bind", str(staged / "uploads"))) > workdir
    assert mounts.index(("--bind", str(staged / "outputs"))) > workdir
    assert mounts.index(("--bind", str(staged / "repos" / "r1"))) > workdir
    # And /mnt and /workspace are the sandbox's own (the host's /mnt is not shown), the rest of / is the host's
    assert ("--ro-bind", "/mnt") not in mounts and ("--ro-bind", "/workspace") not in mounts
    assert ("--ro-bind", "/usr") in mounts
    # And the root is made read-only once everything is mounted
    assert args.index("--remount-ro") > args.index(str(staged / "repos" / "r1"))
