"""The AWS BlobStore: objects in an S3 bucket under a prefix.

`put` streams the body to S3 with boto3's managed transfer (multipart above its threshold), hashing and counting it
on the way, so the API Lambda never holds a whole file; an upload over `max_bytes` is aborted and leaves nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from botocore.exceptions import ClientError

from managed_agents.adapters.blob_keys import check_key
from managed_agents.domain.errors import NotFound, RequestTooLarge, ServiceUnavailable
from managed_agents.ports import BlobInfo

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

CHUNK = 1 << 20


class _Counting:
    """A read-only file object that hashes and counts what S3's transfer reads, and stops past the cap."""

    def __init__(self, data: BinaryIO, max_bytes: int) -> None:
        self.data = data
        self.max_bytes = max_bytes
        self.size = 0
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self.data.read(n if n is not None and n >= 0 else CHUNK)
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise RequestTooLarge(f"the content is larger than the limit of {self.max_bytes} bytes")
        self.digest.update(chunk)
        return chunk


class S3BlobStore:
    def __init__(self, *, bucket: str, prefix: str = "blobs/", client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client = client
        self._lock = threading.Lock()

    @property
    def s3(self) -> S3Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3

                    self._client = boto3.client("s3")
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(
        self, key: str, data: BinaryIO, *, max_bytes: int, content_type: str = "application/octet-stream"
    ) -> BlobInfo:
        body = _Counting(data, max_bytes)
        try:
            self.s3.upload_fileobj(body, self.bucket, self._key(key), ExtraArgs={"ContentType": content_type})  # type: ignore[arg-type]
        except RequestTooLarge:
            self.delete(key)  # the managed transfer aborts its multipart upload; a small single PUT never started
            raise
        except ClientError as exc:
            raise ServiceUnavailable(f"blob {key!r} could not be stored: {exc.response['Error'].get('Code')}") from exc
        return BlobInfo(size=body.size, sha256=body.digest.hexdigest())

    def open(self, key: str) -> Iterator[bytes]:
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response["Error"].get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"blob {key!r} not found") from exc
            raise ServiceUnavailable(f"blob {key!r} could not be read: {exc.response['Error'].get('Code')}") from exc
        return obj["Body"].iter_chunks(CHUNK)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    def presign_post(
        self, key: str, *, max_bytes: int, expires_seconds: int, content_type: str
    ) -> tuple[str, dict[str, str]]:
        """A presigned S3 POST (the URL and the form fields to send with the file) that stores at most `max_bytes`
        of `content_type` at `key`, valid `expires_seconds`; S3 refuses anything else (the policy's conditions)."""
        out = self.s3.generate_presigned_post(
            self.bucket,
            self._key(key),
            Fields={"Content-Type": content_type},
            Conditions=[["content-length-range", 1, max_bytes], {"Content-Type": content_type}],
            ExpiresIn=expires_seconds,
        )
        return str(out["url"]), {k: str(v) for k, v in out["fields"].items()}
