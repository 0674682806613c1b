"""The Files API (`client.beta.files`, api-reference §2.6): metadata in the resource store, bytes in the blob store.

A file is a workspace-scoped record of kind `file` (its wire form is the SDK's `BetaFileMetadata`) whose bytes live
under the blob key `files/<workspace>/<file id>`, hashed (SHA-256) as they are stored. Rules:
- the name kept is the final path component of the uploaded name; an empty one becomes `unnamed.<ext>` for the
  file's MIME type (`unnamed` when no extension is known);
- `expires_in_seconds` (3600 to 7,776,000) sets `expires_at`: from then on the file is gone (404 `file_expired` on
  retrieve and download, left out of lists and of `ids[]` lookups) and its bytes are deleted when it is next touched;
  the record goes by the store's TTL (DynamoDB) or purge (SQLite);
- a file is at most `max_bytes` (`ServerSettings.max_file_bytes`): 413 above it, storing nothing;
- every file is downloadable, uploaded ones too (the hosted API refuses those; here the data is the operator's);
- `scope: {type: "session", id}` marks files a session wrote (its outputs), listed with `scope_id`.
"""

from __future__ import annotations

import mimetypes
import unicodedata
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import BinaryIO, cast

from managed_agents.domain.clock import parse_rfc3339, rfc3339
from managed_agents.domain.errors import InvalidRequest, NotFound, RequestTooLarge
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_id
from managed_agents.ports import BlobStore, ListQuery, Record
from managed_agents.services.common import Services
from managed_agents.services.crud import Attrs, Collection, Kind

