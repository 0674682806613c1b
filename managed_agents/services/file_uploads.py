"""Uploads larger than the API takes in one request (AWS: the Lambda request cap, 6,000,000 bytes): the client sends
the bytes straight to the blob store through a presigned S3 POST, then asks the API to make them a file.

1. `POST /v1/files/uploads` `{filename, mime_type?, expires_in_seconds?}` → `{upload_id, url, fields, expires_at,
   max_bytes}`: a POST policy for one object (`uploads/<workspace>/<upload id>`) of 1 to `max_file_bytes` bytes of that
   type, valid UPLOAD_URL_SECONDS. What the upload will be called is kept beside it (`<key>.json`), so the client
   cannot change it later.
2. The client posts `fields` + the file (the last form part) to `url` (any HTTP client; S3 enforces the size).
3. `POST /v1/files/uploads/{upload_id}/complete` → the file's `BetaFileMetadata`: the object is read back through
   the Files API's own store step (streamed, SHA-256 hashed, size checked again: 413 over `max_file_bytes`), stored as
   a file, and the staged object deleted. An upload completes once (then 404).

The official SDK has no method for this: `client.beta.files.upload` of a file over the deployment's request cap is
answered 413 with a message naming this flow (api/edge.py). Only a blob store that can presign offers it (S3); the
embedded server takes files up to `max_file_bytes` through `files.upload` itself and answers 400 here.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import BinaryIO, cast

from managed_agents.domain.clock import Clock, parse_rfc3339, rfc3339
from managed_agents.domain.errors import ApiError, InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.ports import BlobStore, PresignedUploads
from managed_agents.services.files import (
    MAX_EXPIRES_SECONDS,
    MIN_EXPIRES_SECONDS,
    FileService,
    clean_filename,
    mime_type_of,
)

UPLOAD_URL_SECONDS = 3600
COMPLETE_WITHIN_SECONDS = 24 * 3600  # staged objects left longer are not completed (the bucket's lifecycle may go)
UPLOAD_PREFIX = "fupl_"


class Staging:
    """Objects a client posts straight to the blob store (a presigned POST) before the API takes them in: one per
    upload id (`<prefix><hex>`), at `uploads/<workspace>/<upload id>`, with what the upload will become kept beside it
    (`<key>.json`) so the client cannot change it later. Shared by the Files API's large uploads and skill uploads."""

    def __init__(self, blobs: BlobStore, clock: Clock, *, prefix: str, noun: str = "upload") -> None:
        self.blobs = blobs
        self.clock = clock
        self.prefix = prefix
        self.noun = noun

    def key(self, ws: str, upload_id: str) -> str:
        rest = upload_id[len(self.prefix) :]
        if not upload_id.startswith(self.prefix) or not rest.replace("-", "").isalnum():
            raise NotFound(f"{self.noun} {upload_id[:100]!r} not found")
        return f"uploads/{ws}/{upload_id}"

    def presigner(self, what: str) -> PresignedUploads:
        """The blob store as a presigner; 400 saying `what` this server takes instead when it cannot presign."""
        if not isinstance(self.blobs, PresignedUploads):
            raise InvalidRequest(f"this server has no upload URLs: its blob store is a directory, and {what}")
        return self.blobs

    def begin(self, ws: str, meta: JsonObject, *, max_bytes: int, content_type: str, what: str) -> JsonObject:
        """A new upload: `{upload_id, url, fields, expires_at, max_bytes}` (the caller adds its `type`)."""
        presigner = self.presigner(what)
        upload_id = self.prefix + secrets.token_hex(16)
        key = self.key(ws, upload_id)
        now = self.clock.now()
        kept = {**meta, "created_at": rfc3339(now)}
        self.blobs.put(f"{key}.json", io.BytesIO(json.dumps(kept).encode()), max_bytes=1 << 16)
        url, fields = presigner.presign_post(
            key, max_bytes=max_bytes, expires_seconds=UPLOAD_URL_SECONDS, content_type=content_type
        )
        expires_at = rfc3339(now + timedelta(seconds=UPLOAD_URL_SECONDS))
        return {"upload_id": upload_id, "url": url, "fields": fields, "expires_at": expires_at, "max_bytes": max_bytes}

    def staged(self, ws: str, upload_id: str) -> tuple[str, JsonObject, Iterator[bytes]]:
        """(the staged key, what the upload becomes, its bytes): 404 for an unknown, completed or expired upload, 400
        before the bytes are there."""
        key = self.key(ws, upload_id)
        try:
            meta: JsonObject = json.loads(b"".join(self.blobs.open(f"{key}.json")))
        except NotFound:
            raise NotFound(f"{self.noun} {upload_id!r} not found (or completed already)") from None
        created = parse_rfc3339(str(meta["created_at"]))
        if self.clock.now() - created > timedelta(seconds=COMPLETE_WITHIN_SECONDS):
            self.discard(key)
            raise NotFound(f"{self.noun} {upload_id!r} expired: complete an upload within {COMPLETE_WITHIN_SECONDS} s")
        try:
            chunks = self.blobs.open(key)
        except NotFound:
            raise InvalidRequest(
                f"{self.noun} {upload_id!r}: nothing was uploaded yet; POST the file to its url with its fields first"
            ) from None
        return key, meta, chunks

    def discard(self, key: str) -> None:
        self.blobs.delete(key)
        self.blobs.delete(f"{key}.json")


