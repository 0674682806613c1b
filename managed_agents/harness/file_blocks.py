"""`image` and `document` blocks whose source is a Files API file (`{type: "file", file_id}`) reach the model as
content it can read: inlined as `base64` (images, PDFs) or `text` (plain-text documents) when the request is built,
whatever Anthropic-compatible endpoint the harness calls (it cannot be assumed to know our file ids). The log keeps
the reference; each request reads the bytes again, so a large file counts against the context like any other input.
A file that cannot be used (deleted, expired, too large, a type the block cannot carry) becomes a text block saying
so, instead of failing the turn.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import cast

from managed_agents.domain.errors import ApiError
from managed_agents.domain.events import JsonObject

# (workspace id, file id) -> (mime type, bytes); raises an ApiError (NotFound, RequestTooLarge, ...) when it cannot
FileLoader = Callable[[str, str], tuple[str, bytes]]
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def inline_file_sources(request: JsonObject, workspace_id: str, load: FileLoader) -> JsonObject:
    """The request with every file-sourced image/document block inlined. A message with such a block is a new dict
    (the request shares the transcript's: harness/context.py); the others are the transcript's own objects, as the
    request's other parts are the request's (the model adapter keeps a message's encoding by its identity)."""
    cache: dict[str, tuple[str, bytes] | ApiError] = {}
    messages: list[JsonObject] = []
    for message in cast(list[JsonObject], request.get("messages") or []):
        content = message.get("content")
        if isinstance(content, list) and (inlined := _inlined(content, workspace_id, load, cache)) is not None:
            message = {**message, "content": inlined}
        messages.append(message)
    return {**request, "messages": messages}


def _inlined(
    blocks: list[JsonObject], ws: str, load: FileLoader, cache: dict[str, tuple[str, bytes] | ApiError]
) -> list[JsonObject] | None:
    """The blocks with their files inlined, or None when none had one (the caller keeps its own object)."""
    out = [_block(b, ws, load, cache) for b in blocks]
    return out if any(new is not old for new, old in zip(out, blocks, strict=True)) else None


def _block(block: JsonObject, ws: str, load: FileLoader, cache: dict[str, tuple[str, bytes] | ApiError]) -> JsonObject:
    nested = block.get("content")
    if block.get("type") == "tool_result" and isinstance(nested, list):
        inlined = _inlined(cast(list[JsonObject], nested), ws, load, cache)
        return block if inlined is None else {**block, "content": inlined}
    source = block.get("source")
    if block.get("type") not in ("image", "document") or not isinstance(source, dict) or source.get("type") != "file":
        return block
    file_id = str(source.get("file_id"))
    if file_id not in cache:
        try:
            cache[file_id] = load(ws, file_id)
        except ApiError as exc:
            cache[file_id] = exc
    loaded = cache[file_id]
    if isinstance(loaded, ApiError):
        return _unusable(block, file_id, loaded.message)
    mime, data = loaded
    extra = {k: v for k, v in block.items() if k not in ("type", "source")}
    if block["type"] == "image":
        if mime not in IMAGE_TYPES:
            return _unusable(block, file_id, f"its type {mime} is not an image type the model takes")
        return {"type": "image", "source": _base64(mime, data), **extra}
    if mime == "application/pdf":
        return {"type": "document", "source": _base64(mime, data), **extra}
    if mime.startswith("text/") or mime in ("application/json", "application/xml"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _unusable(block, file_id, "it is not UTF-8 text")
        return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}, **extra}
    return _unusable(block, file_id, f"its type {mime} is not one a document block takes (PDF or text)")


def _base64(mime: str, data: bytes) -> JsonObject:
    return {"type": "base64", "media_type": mime, "data": base64.b64encode(data).decode()}


def _unusable(block: JsonObject, file_id: str, why: str) -> JsonObject:
    out: JsonObject = {"type": "text", "text": f"[{block['type']} from file {file_id} could not be included: {why}]"}
    if "cache_control" in block:
        out["cache_control"] = block["cache_control"]
    return out
