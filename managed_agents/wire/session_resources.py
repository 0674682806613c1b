"""Session resource request models (api-reference §2.3, §2.3.2): every resource type the SDK defines.

`resources` on session create takes any of the three; `resources.add` only `file`; `resources.update` only rotates a
`github_repository` token. What each type means, and which are served, is services/session_resources.py's business.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from managed_agents.wire.common import Params

MAX_MOUNT_PATH = 1024
MAX_TOKEN = 4096
MAX_URL = 2048

MountPath = Annotated[str, Field(min_length=1, max_length=MAX_MOUNT_PATH)]
Token = Annotated[str, Field(min_length=1, max_length=MAX_TOKEN)]


class BranchCheckoutParams(Params):
    type: Literal["branch"]
    name: Annotated[str, Field(min_length=1, max_length=255)]


class CommitCheckoutParams(Params):
    type: Literal["commit"]
    sha: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$")]


Checkout = Annotated[BranchCheckoutParams | CommitCheckoutParams, Field(discriminator="type")]


class FileResourceParams(Params):
    type: Literal["file"]
    file_id: Annotated[str, Field(min_length=1, max_length=256)]
    mount_path: MountPath | None = None


class GitHubRepositoryResourceParams(Params):
    type: Literal["github_repository"]
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL)]
    authorization_token: Token | None = None
    checkout: Checkout | None = None
    mount_path: MountPath | None = None


class MemoryStoreResourceParams(Params):
    type: Literal["memory_store"]
    memory_store_id: Annotated[str, Field(min_length=1, max_length=256)]
    access: Literal["read_write", "read_only"] | None = None
    instructions: Annotated[str, Field(max_length=4096)] | None = None


ResourceParams = Annotated[
    FileResourceParams | GitHubRepositoryResourceParams | MemoryStoreResourceParams, Field(discriminator="type")
]


class ResourceUpdateParams(Params):
    authorization_token: Token
