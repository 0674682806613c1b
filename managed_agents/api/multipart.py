"""Multipart uploads read as a stream: file parts spool to a temporary file (memory up to 1 MB, then disk), never
whole into memory.

Starlette's parser treats a part without a `filename` as a text field held in memory (at most 1 MB); the official
SDK sends an upload of raw bytes exactly so (`files.upload(file=b"...")`: no filename). Here the parts named in
`file_fields` are files whatever their disposition says, with `filename` None when it gave none.
"""

from __future__ import annotations

from collections.abc import Sequence
from tempfile import SpooledTemporaryFile

from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from managed_agents.domain.errors import InvalidRequest


class _Parser(MultiPartParser):
    file_fields: Sequence[str] = ("file",)

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is None and part.field_name in self.file_fields:
            self._current_fields -= 1
            self._current_files += 1
            if self._current_files > self.max_files:
                raise MultiPartException(f"Too many files. Maximum number of files is {self.max_files}.")
            spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=self.spool_max_size)
            self._files_to_close_on_error.append(spool)
            part.file = UploadFile(file=spool, size=0, filename=None, headers=Headers(raw=part.item_headers))  # type: ignore[arg-type]


async def read_form(
    request: Request, *, file_fields: Sequence[str] = ("file",), max_files: int = 1, max_fields: int = 8
) -> FormData:
    """The request's multipart form (400 when it is not one); close it (`await form.close()`) when done."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidRequest("the body must be multipart/form-data")
    parser = _Parser(request.headers, request.stream(), max_files=max_files, max_fields=max_fields)
    parser.file_fields = file_fields
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"the multipart body could not be read: {exc.message}") from exc
