"""Skills through the official SDK: upload, versions, `latest`, the download round trip, precise 400s, agents."""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

import anthropic
import pytest
import requests

from tests.e2e.conftest import Server

SKILL_MD = b"---\nname: csv-tools\ndescription: Summarise CSV files; use when the user gives a CSV.\n---\n# CSV tools\n"


def _needs_blobs(server: Server) -> None:
    if server.rt.skills is None:
        pytest.skip("this backend has no blob store (the AWS stack's files bucket is issue 14's)")


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    err = body["error"]
    assert isinstance(err, dict)
    return err


def _files(top: str = "csv-tools", skill_md: bytes = SKILL_MD, **extra: bytes) -> list[tuple[str, bytes]]:
    return [
        (f"{top}/SKILL.md", skill_md),
        *((f"{top}/{name.replace('__', '/')}", data) for name, data in extra.items()),
    ]


def test_skill_upload_versions_latest_and_download_round_trip(client: anthropic.Anthropic, server: Server) -> None:
    _needs_blobs(server)
    # Given a skill folder with a script in a subfolder and binary bytes
    script = b"#!/bin/sh\necho summarised\n"
    blob = bytes(range(256)) * 3
    files = _files(scripts__run__sh=script, data__table__bin=blob)
    # When it is uploaded without a display name
    skill = client.beta.skills.create(files=files)
    # Then the skill takes its display name from the frontmatter and has one version, `latest`
    assert skill.type == "skill" and skill.id.startswith("skill_") and skill.display_name == "csv-tools"
    assert skill.source.type == "custom"
    v1 = client.beta.skills.versions.retrieve("latest", skill_id=skill.id)
    assert v1.id == skill.latest_version_id and v1.name == "csv-tools" and v1.skill_id == skill.id
    assert v1.description == "Summarise CSV files; use when the user gives a CSV."
    # And the download is a zip of exactly the uploaded paths and bytes
    archive = client.beta.skills.versions.download(v1.id, skill_id=skill.id).read()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert {i.filename: zf.read(i) for i in zf.infolist()} == dict(files)

    # When a second version is uploaded
    v2 = client.beta.skills.versions.create(skill.id, files=_files(skill_md=SKILL_MD.replace(b"CSV files", b"CSVs")))
    # Then `latest` names it, both versions list newest first, and the first one still downloads as it was
    assert client.beta.skills.retrieve(skill.id).latest_version_id == v2.id
    assert client.beta.skills.versions.retrieve("latest", skill_id=skill.id).description.startswith("Summarise CSVs")
    assert [v.id for v in client.beta.skills.versions.list(skill.id)] == [v2.id, v1.id]
    again = client.beta.skills.versions.download(v1.id, skill_id=skill.id).read()
    assert again == archive
    # And deleting the latest version moves `latest` back; the only version left cannot be deleted
    assert client.beta.skills.versions.delete(v2.id, skill_id=skill.id).type == "skill_version_deleted"
    assert client.beta.skills.retrieve(skill.id).latest_version_id == v1.id
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.skills.versions.delete(v1.id, skill_id=skill.id)
    assert "delete the skill instead" in _error(info.value)["message"]
    # And deleting the skill removes it and its versions
    assert client.beta.skills.delete(skill.id).type == "skill_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.retrieve(skill.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.versions.download(v1.id, skill_id=skill.id)