FILES = Kind("file", lambda: new_id("file"), not_found_code="file_not_found")
MIN_EXPIRES_SECONDS = 3600
MAX_EXPIRES_SECONDS = 7_776_000
MAX_FILENAME = 255
MAX_IDS = 100
INLINE_MAX_BYTES = 32 * 1024 * 1024  # the Messages API's request size limit
OCTET_STREAM = "application/octet-stream"
# Extensions `mimetypes` does not know on every platform, for the types agents handle most.
_EXTENSIONS = {"text/plain": ".txt", "application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}


def blob_key(workspace_id: str, file_id: str) -> str:
    return f"files/{workspace_id}/{file_id}"


def _wire(doc: JsonObject) -> JsonObject:
    """`BetaFileMetadata` has no `updated_at` nor `archived_at`: files are immutable and never archived."""
    doc.pop("updated_at", None)
    doc.pop("archived_at", None)
    return doc


def clean_filename(raw: str | None, mime_type: str) -> str:
    """The name kept for an upload: its final path component (either separator), NFC; empty -> `unnamed.<ext>`."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if name in ("", ".", ".."):
        ext = _EXTENSIONS.get(mime_type) or mimetypes.guess_extension(mime_type) or ""
        return f"unnamed{ext}"
    if len(name) > MAX_FILENAME:
        raise InvalidRequest(f"file: the file name is {len(name)} characters long; at most {MAX_FILENAME} are allowed")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise InvalidRequest(f"file: the file name contains the control character U+{ord(bad):04X}")
    return name


def mime_type_of(content_type: str | None, filename: str | None) -> str:
    """The part's declared type; when it is absent or generic, the one its name implies; else octet-stream."""
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared and declared != OCTET_STREAM:
        return declared
    guessed, _ = mimetypes.guess_type(filename or "", strict=False)
    return guessed or OCTET_STREAM


class FileService:
    def __init__(self, svc: Services, blobs: BlobStore, *, max_bytes: int) -> None:
        self.svc = svc
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.files = Collection(svc, FILES, view=_wire)

    # -- write ------------------------------------------------------------------------------------------------

    def upload(
        self,
        ws: str,
        data: BinaryIO,
        *,
        filename: str | None,
        content_type: str | None = None,
        expires_in_seconds: int | None = None,
        scope_id: str | None = None,
        output_path: str | None = None,
    ) -> JsonObject:
        """Store the bytes (streamed, hashed, at most `max_bytes`), then the metadata; a failure leaves neither.
        `output_path`: a session output's path under the outputs directory, kept as its name (services/outputs.py)."""
        if expires_in_seconds is not None and not MIN_EXPIRES_SECONDS <= expires_in_seconds <= MAX_EXPIRES_SECONDS:
            raise InvalidRequest(
                f"expires_in_seconds: must be between {MIN_EXPIRES_SECONDS} and {MAX_EXPIRES_SECONDS}, got"
                f" {expires_in_seconds}"
            )
        mime_type = mime_type_of(content_type, output_path or filename)
        name = output_path[-MAX_FILENAME:] if output_path else clean_filename(filename, mime_type)
        fid = FILES.new_id()
        key = blob_key(ws, fid)
        info = self.blobs.put(key, data, max_bytes=self.max_bytes, content_type=mime_type)
        now = self.svc.clock.now()
        expires = now + timedelta(seconds=expires_in_seconds) if expires_in_seconds is not None else None
        fields: JsonObject = {
            "filename": name,
            "mime_type": mime_type,
            "size_bytes": info.size,
            "downloadable": True,
            "expires_at": rfc3339(expires) if expires is not None else None,
            "scope": {"type": "session", "id": scope_id} if scope_id else None,
            "_sha256": info.sha256,
            **({"_output_path": output_path} if output_path else {}),
        }
        try:
            attrs: Attrs | None = {"scope_id": scope_id} if scope_id else None
            rec = self.files.insert(ws, fields, attrs=attrs, id_=fid, expires_at=expires)
        except BaseException:
            self.blobs.delete(key)
            raise
        return self.files.render(rec.doc)

    def delete(self, ws: str, fid: str) -> JsonObject:
        """Remove the metadata, then the bytes (an expired file is deleted like a live one)."""
        self.files.record(ws, fid)
        self.svc.resources.delete(FILES.name, ws, fid)
        self.blobs.delete(blob_key(ws, fid))
        return self.files.deleted(fid)

    # -- read -------------------------------------------------------------------------------------------------

    def record(self, ws: str, fid: str) -> Record:
        """A live file's record: 404 `file_not_found`, or 404 `file_expired` once its `expires_at` has passed."""
        rec = self.files.record(ws, fid)
        if self._expired(rec):
            self.blobs.delete(blob_key(ws, fid))
            raise NotFound(f"file {fid!r} expired at {rec.doc['expires_at']}", error_code="file_expired")
        return rec

    def get(self, ws: str, fid: str) -> JsonObject:
        return self.files.render(self.record(ws, fid).doc)

    def content(self, ws: str, fid: str) -> tuple[JsonObject, Iterator[bytes]]:
        """The file's metadata and its bytes in chunks."""
        rec = self.record(ws, fid)
        return self.files.render(rec.doc), self.blobs.open(blob_key(ws, fid))

    def read(self, ws: str, fid: str) -> tuple[str, bytes]:
        """A live file's MIME type and whole content, at most INLINE_MAX_BYTES (for the model's content blocks)."""
        rec = self.record(ws, fid)
        size = int(cast(int, rec.doc["size_bytes"]))
        if size > INLINE_MAX_BYTES:
            raise RequestTooLarge(
                f"file {fid} is {size:,} bytes; at most {INLINE_MAX_BYTES:,} can be given to the model in one request"
            )
        return str(rec.doc["mime_type"]), b"".join(self.blobs.open(blob_key(ws, fid)))

    def sha256(self, rec: Record) -> str:
        return str(rec.doc.get("_sha256") or "")

    def list_files(
        self, ws: str, query: ListQuery, *, scope_id: str | None = None
    ) -> tuple[list[JsonObject], str | None]:
        if scope_id is not None:
            query = ListQuery(
                limit=query.limit,
                order=query.order,
                cursor=query.cursor,
                backward=query.backward,
                equals={"scope_id": scope_id},
            )
        data, nxt = self.files.list(ws, query)
        now = self.svc.clock.now()
        return [d for d in data if not _expired_doc(d, now)], nxt

    def list_ids(self, ws: str, ids: Sequence[str], *, scope_id: str | None = None) -> list[JsonObject]:
        """The live files among `ids` (at most 100 after de-duplication), in the order given; others left out (and,
        with `scope_id`, those of other scopes)."""
        unique = list(dict.fromkeys(ids))
        if len(unique) > MAX_IDS:
            raise InvalidRequest(f"ids: at most {MAX_IDS} ids are allowed, got {len(unique)}")
        out = []
        for fid in unique:
            rec = self.svc.resources.get(FILES.name, ws, fid)
            if rec is None or self._expired(rec):
                continue
            if scope_id is None or rec.attrs.get("scope_id") == scope_id:
                out.append(self.files.render(rec.doc))
        return out

    def _expired(self, rec: Record) -> bool:
        return _expired_doc(rec.doc, self.svc.clock.now())


def _expired_doc(doc: JsonObject, now: datetime) -> bool:
    expires = doc.get("expires_at")
    return isinstance(expires, str) and parse_rfc3339(expires) <= now
