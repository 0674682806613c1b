"""The Files API's size limit (`max_file_bytes`): a clear 413 in the envelope, nothing stored."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from managed_agents.settings import ServerSettings
from tests.e2e.conftest import Server, error_body, strict_client


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=str(tmp_path / "data"), max_file_bytes=1000)


def test_a_file_over_the_size_limit_is_a_413(server: Server) -> None:
    client = strict_client(server)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.beta.files.upload(file=("big.bin", b"x" * 200_000, "application/octet-stream"))
    assert info.value.status_code == 413
    assert "bytes" in error_body(info.value)["message"]
    # A body within the multipart slack but content over the limit is refused by the store, leaving nothing
    with pytest.raises(anthropic.APIStatusError) as info:
        client.beta.files.upload(file=("big.bin", b"x" * 1001, "application/octet-stream"))
    assert info.value.status_code == 413
    assert client.beta.files.list().data == []
    ok = client.beta.files.upload(file=("ok.bin", b"x" * 1000, "application/octet-stream"))
    assert ok.size_bytes == 1000
