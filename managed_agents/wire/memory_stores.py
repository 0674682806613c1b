"""Memory store, memory and memory version request models and rules (api-reference §2.5; SDK
`types/beta/memory_store_*`, `types/beta/memory_stores/*`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from managed_agents.wire.common import Metadata, MetadataPatch, Params

MAX_PATH_BYTES = 1024
MAX_PATH_SEGMENTS = 20
MAX_CONTENT_BYTES = 100 * 1024
MAX_STORE_NAME = 255
MAX_STORE_DESCRIPTION = 1024
View = Literal["basic", "full"]
Operation = Literal["created", "modified", "deleted"]

StoreName = Annotated[str, Field(min_length=1, max_length=MAX_STORE_NAME)]
StoreDescription = Annotated[str, Field(max_length=MAX_STORE_DESCRIPTION)]
MemoryPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_BYTES)]
Content = Annotated[str, Field(max_length=MAX_CONTENT_BYTES)]
Sha256 = Annotated[str, Field(min_length=64, max_length=64, pattern=r"^[0-9a-fA-F]{64}$")]


class MemoryStoreCreateParams(Params):
    name: StoreName
    description: StoreDescription | None = None
    metadata: Metadata = Field(default_factory=dict)


class MemoryStoreUpdateParams(Params):
    name: StoreName | None = None
    description: StoreDescription | None = None
    metadata: MetadataPatch | None = None


class MemoryCreateParams(Params):
    path: MemoryPath
    content: Content | None


class ContentSha256Precondition(Params):
    type: Literal["content_sha256"]
    content_sha256: Sha256 | None = None


class MemoryUpdateParams(Params):
    content: Content | None = None
    path: MemoryPath | None = None
    precondition: ContentSha256Precondition | None = None
