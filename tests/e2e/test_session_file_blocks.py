"""Image and document blocks whose source is a Files API file reach the model as content it can read (inlined), on
both backends; a file that cannot be used becomes a text block saying why, not a failed turn."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import pytest

from managed_agents.testing.scripted_model import ScriptedModelServer
from tests.e2e.conftest import Server, wait_idle

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _blocks(model_server: ScriptedModelServer, index: int = -1, message: int = -1) -> list[dict[str, Any]]:
    request = model_server.requests[index]["body"]
    user = [m for m in request["messages"] if m["role"] == "user"]
    blocks: list[dict[str, Any]] = user[message]["content"]
    return blocks


def test_png_pdf_and_text_file_blocks_are_inlined_for_the_model(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    png = client.beta.files.upload(file=("pixel.png", PNG, "image/png"))
    pdf = client.beta.files.upload(file=("doc.pdf", PDF, "application/pdf"))
    txt = client.beta.files.upload(file=("notes.txt", "notes ✓\n".encode(), "text/plain"))
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model_server.push("seen")
    # When the user sends blocks that point at the files
    client.beta.sessions.events.send(
        sid,
        events=[
            {
                "type": "user.message",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "file", "file_id": png.id}},
                    {"type": "document", "source": {"type": "file", "file_id": pdf.id}, "title": "The doc"},
                    {"type": "document", "source": {"type": "file", "file_id": txt.id}},
                ],
            }
        ],
    )
    events = wait_idle(client, sid, timeout=60)
    # Then the model received their bytes, not our ids
    _, image, document, text = _blocks(model_server)
    assert image["source"] == {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    assert document["source"]["type"] == "base64" and document["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(document["source"]["data"]) == PDF and document["title"] == "The doc"
    assert text["source"] == {"type": "text", "media_type": "text/plain", "data": "notes ✓\n"}
    # And the log keeps the reference
    (sent,) = [e for e in events if e.type == "user.message"]
    assert sent.content[1].source.type == "file" and sent.content[1].source.file_id == png.id


def test_a_file_deleted_later_is_a_text_note_for_the_model(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer
) -> None:
    f = client.beta.files.upload(file=("pixel.png", PNG, "image/png"))
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    # A block naming a file that does not exist is refused when sent
    with pytest.raises(anthropic.BadRequestError) as info:
        _send(client, sid, [{"type": "image", "source": {"type": "file", "file_id": "file_missing"}}])
    assert "file_missing" in str(info.value)
    # Given a turn that showed the model a file, which is then deleted
    model_server.push("first", "second")
    _send(client, sid, [{"type": "image", "source": {"type": "file", "file_id": f.id}}])
    wait_idle(client, sid, timeout=60)
    client.beta.files.delete(f.id)
    # When the conversation goes on
    _send(client, sid, [{"type": "text", "text": "and now?"}])
    events = wait_idle(client, sid, timeout=60, count=2)
    # Then the next request carries a note in its place, and the turn ran
    (note,) = _blocks(model_server, index=-1, message=0)
    assert note["type"] == "text" and f.id in note["text"] and "could not be included" in note["text"]
    assert events[-1].type == "session.status_idle"


def _send(client: anthropic.Anthropic, sid: str, content: list[Any]) -> None:
    client.beta.sessions.events.send(sid, events=[{"type": "user.message", "content": content}])