def test_skill_list_display_name_and_source(client: anthropic.Anthropic, server: Server) -> None:
    _needs_blobs(server)
    made = [
        client.beta.skills.create(
            files=_files(f"s{i}", b"---\ndescription: >\n  folded\n  text\n---\n"), display_name=f"Skill {i}"
        )
        for i in range(3)
    ]
    # the name comes from the folder when the frontmatter has none; the folded description is one line
    first = client.beta.skills.versions.retrieve("latest", skill_id=made[0].id)
    assert first.name == "s0" and first.description == "folded text" and made[0].display_name == "Skill 0"
    listed = [s.id for s in client.beta.skills.list(limit=2)]
    assert {s.id for s in made} <= set(listed)
    assert list(client.beta.skills.list(source="anthropic")) == []
    assert {s.id for s in made} <= {s.id for s in client.beta.skills.list(source="custom")}


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ([("csv-tools/README.md", b"x")], "SKILL.md is missing"),
        ([("csv-tools/SKILL.md", SKILL_MD), ("other/x.py", b"")], "one top folder"),
        ([("csv-tools/SKILL.md", SKILL_MD), ("csv-tools/../../etc/passwd", b"x")], "'..'"),
        ([("csv-tools/SKILL.md", SKILL_MD), ("/etc/cron.d/x", b"x")], "absolute"),
        ([("SKILL.md", SKILL_MD)], "not inside a folder"),
        ([("csv-tools/SKILL.md", b"# no frontmatter\n")], "frontmatter"),
        ([("csv-tools/SKILL.md", b"---\nname: csv-tools\n---\n")], "description"),
        ([("csv-tools/SKILL.md", b"---\nname: CSV Tools\ndescription: d\n---\n")], "not a skill name"),
        ([("csv-tools/SKILL.md", SKILL_MD), ("csv-tools/big.bin", b"\0" * (8 * 1024 * 1024))], "at most 8388608"),
    ],
    ids=[
        "no-skill-md",
        "two-tops",
        "dotdot",
        "absolute",
        "no-folder",
        "no-frontmatter",
        "no-description",
        "bad-name",
        "too-big",
    ],
)
def test_skill_upload_rules_answer_precise_400s(
    client: anthropic.Anthropic, server: Server, files: list[tuple[str, bytes]], says: str
) -> None:
    _needs_blobs(server)
    if says.startswith("at most 8388608") and server.backend == "aws":
        # the API Lambda takes at most 6 MB per request: a larger upload is a readable 413 before the skill rules,
        # naming the upload-URL flow (whose complete step applies the same rules: test_a_skill_over_the_deployments_...)
        with pytest.raises(anthropic.ContentTooLargeError) as big:
            client.beta.skills.create(files=files)
        message = _error(big.value)["message"]
        assert "takes at most 6,000,000 bytes" in message and "POST /v1/skills/uploads" in message, message
        return
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.skills.create(files=files)
    assert says in _error(info.value)["message"]


def test_skill_names_are_fixed_and_unique(client: anthropic.Anthropic, server: Server) -> None:
    _needs_blobs(server)
    skill = client.beta.skills.create(files=_files("unique-one", b"---\ndescription: d\n---\n"))
    # a second skill of the same name is a 409 skill_name_taken (the SDK's own exception)
    with pytest.raises(anthropic.ConflictError) as info:
        client.beta.skills.create(files=_files("unique-one", b"---\ndescription: d\n---\n"))
    assert _error(info.value)["details"]["error_code"] == "skill_name_taken"
    # a version must keep the skill's name
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.beta.skills.versions.create(skill.id, files=_files("renamed", b"---\ndescription: d\n---\n"))
    assert "fixed by its first version" in _error(bad.value)["message"]


def test_agent_skills_are_checked_and_sessions_pin_latest(client: anthropic.Anthropic, server: Server) -> None:
    _needs_blobs(server)
    skill = client.beta.skills.create(files=_files("pinned-skill", b"---\ndescription: d\n---\n"))
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    # an unknown skill, or a version of another skill, is a 400 on create and update
    with pytest.raises(anthropic.BadRequestError):
        client.beta.agents.create(name="a", model="m", skills=[{"type": "custom", "skill_id": "skill_01NOPE"}])
    agent = client.beta.agents.create(name="a", model="m", skills=[{"type": "custom", "skill_id": skill.id}])
    assert agent.skills[0].version == "latest"
    with pytest.raises(anthropic.BadRequestError):
        client.beta.agents.update(
            agent.id, version=agent.version, skills=[{"type": "custom", "skill_id": skill.id, "version": "skillver_x"}]
        )
    # a session pins the version `latest` names when it starts
    v1 = skill.latest_version_id
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    assert session.agent.skills[0].version == v1
    v2 = client.beta.skills.versions.create(skill.id, files=_files("pinned-skill", b"---\ndescription: e\n---\n"))
    later = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    assert later.agent.skills[0].version == v2.id
    assert client.beta.sessions.retrieve(session.id).agent.skills[0].version == v1


