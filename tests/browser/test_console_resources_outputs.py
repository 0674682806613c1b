"""The session page shows the session's resources (never a repository's token) and its output files, each a
download link that fetches the file with the signed-in key."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from managed_agents.adapters.local.subprocess_sandbox import bubblewrap_path
from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.browser.conftest import Console
from tests.e2e.conftest import wait_idle, wait_until
from tests.e2e.sandbox_support import TOOLSET, tool_step

TOKEN = "ghs_console-token-canary-31d0"


@pytest.mark.skipif(bubblewrap_path() is None, reason="mount paths need bubblewrap's mount namespace")
def test_resources_and_output_files(
    console: Console, client: anthropic.Anthropic, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    # Given a session with a file and a repository resource (not cloned: the repository is unreachable) whose bash
    # call wrote an output
    f = client.beta.files.upload(file=("input.csv", b"a,b\n", "text/csv"))
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6", tools=[TOOLSET])
    env = client.beta.environments.create(name="c", config={"type": "cloud"})
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=env.id,
        resources=[
            {"type": "file", "file_id": f.id},
            {
                "type": "github_repository",
                "url": "http://127.0.0.1:9/octo/tools.git",
                "authorization_token": TOKEN,
                "checkout": {"type": "branch", "name": "dev"},
            },
        ],
    )
    write = "echo 'the findings' > /mnt/session/outputs/report.md"
    model_server.push(tool_step("toolu_1", "bash", {"command": write}), "written")
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
    )
    wait_idle(client, session.id, timeout=60)
    wait_until(lambda: list(client.beta.files.list(scope_id=session.id)), timeout=30)
    # When its page is opened
    console.sign_in(fragment=f"#/sessions/{session.id}")
    console.wait_trace()
    page = console.page
    # Then the header lists both resources at their mount paths, without the token
    resources = page.locator("#session-resources li.resource")
    assert resources.count() == 2
    texts = resources.all_inner_texts()
    assert f"/mnt/session/uploads/{f.id}: file {f.id}" in texts[0]
    assert "/workspace/tools: repository http://127.0.0.1:9/octo/tools.git @ branch dev" in texts[1]
    assert TOKEN not in page.content()
    # And the output file, whose link downloads its bytes
    link = page.locator("#session-outputs li.output-file a")
    link.wait_for()
    assert link.inner_text() == "report.md"
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "report.md"
    assert Path(download.path()).read_bytes() == b"the findings\n"
