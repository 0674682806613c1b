"""`managed-agents scripted-model --script FILE` with a bad file: one clear line and exit status 2, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.serve_process import CLI, cli_env

CASES = {
    "missing": (None, "cannot read it: No such file or directory"),
    "not-json": (
        "[{'content': 'single quotes'}]",
        "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 3 (char 2)",
    ),
    "not-a-list": ('{"turns": []}', "a script file holds a JSON list of steps or an object with a 'steps' list"),
    "bad-step": ('["fine", {"content": 5}]', "invalid script step: 'content' must be a list of blocks (step 2)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_script_file_is_one_clear_line_and_status_2(tmp_path: Path, case: str) -> None:
    # Given a script file that is missing, not JSON, not a list of steps, or holds an invalid step
    text, why = CASES[case]
    path = tmp_path / "turns.json"
    if text is not None:
        path.write_text(text)
    # When the scripted model is started with it
    done = subprocess.run(
        [str(CLI), "scripted-model", "--port", "0", "--script", str(path)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it says what is wrong with which file in one line, and exits with the usage-error status
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [f"error: --script {path}: {why}"]
