"""The BlobStore port, on every adapter: a directory (embedded) and S3 (moto)."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from managed_agents.adapters.aws.s3_blob_store import S3BlobStore
from managed_agents.adapters.local.directory_blob_store import DirectoryBlobStore
from managed_agents.domain.errors import NotFound, RequestTooLarge
from managed_agents.ports import BlobStore
from tests.contract.conftest import fake_aws_env


@pytest.fixture(params=["directory", "s3"])
def blobs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BlobStore]:
    if request.param == "directory":
        yield DirectoryBlobStore(tmp_path_factory.mktemp("blobs"))
        return
    fake_aws_env(monkeypatch)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        bucket = f"blobs-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        yield S3BlobStore(bucket=bucket, client=client)


def test_put_streams_hashes_and_reads_back_the_exact_bytes(blobs: BlobStore) -> None:
    # Given 9 MB of random bytes (more than one chunk, and multipart on S3)
    data = os.urandom(9 * 1024 * 1024 + 17)
    # When they are stored
    info = blobs.put("files/ws/file_1", io.BytesIO(data), max_bytes=len(data))
    # Then size and SHA-256 describe them, and reading gives them back
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(blobs.open("files/ws/file_1")) == data


def test_an_object_over_the_cap_is_refused_and_nothing_is_stored(blobs: BlobStore) -> None:
    # Given / When 2 MB are stored under a 1 MB cap
    with pytest.raises(RequestTooLarge):
        blobs.put("files/ws/big", io.BytesIO(os.urandom(2 * 1024 * 1024)), max_bytes=1024 * 1024)
    # Then no object remains
    with pytest.raises(NotFound):
        b"".join(blobs.open("files/ws/big"))


def test_replacing_and_deleting(blobs: BlobStore) -> None:
    # Given an object replaced by another
    blobs.put("k/a", io.BytesIO(b"one"), max_bytes=10)
    blobs.put("k/a", io.BytesIO(b"two"), max_bytes=10)
    # Then the last write wins
    assert b"".join(blobs.open("k/a")) == b"two"
    # When it is deleted (twice), then it is gone and the second delete is no error
    blobs.delete("k/a")
    blobs.delete("k/a")
    with pytest.raises(NotFound):
        b"".join(blobs.open("k/a"))
    # And an empty object is an object
    assert blobs.put("k/empty", io.BytesIO(b""), max_bytes=10).size == 0
    assert b"".join(blobs.open("k/empty")) == b""


@pytest.mark.parametrize("key", ["../x", "a/../../b", "/abs", "a//b", "sp ace", ""])
def test_keys_that_could_leave_the_store_are_refused(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        blobs.put(key, io.BytesIO(b"x"), max_bytes=10)