def test_a_work_token_reads_exactly_its_sessions_skill_versions(
    client: anthropic.Anthropic, server: Server, model_server: Any
) -> None:
    from tests.e2e.test_work_queue_api import TOOLSET, _claim, _say

    _needs_blobs(server)
    # Given two skills, a self-hosted session whose agent has the first, and its worker's work token
    mine = client.beta.skills.create(files=_files("mine-skill", b"---\ndescription: d\n---\n"))
    other = client.beta.skills.create(files=_files("other-skill", b"---\ndescription: d\n---\n"))
    agent = client.beta.agents.create(
        name="a", model="m", tools=[TOOLSET], skills=[{"type": "custom", "skill_id": mine.id}]
    )
    env = client.beta.environments.create(name="sh", config={"type": "self_hosted"})
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    model_server.push("hello")
    _say(client, sid)
    _item, worker, token = _claim(server, env.id)
    # Then the token retrieves and downloads the pinned version, also as `latest` while it is the latest
    assert token.beta.skills.versions.retrieve(mine.latest_version_id, skill_id=mine.id).name == "mine-skill"
    assert token.beta.skills.versions.retrieve("latest", skill_id=mine.id).id == mine.latest_version_id
    assert token.beta.skills.versions.download(mine.latest_version_id, skill_id=mine.id).read()[:2] == b"PK"
    # And nothing else: another skill, a newer version, the skill list, uploads; an environment key reads none
    with pytest.raises(anthropic.NotFoundError):
        token.beta.skills.versions.download(other.latest_version_id, skill_id=other.id)
    ws2 = server.rt.keys.create_workspace("other")
    _, key2 = server.rt.keys.create_key(ws2)
    files = _files("mine-skill", b"---\ndescription: d\n---\n")
    foreign = server.client(key2).beta.skills.create(files=files)  # same name, another workspace
    with pytest.raises(anthropic.NotFoundError):
        token.beta.skills.versions.download(foreign.latest_version_id, skill_id=foreign.id)
    newer = client.beta.skills.versions.create(mine.id, files=_files("mine-skill", b"---\ndescription: e\n---\n"))
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.skills.versions.download(newer.id, skill_id=mine.id)
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.skills.versions.retrieve("latest", skill_id=mine.id)
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.skills.list()
    with pytest.raises(anthropic.PermissionDeniedError):
        token.beta.skills.create(files=_files("sneaky", b"---\ndescription: d\n---\n"))
    with pytest.raises(anthropic.PermissionDeniedError):
        worker.beta.skills.versions.retrieve(mine.latest_version_id, skill_id=mine.id)


def test_another_workspace_cannot_see_a_skill(client: anthropic.Anthropic, server: Server) -> None:
    _needs_blobs(server)
    skill = client.beta.skills.create(files=_files("ws-private", b"---\ndescription: d\n---\n"))
    ws2 = server.rt.keys.create_workspace("other")
    _, key2 = server.rt.keys.create_key(ws2)
    outsider = server.client(key2)
    with pytest.raises(anthropic.NotFoundError):
        outsider.beta.skills.retrieve(skill.id)
    with pytest.raises(anthropic.NotFoundError):
        outsider.beta.skills.versions.download("latest", skill_id=skill.id)
    assert skill.id not in {s.id for s in outsider.beta.skills.list()}
    with pytest.raises(anthropic.BadRequestError):
        outsider.beta.agents.create(name="a", model="m", skills=[{"type": "custom", "skill_id": skill.id}])


def test_a_sessions_subagents_have_their_skills_pinned_too(server: Server) -> None:
    # Given a skill at version 1, a helper agent that wants its latest version, and a coordinator of that helper
    client = server.client(_strict_response_validation=True)
    skill = client.beta.skills.create(files=_files())
    v1 = skill.latest_version_id
    helper = client.beta.agents.create(name="helper", model="m", skills=[{"type": "custom", "skill_id": skill.id}])
    lead = client.beta.agents.create(
        name="lead", model="m", multiagent={"type": "coordinator", "agents": [helper.id, {"type": "self"}]}
    )
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    # When a session starts, then the skill gets a version 2
    session = client.beta.sessions.create(agent=lead.id, environment_id=env.id)
    v2 = client.beta.skills.versions.create(skill.id, files=_files()).id
    assert v2 != v1
    # Then the session's copy of the helper names version 1, the one that was latest when it started
    (member, _) = session.agent.multiagent.agents  # type: ignore[union-attr]
    assert [(s.skill_id, s.version) for s in member.skills] == [(skill.id, v1)]  # type: ignore[union-attr]
    again = client.beta.sessions.retrieve(session.id).agent.multiagent.agents[0]  # type: ignore[union-attr]
    assert [(s.skill_id, s.version) for s in again.skills] == [(skill.id, v1)]  # type: ignore[union-attr]


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for path, data in files:
            zf.writestr(path, data)
    return buf.getvalue()


def _post_to_s3(server: Server, upload: dict[str, Any], archive: bytes) -> None:
    assert server.platform is not None
    with server.platform.iam.unchecked():  # (moto cannot verify a POST policy's signature; S3 does)
        posted = requests.post(upload["url"], data=upload["fields"], files={"file": ("s.zip", archive)}, timeout=60)
    assert posted.status_code in (200, 204), posted.text


