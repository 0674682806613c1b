"""Shared wire pieces: strict request bases, metadata limits, permission policies, content blocks."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

# A UTF-16 surrogate code point (U+D800-U+DFFF). JSON may spell one as an escape (`"\udfff"`, which JavaScript's
# JSON.stringify emits for a lone surrogate); Python decodes it to a string that has no UTF-8 encoding, so no store,
# log line or Messages API request could carry it. A valid pair (`"\ud83d\ude00"`) decodes to one character.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: object, path: str = "") -> tuple[str, str] | None:
    """The first lone surrogate in a decoded JSON value, keys included: (what holds it, the code point), or None."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return (f"{path.lstrip('.')}: " if path else "", f"U+{ord(found.group()):04X}") if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (found := _SURROGATE.search(key)):
                return (f"a key{' of ' + path.lstrip('.') if path else ''} ", f"U+{ord(found.group()):04X}")
            hit = _lone_surrogate(item, f"{path}.{key}")
            if hit:
                return hit
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            hit = _lone_surrogate(item, f"{path}[{i}]")
            if hit:
                return hit
    return None  # numbers, booleans, None, and nested Params (which checked their own fields)


class Params(BaseModel):
    """Request bodies reject unknown fields (style: create/update params use extra="forbid"), and every string in
    them must be text the Messages API can take: a lone surrogate is a 400 naming the field."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_lone_surrogates(cls, value: Any) -> Any:
        hit = _lone_surrogate(value)
        if hit is not None:
            where, code_point = hit
            raise PydanticCustomError(
                "lone_surrogate",
                "{where}contains a lone surrogate ({code_point}): strings must be valid Unicode, and a surrogate"
                " code point is only valid as half of a pair",
                {"where": where, "code_point": code_point},
            )
        return value


class PermissionPolicy(Params):
    type: Literal["always_allow", "always_ask", "auto"]


# The limits check_metadata enforces (services/common.py; 400 invalid_metadata), declared for the OpenAPI document.
_METADATA_LIMITS = {"maxProperties": 16, "propertyNames": {"minLength": 1, "maxLength": 64}}
Metadata = Annotated[
    dict[str, str],
    Field(json_schema_extra={**_METADATA_LIMITS, "additionalProperties": {"type": "string", "maxLength": 512}}),
]
MetadataPatch = Annotated[
    dict[str, str | None],
    Field(
        json_schema_extra={
            "propertyNames": _METADATA_LIMITS["propertyNames"],
            "additionalProperties": {"anyOf": [{"type": "string", "maxLength": 512}, {"type": "null"}]},
        }
    ),
]


class TextBlock(Params):
    type: Literal["text"]
    text: str


class Base64Source(Params):
    type: Literal["base64"]
    media_type: str
    data: str


class UrlSource(Params):
    type: Literal["url"]
    url: str


class FileSource(Params):
    type: Literal["file"]
    file_id: str


class PlainTextSource(Params):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class ImageBlock(Params):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource | FileSource, Field(discriminator="type")]


class DocumentBlock(Params):
    type: Literal["document"]
    source: Annotated[Base64Source | PlainTextSource | UrlSource | FileSource, Field(discriminator="type")]
    title: str | None = None
    context: str | None = None


class RedactedBlock(Params):
    type: Literal["redacted"]


class SearchResultText(Params):
    type: Literal["text"]
    text: str


class Citations(Params):
    enabled: bool


class SearchResultBlock(Params):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[SearchResultText]
    citations: Citations


UserContent = Annotated[TextBlock | ImageBlock | DocumentBlock | RedactedBlock, Field(discriminator="type")]
ToolResultContent = Annotated[TextBlock | ImageBlock | DocumentBlock | SearchResultBlock, Field(discriminator="type")]
