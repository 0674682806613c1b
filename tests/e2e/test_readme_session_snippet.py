"""The README's first session, run as written against a live server: it shows what went wrong when a turn fails."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, embedded_only

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = embedded_only("the README's walk-through starts the embedded server (`managed-agents serve`)")


def _snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(b for b in blocks if "client.beta.sessions.events.stream(" in b)


def test_the_readme_session_prints_the_message_of_a_session_error(
    server: Server, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    # Given the README's walk-through, pointed at this server, with the admin key where the README reads it
    code = _snippet().replace("http://127.0.0.1:8787", server.url)
    assert server.url in code
    (tmp_path / ".data").mkdir()
    (tmp_path / ".data" / "admin.key").write_text(server.admin_key + "\n")
    # And a model that refuses the request
    model_server.push({"error": {"status": 400, "message": "readme-canary: prompt is too long"}})
    # When a newcomer runs it
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # Then it runs, and the session.error line says why the turn failed
    assert done.returncode == 0, done.stderr
    errors = [ln for ln in done.stdout.splitlines() if ln.startswith("session.error")]
    assert errors and all("readme-canary: prompt is too long" in ln for ln in errors), done.stdout