class LargeUploads:
    def __init__(self, files: FileService) -> None:
        self.files = files
        self.staging = Staging(files.blobs, files.svc.clock, prefix=UPLOAD_PREFIX)

    def begin(self, ws: str, body: JsonObject) -> JsonObject:
        what = f"files.upload takes files up to {self.files.max_bytes:,} bytes (max_file_bytes) directly"
        self.staging.presigner(what)
        unknown = sorted(set(body) - {"filename", "mime_type", "expires_in_seconds"})
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: unknown field (fields: filename, mime_type, expires_in_seconds)")
        raw_name = body.get("filename")
        if raw_name is not None and not isinstance(raw_name, str):
            raise InvalidRequest("filename: a string")
        mime = body.get("mime_type")
        if mime is not None and not isinstance(mime, str):
            raise InvalidRequest("mime_type: a string")
        expires_in = body.get("expires_in_seconds")
        if expires_in is not None and (
            not isinstance(expires_in, int)
            or isinstance(expires_in, bool)
            or not MIN_EXPIRES_SECONDS <= expires_in <= MAX_EXPIRES_SECONDS
        ):
            raise InvalidRequest(
                f"expires_in_seconds: an integer between {MIN_EXPIRES_SECONDS} and {MAX_EXPIRES_SECONDS}"
            )
        mime_type = mime_type_of(mime, raw_name)
        name = clean_filename(raw_name, mime_type)
        meta: JsonObject = {"filename": name, "mime_type": mime_type, "expires_in_seconds": expires_in}
        out = self.staging.begin(ws, meta, max_bytes=self.files.max_bytes, content_type=mime_type, what=what)
        return {"type": "file_upload", **out}

    def complete(self, ws: str, upload_id: str) -> JsonObject:
        key, meta, chunks = self.staging.staged(ws, upload_id)
        try:
            out = self.files.upload(
                ws,
                cast(BinaryIO, _Reader(chunks)),
                filename=str(meta["filename"]),
                content_type=str(meta["mime_type"]),
                expires_in_seconds=cast(int | None, meta.get("expires_in_seconds")),
            )
        except ApiError:
            self.staging.discard(key)  # too large: S3's own condition should have refused it; nothing is kept
            raise
        self.staging.discard(key)
        return out


class _Reader(io.RawIOBase):
    """An iterator of chunks as a readable binary stream (what FileService.upload streams from). `read(n)` returns n
    bytes unless the stream ends first (S3's managed transfer takes a short read for the end)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        parts = [self._rest]
        have = len(self._rest)
        while (size is None or size < 0 or have < size) and not self._done:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._done = True
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if size is None or size < 0:
            self._rest = b""
            return data
        self._rest = data[size:]
        return data[:size]

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
