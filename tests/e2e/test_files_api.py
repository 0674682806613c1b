"""The Files API through the official SDK (strict response validation), on both backends: upload with binary and
unicode names, list (pages, scope_id, ids[]), metadata, streamed download, delete, expiry, limits."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any

import anthropic
import httpx2
import pytest
import requests

from managed_agents.domain.clock import parse_rfc3339
from tests.e2e.conftest import Server, error_body, strict_client

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def test_upload_list_download_delete_binary_and_unicode_names(server: Server) -> None:
    client = strict_client(server)
    # Given a binary file and a text file with a unicode name inside a path
    binary = PNG + os.urandom(5000)
    png = client.beta.files.upload(file=("image.png", binary, "image/png"))
    text = client.beta.files.upload(file=("dir/sub/résumé ✓ 日本.txt", "héllo wörld\n".encode(), "text/plain"))
    # Then the metadata is the SDK's shape, only the basename kept
    assert png.type == "file" and png.id.startswith("file_")
    assert (png.filename, png.mime_type, png.size_bytes) == ("image.png", "image/png", len(binary))
    assert png.scope is None and png.expires_at is None and png.downloadable is True
    assert text.filename == "résumé ✓ 日本.txt" and text.mime_type == "text/plain"
    assert client.beta.files.retrieve_metadata(text.id).filename == "résumé ✓ 日本.txt"
    # And download returns the exact bytes, whatever the SDK's Accept header says
    assert client.beta.files.download(png.id).read() == binary
    assert client.beta.files.download(text.id).read() == "héllo wörld\n".encode()
    # And both are listed
    listed = [f.id for f in client.beta.files.list(limit=1000)]
    assert {png.id, text.id} <= set(listed)
    # When one is deleted
    deleted = client.beta.files.delete(png.id)
    assert deleted.id == png.id and deleted.type == "file_deleted"
    # Then it is gone everywhere
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(png.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.download(png.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.delete(png.id)
    assert png.id not in [f.id for f in client.beta.files.list(limit=1000)]


def test_unnamed_uploads_get_an_extension_for_their_type(server: Server) -> None:
    client = strict_client(server)
    pdf = client.beta.files.upload(file=("", b"%PDF-1.4\n%%EOF\n", "application/pdf"))
    assert pdf.filename == "unnamed.pdf" and pdf.mime_type == "application/pdf"
    raw = client.beta.files.upload(file=b"\x00\x01\x02")
    assert raw.size_bytes == 3 and raw.filename
    assert client.beta.files.download(raw.id).read() == b"\x00\x01\x02"


def test_list_pages_and_ids(server: Server) -> None:
    client = strict_client(server)
    ids = [client.beta.files.upload(file=(f"f{i}.txt", f"{i}".encode(), "text/plain")).id for i in range(5)]
    # Pages of 2 walk all of them once, newest first
    first = client.beta.files.list(limit=2)
    assert len(first.data) == 2 and first.next_page and first.next_page.startswith("page_")
    walked = [f.id for f in client.beta.files.list(limit=2)]
    assert walked[:5] == ids[::-1] and len(walked) == len(set(walked))
    # ids[] returns the live ones, in the order asked, in a single page; unknown ids are left out
    got = client.beta.files.list(ids=[ids[3], "file_unknown", ids[0], ids[3]])
    assert [f.id for f in got.data] == [ids[3], ids[0]] and got.next_page is None
    # ids[] is exclusive with page and limit
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.files.list(ids=[ids[0]], limit=2)
    assert "ids" in error_body(info.value)["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.beta.files.list(ids=[f"file_{i}" for i in range(101)])
    with pytest.raises(anthropic.BadRequestError):
        client.beta.files.list(limit=1001)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.files.list(page="nope")
    # scope_id of a session that wrote nothing lists nothing
    assert client.beta.files.list(scope_id="sesn_none").data == []


def test_expires_in_seconds(server: Server) -> None:
    client = strict_client(server)
    f = client.beta.files.upload(file=("e.txt", b"x", "text/plain"), expires_in_seconds=3600)
    assert f.expires_at is not None
    assert abs((f.expires_at - f.created_at) - timedelta(seconds=3600)) < timedelta(seconds=1)
    for bad in (3599, 7_776_001, -1):
        with pytest.raises(anthropic.BadRequestError) as info:
            client.beta.files.upload(file=("e.txt", b"x", "text/plain"), expires_in_seconds=bad)
        assert "expires_in_seconds" in error_body(info.value)["message"]


def test_an_expired_file_is_gone(server: Server) -> None:
    client = strict_client(server)
    f = client.beta.files.upload(file=("e.txt", b"gone", "text/plain"), expires_in_seconds=3600)
    # When its expiry passes (the server's clock moved past it)
    ws = str(server.rt.keys.workspaces()[0]["id"])
    rec = server.rt.resources.get("file", ws, f.id)
    assert rec is not None
    rec.doc["expires_at"] = "2000-01-01T00:00:00Z"
    server.rt.resources.replace(rec, expected_rev=rec.rev)
    # Then retrieve and download say file_expired, and lists leave it out
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.files.retrieve_metadata(f.id)
    assert error_body(info.value)["details"]["error_code"] == "file_expired"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.download(f.id)
    assert f.id not in [x.id for x in client.beta.files.list(limit=1000)]
    assert client.beta.files.list(ids=[f.id]).data == []


def test_content_is_hashed(server: Server) -> None:
    client = strict_client(server)
    data = os.urandom(70_000)
    f = client.beta.files.upload(file=("h.bin", data, "application/octet-stream"))
    ws = str(server.rt.keys.workspaces()[0]["id"])
    rec = server.rt.resources.get("file", ws, f.id)
    assert rec is not None and rec.doc["_sha256"] == hashlib.sha256(data).hexdigest()
    assert "_sha256" not in client.beta.files.retrieve_metadata(f.id).model_dump()


def test_malformed_uploads_are_400s(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx2.Client(timeout=30) as http:  # not httpx's 5 s default: CI's machine is starved at times
        json_type = {**headers, "content-type": "application/json"}
        resp = http.post(server.url + "/v1/files", content=b"{}", headers=json_type)
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
        resp = http.post(server.url + "/v1/files", files={"other": ("a.txt", b"a")}, headers=headers)
        assert resp.status_code == 400 and "file" in resp.json()["error"]["message"]
        resp = http.post(
            server.url + "/v1/files",
            files={"file": ("a.txt", b"a")},
            data={"expires_in_seconds": "soon"},
            headers=headers,
        )
        assert resp.status_code == 400 and "expires_in_seconds" in resp.json()["error"]["message"]
        resp = http.post(server.url + "/v1/files", files={"file": ("a.txt", b"a")}, data={"x": "1"}, headers=headers)
        assert resp.status_code == 400
        # no credential: 401 before any body is read
        resp = http.post(server.url + "/v1/files", files={"file": ("a.txt", b"a")})
        assert resp.status_code == 401


def test_created_at_is_rfc3339(server: Server) -> None:
    client = strict_client(server)
    f = client.beta.files.upload(file=("t.txt", b"t", "text/plain"))
    raw = client.get(f"/v1/files/{f.id}", cast_to=object)
    assert isinstance(raw, dict) and parse_rfc3339(str(raw["created_at"]))
    assert set(raw) == {
        "id",
        "type",
        "filename",
        "mime_type",
        "size_bytes",
        "created_at",
        "downloadable",
        "expires_at",
        "scope",
    }


def test_a_file_over_the_deployments_request_cap(server: Server) -> None:
    # Given a file larger than one API Lambda invocation carries (6,000,000 bytes)
    client = strict_client(server)
    data = os.urandom(6_100_000)
    if server.backend == "embedded":
        # Then the embedded server (no such cap) stores it
        f = client.beta.files.upload(file=("big.bin", data, "application/octet-stream"))
        assert f.size_bytes == len(data) and client.beta.files.download(f.id).read() == data
        # and has no upload URLs to hand out (it needs none)
        with pytest.raises(anthropic.BadRequestError, match=r"files\.upload takes files up to"):
            client.post("/v1/files/uploads", body={"filename": "big.bin"}, cast_to=object)
        return
    # Then the AWS deployment answers a 413 that says why and names the flow for large files, and stores nothing
    with pytest.raises(anthropic.APIStatusError) as info:
        client.beta.files.upload(file=("big.bin", data, "application/octet-stream"))
    assert info.value.status_code == 413
    message = error_body(info.value)["message"]
    assert "Lambda request cap" in message and "POST /v1/files/uploads" in message and "docs/files.md" in message
    assert client.beta.files.list().data == []
    # When the client takes that flow: an upload URL, the bytes posted straight to S3, then complete
    upload: Any = client.post(
        "/v1/files/uploads", body={"filename": "dir/big ü.bin", "expires_in_seconds": 7200}, cast_to=object
    )
    assert upload["upload_id"].startswith("fupl_") and upload["max_bytes"] >= len(data)
    # (nothing to complete before the bytes are there)
    with pytest.raises(anthropic.BadRequestError, match="nothing was uploaded yet"):
        client.post(f"/v1/files/uploads/{upload['upload_id']}/complete", cast_to=object)
    platform = server.platform
    assert platform is not None
    with platform.iam.unchecked():  # (moto cannot verify a POST policy's signature; S3 does)
        posted = requests.post(upload["url"], data=upload["fields"], files={"file": ("big.bin", data)}, timeout=60)
    assert posted.status_code in (200, 204), posted.text
    done: Any = client.post(f"/v1/files/uploads/{upload['upload_id']}/complete", cast_to=object)
    # Then it is a file like any other: its basename, its size, its bytes, its expiry
    f = client.beta.files.retrieve_metadata(done["id"])
    assert (f.filename, f.size_bytes, f.mime_type) == ("big ü.bin", len(data), "application/octet-stream")
    assert f.expires_at is not None
    assert client.beta.files.download(f.id).read() == data
    # And an upload completes once
    with pytest.raises(anthropic.NotFoundError):
        client.post(f"/v1/files/uploads/{upload['upload_id']}/complete", cast_to=object)
