"""A Fargate sandbox puts the file resources added while it runs in place before its next tool call
(sandbox/entrypoint.py InputsSync), against a stdlib HTTP stand-in of the platform's `/v1/sessions/{id}/inputs`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

from managed_agents.sandbox.entrypoint import InputsSync
from tests.e2e.loopback_http import serve

SECRET = base64.urlsafe_b64encode(json.dumps({"sessions_token": "wt-1"}).encode()).decode().rstrip("=")
BYTES = {"r_new": b"new bytes\n", "r_blocked": b"blocked\n", "r_bad": b"tampered"}


class Platform(BaseHTTPRequestHandler):
    files: ClassVar[list[dict[str, Any]]] = []
    seen: ClassVar[list[str]] = []
    errors: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        assert self.headers["Authorization"] == "Bearer wt-1"
        self.seen.append(self.path)
        if self.path == "/v1/sessions/s1/inputs":
            self._send(json.dumps({"files": self.files}).encode())
        else:
            self._send(BYTES[self.path.rsplit("/", 1)[-1]])

    def do_POST(self) -> None:
        self.errors.extend(json.loads(self.rfile.read(int(self.headers["content-length"])))["errors"])
        self._send(b"{}")


def _entry(rid: str, mount_path: str, data: bytes | None = None) -> dict[str, Any]:
    digest = hashlib.sha256(data if data is not None else BYTES[rid]).hexdigest()
    return {"id": rid, "type": "file", "mount_path": mount_path, "sha256": digest}


def test_added_files_are_placed_read_only_once_and_what_cannot_be_placed_is_reported(tmp_path: Path) -> None:
    # Given a sandbox root where the init container placed one file, and a path component that is a file
    (tmp_path / "mnt/session/uploads").mkdir(parents=True)
    (tmp_path / "mnt/session/uploads/file_old").write_text("from init")
    (tmp_path / "data").write_text("not a directory")
    Platform.files = [
        _entry("r_old", "/mnt/session/uploads/file_old", b"from init"),
        _entry("r_new", "/mnt/session/uploads/file_new"),
        _entry("r_blocked", "/data/x.csv"),
        _entry("r_bad", "/workspace/bad.bin", b"what the platform stored"),
    ]
    Platform.seen, Platform.errors = [], []
    with serve(Platform) as url:
        sync = InputsSync(
            {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_SESSION_ID": "s1", "ANTHROPIC_WORK_SECRET": SECRET}, str(tmp_path)
        )
        # When a tool call is about to run
        asyncio.run(sync.before_tool())
        # Then the added file is at its mount path, read-only; the init container's file was left alone
        placed = tmp_path / "mnt/session/uploads/file_new"
        assert placed.read_bytes() == b"new bytes\n" and placed.stat().st_mode & 0o777 == 0o444
        assert (tmp_path / "mnt/session/uploads/file_old").read_text() == "from init"
        # And bytes that do not match their hash are not placed (tried again at the next call)
        assert not (tmp_path / "workspace/bad.bin").exists()
        assert not list((tmp_path / "workspace").iterdir())  # (no partial download left either)
        # And the file whose mount path cannot be written is reported once, readably
        (error,) = Platform.errors
        assert error["resource_id"] == "r_blocked" and "/data/x.csv" in error["message"]
        assert "next sandbox" in error["message"]
        # When the next tool call comes: only the manifest is read, and the mismatched file tried again
        Platform.seen.clear()
        asyncio.run(sync.before_tool())
    assert Platform.seen == ["/v1/sessions/s1/inputs", "/v1/sessions/s1/inputs/r_bad"]
    assert len(Platform.errors) == 1
