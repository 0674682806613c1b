"""The one naming rule every SecretStore adapter enforces, so the contract suite holds for all of them."""

from __future__ import annotations

import re

from managed_agents.ports import SECRET_NAME_PATTERN

_NAME_RE = re.compile(SECRET_NAME_PATTERN)


def check_secret_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"secret name {str(name)[:80]!r} does not match {SECRET_NAME_PATTERN}")
    return name
