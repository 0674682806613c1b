"""Reads are served while writers wait on a locked SQLite database, and the writers get a 503, not a hang.

SQLite lets one writer in at a time; another process holding the write lock (the `keys` CLI beside the server, a
backup) makes every write request wait. Those waits must neither take the threads reads need nor outlast the
request deadline.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx2
import pytest

from managed_agents.settings import ServerSettings
from managed_agents.wiring import DB_FILE
from tests.e2e.conftest import Server, embedded_only, wait_until

pytestmark = embedded_only("SQLite's write lock is the embedded store's")
WRITERS = 60  # more than the 40 threads anyio lends by default
MA = "managed-agents-2026-04-01"


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=str(tmp_path / "data"), sse_ping_seconds=0.5, request_deadline_seconds=2.0)


def test_reads_are_served_while_writers_wait_and_writers_get_a_503(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}", "anthropic-beta": MA}
    # Given another process holding the database's write lock
    holder = sqlite3.connect(Path(server.rt.settings.data_dir) / DB_FILE, isolation_level=None, timeout=1)
    holder.execute("BEGIN IMMEDIATE")
    statuses: list[int] = []
    bodies: list[dict[str, object]] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        try:
            resp = httpx2.post(
                server.url + "/v1/agents", json={"name": f"a{i}", "model": "m"}, headers=headers, timeout=60
            )
            with lock:
                statuses.append(resp.status_code)
                bodies.append(resp.json())
        except httpx2.HTTPError as exc:
            with lock:
                statuses.append(-1)
                bodies.append({"exception": repr(exc)})

    try:
        # When many writers arrive at once
        writers = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(WRITERS)]
        for t in writers:
            t.start()
        # Then a read is served while the lock is still held
        read = httpx2.get(server.url + "/v1/agents", headers=headers, timeout=20)
        assert read.status_code == 200, read.text
        # And every writer is answered (with the lock still held): a 503 in the envelope, nothing done
        wait_until(lambda: len(statuses) == WRITERS, timeout=40)
        assert set(statuses) == {503}, statuses
        assert all(b["error"]["type"] == "api_error" for b in bodies), bodies[:3]  # type: ignore[index]
    finally:
        holder.rollback()
        holder.close()
    # And once the lock is released, writes go through again and none of the refused ones was written
    assert httpx2.post(server.url + "/v1/agents", json={"name": "z", "model": "m"}, headers=headers).status_code == 200
    assert [a["name"] for a in httpx2.get(server.url + "/v1/agents", headers=headers).json()["data"]] == ["z"]
