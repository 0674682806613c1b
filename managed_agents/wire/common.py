"""Shared wire pieces: strict request bases, metadata limits, permission policies, content blocks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    """Request bodies reject unknown fields (style: create/update params use extra="forbid")."""

    model_config = ConfigDict(extra="forbid")


class PermissionPolicy(Params):
    type: Literal["always_allow", "always_ask", "auto"]


Metadata = dict[str, str]
MetadataPatch = dict[str, str | None]


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