def test_a_skill_over_the_deployments_request_cap(client: anthropic.Anthropic, server: Server) -> None:
    _needs_blobs(server)
    # Given a skill folder larger than one API Lambda invocation carries (6,000,000 bytes), under the 8 MiB skill cap
    files = _files(data__model__bin=os.urandom(6_200_000))
    if server.backend == "embedded":
        # Then the embedded server (no such cap) stores it through skills.create
        skill = client.beta.skills.create(files=files)
        archive = client.beta.skills.versions.download("latest", skill_id=skill.id).read()
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            assert {i.filename: zf.read(i) for i in zf.infolist()} == dict(files)
        # and has no upload URLs to hand out (it needs none)
        with pytest.raises(anthropic.BadRequestError, match=r"skills\.create and skills\.versions\.create take"):
            client.post("/v1/skills/uploads", body={}, cast_to=object)
        return
    # Then the AWS deployment answers skills.create with a 413 that names the cap and the upload-URL flow; no skill
    with pytest.raises(anthropic.APIStatusError) as info:
        client.beta.skills.create(files=files)
    assert info.value.status_code == 413
    message = _error(info.value)["message"]
    assert "Lambda request cap" in message and "POST /v1/skills/uploads" in message, message
    assert "docs/skills-and-memory.md" in message
    assert client.beta.skills.list().data == []
    # When the client takes that flow: an upload URL, a zip of the folder posted straight to S3, then complete
    upload: Any = client.post("/v1/skills/uploads", body={"display_name": "Big model"}, cast_to=object)
    assert upload["type"] == "skill_upload" and upload["upload_id"].startswith("skupl_")
    assert upload["max_bytes"] > len(files[1][1])
    with pytest.raises(anthropic.BadRequestError, match="nothing was uploaded yet"):
        client.post(f"/v1/skills/uploads/{upload['upload_id']}/complete", cast_to=object)
    _post_to_s3(server, upload, _zip(files))
    done: Any = client.post(f"/v1/skills/uploads/{upload['upload_id']}/complete", cast_to=object)
    # Then it is a skill like any other: its display name, its version, its download the uploaded files
    skill = client.beta.skills.retrieve(done["id"])
    assert skill.display_name == "Big model" and skill.latest_version_id == done["latest_version_id"]
    downloaded = client.beta.skills.versions.download("latest", skill_id=skill.id).read()
    with zipfile.ZipFile(io.BytesIO(downloaded)) as zf:
        assert {i.filename: zf.read(i) for i in zf.infolist()} == dict(files)
    # And an upload completes once
    with pytest.raises(anthropic.NotFoundError):
        client.post(f"/v1/skills/uploads/{upload['upload_id']}/complete", cast_to=object)

    # When a new version over the cap is sent with versions.create: the same 413, naming the flow
    with pytest.raises(anthropic.APIStatusError) as info:
        client.beta.skills.versions.create(skill.id, files=files)
    assert info.value.status_code == 413 and "with skill_id for a new version" in _error(info.value)["message"]
    # and through the flow with skill_id, the downloaded archive uploaded again as it is
    upload = client.post("/v1/skills/uploads", body={"skill_id": skill.id}, cast_to=object)
    _post_to_s3(server, upload, downloaded)
    version: Any = client.post(f"/v1/skills/uploads/{upload['upload_id']}/complete", cast_to=object)
    # Then it is the skill's latest version
    assert version["type"] == "skill_version" and version["skill_id"] == skill.id
    assert client.beta.skills.retrieve(skill.id).latest_version_id == version["id"]
    assert [v.id for v in client.beta.skills.versions.list(skill.id)] == [version["id"], skill.latest_version_id]

    # And an archive that breaks the upload rules is refused with the same 400 as skills.create, and not kept
    upload = client.post("/v1/skills/uploads", body={}, cast_to=object)
    _post_to_s3(server, upload, _zip([*_files(top="evil"), ("evil/../../etc/x", b"x")]))
    with pytest.raises(anthropic.BadRequestError, match=r"\.\."):
        client.post(f"/v1/skills/uploads/{upload['upload_id']}/complete", cast_to=object)
    with pytest.raises(anthropic.NotFoundError):
        client.post(f"/v1/skills/uploads/{upload['upload_id']}/complete", cast_to=object)
    # and so is an object that is not a zip, and an upload for a skill that does not exist
    upload = client.post("/v1/skills/uploads", body={}, cast_to=object)
    _post_to_s3(server, upload, b"not a zip at all")
    with pytest.raises(anthropic.BadRequestError, match="not a zip archive"):
        client.post(f"/v1/skills/uploads/{upload['upload_id']}/complete", cast_to=object)
    with pytest.raises(anthropic.NotFoundError):
        client.post("/v1/skills/uploads", body={"skill_id": "skill_nope"}, cast_to=object)
    assert [s.id for s in client.beta.skills.list()] == [skill.id]
