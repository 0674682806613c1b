"""A Fargate sandbox puts the file resources added while it runs in place before its next tool call
(sandbox/entrypoint.py InputsSync, against a stdlib HTTP stand-in of the platform's `/v1/sessions/{id}/inputs`), and
sends what a tool call wrote under its outputs before the call's result goes (hooked_toolset, the SDK's own tools)."""

from __future__ import annotations

import base64
import hashlib
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest
from anthropic.lib.tools import ToolError
from anthropic.lib.tools.agent_toolset import AgentToolContext

from managed_agents.sandbox.entrypoint import InputsSync, hooked_toolset
from tests.e2e.loopback_http import serve
from tests.own_loop import run_on_own_loop

SECRET = base64.urlsafe_b64encode(json.dumps({"sessions_token": "wt-1"}).encode()).decode().rstrip("=")
BYTES = {"r_new": b"new bytes\n", "r_blocked": b"blocked\n", "r_bad": b"tampered"}


class Platform(BaseHTTPRequestHandler):
    files: ClassVar[list[dict[str, Any]]] = []
    etag: ClassVar[str] = '"v1"'
    seen: ClassVar[list[str]] = []
    errors: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.send_header("etag", self.etag)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        assert self.headers["Authorization"] == "Bearer wt-1"
        self.seen.append(f"{self.path} {self.headers.get('If-None-Match', '-')}")
        if self.path == "/v1/sessions/s1/inputs" and self.headers.get("If-None-Match") == self.etag:
            self._send(b"", 304)
        elif self.path == "/v1/sessions/s1/inputs":
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
        run_on_own_loop(sync.before_tool())
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
        # When the next tool call comes: the list is read again (not all placed), and the mismatched file tried again
        Platform.seen.clear()
        run_on_own_loop(sync.before_tool())
        assert Platform.seen == ["/v1/sessions/s1/inputs -", "/v1/sessions/s1/inputs/r_bad -"]
        assert len(Platform.errors) == 1
        # When that resource is gone and the list changed: it is read once, then unchanged lists cost a 304 only
        Platform.files, Platform.etag = Platform.files[:3], '"v2"'
        Platform.seen.clear()
        run_on_own_loop(sync.before_tool())
        run_on_own_loop(sync.before_tool())
    assert Platform.seen == ["/v1/sessions/s1/inputs -", '/v1/sessions/s1/inputs "v2"']


def test_each_official_tool_call_runs_between_the_inputs_pass_and_the_outputs_pass(tmp_path: Path) -> None:
    # Given the official toolset hooked as a Fargate sandbox runs it
    order: list[str] = []
    target = tmp_path / "outputs" / "report.md"

    async def before() -> None:
        order.append("inputs")

    async def after() -> None:
        order.append(f"outputs (report written: {target.exists()})")

    async def run() -> None:
        async with AgentToolContext(workdir=str(tmp_path)) as ctx:
            tools = {t.name: t for t in hooked_toolset(before=before, after=after)(ctx)}
            assert set(tools) == {"bash", "read", "write", "edit", "glob", "grep"}
            # When the model's write runs, and then a call that fails
            await tools["write"].call({"file_path": str(target), "content": "done\n"})
            with pytest.raises(ToolError, match="no such file"):
                await tools["read"].call({"file_path": str(tmp_path / "missing.txt")})

    run_on_own_loop(run())
    # Then each call was preceded by the inputs pass and followed by the outputs pass, which saw what it wrote
    assert order == ["inputs", "outputs (report written: True)", "inputs", "outputs (report written: True)"]
    assert target.read_text() == "done\n"
