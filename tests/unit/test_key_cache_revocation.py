"""Authenticated keys are cached where the deployment has a revocation marker, and a revocation by this process or
by another one on the same data dir (the CLI beside a running server, another worker) drops them at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from managed_agents.adapters.local.revocation_marker import FileRevocationMarker
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteResourceStore
from managed_agents.domain.clock import SystemClock
from managed_agents.domain.errors import AuthenticationFailed
from managed_agents.services.keys import KeyService


def _service(tmp_path: Path, marker: bool = True) -> KeyService:
    """A KeyService as one process of the deployment has it (each call: another process on the same files)."""
    resources = SqliteResourceStore(SqliteDatabase(tmp_path / "db.sqlite"))
    revocations = FileRevocationMarker(tmp_path / "credentials.revoked") if marker else None
    return KeyService(resources, SystemClock(), revocations=revocations)


def test_a_key_is_served_from_the_cache_after_it_authenticated(tmp_path: Path) -> None:
    # Given a key, not yet used
    keys = _service(tmp_path)
    doc, secret = keys.create_key(keys.create_workspace())
    assert keys.cached(secret) is None
    # When it authenticates once, then its principal comes from the cache
    p = keys.authenticate(secret)
    assert keys.cached(secret) == p and p.key_id == doc["id"]
    # And a wrong secret is never cached
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(secret + "x")
    assert keys.cached(secret + "x") is None


def test_a_revocation_in_another_process_drops_the_cached_key_at_once(tmp_path: Path) -> None:
    # Given a server process that has the key cached
    server = _service(tmp_path)
    doc, secret = server.create_key(server.create_workspace())
    server.authenticate(secret)
    # When another process (the `keys revoke` CLI) revokes it
    _service(tmp_path).revoke(str(doc["id"]))
    # Then the server's next request with it finds no cached principal, and the lookup refuses the key
    assert server.cached(secret) is None
    with pytest.raises(AuthenticationFailed):
        server.authenticate(secret)


def test_a_revocation_here_drops_every_cached_key_which_is_checked_again_once(tmp_path: Path) -> None:
    keys = _service(tmp_path)
    ws = keys.create_workspace()
    doc1, secret1 = keys.create_key(ws)
    _, secret2 = keys.create_key(ws)
    keys.authenticate(secret1)
    keys.authenticate(secret2)
    keys.revoke(str(doc1["id"]))
    assert keys.cached(secret1) is None
    # the other key is looked up again once after the mark, then cached again
    assert keys.cached(secret2) is None and keys.authenticate(secret2) == keys.cached(secret2)


def test_without_a_marker_nothing_is_cached(tmp_path: Path) -> None:
    # Given a deployment whose processes share no marker (AWS)
    keys = _service(tmp_path, marker=False)
    _, secret = keys.create_key(keys.create_workspace())
    keys.authenticate(secret)
    assert keys.cached(secret) is None


def test_the_marker_version_grows_with_every_mark(tmp_path: Path) -> None:
    a, b = FileRevocationMarker(tmp_path / "m"), FileRevocationMarker(tmp_path / "m")
    assert a.version() == 0
    a.mark()
    b.mark()
    assert a.version() == b.version() == 2
