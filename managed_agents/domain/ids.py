"""Identifiers.

Resource ids are time-ordered (48-bit milliseconds + 80 random bits, Crockford base32, as in ULID) behind the
prefixes the official SDK shows (`sesn_`, `env_`, ...; api-reference §1.2). Harness event ids are *deterministic*
(a hash of session, turn key and index) so that a turn re-run after a crash produces the same ids and the
conditional append drops the duplicate (architecture: "deterministic event ids per turn").
"""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

PREFIXES = {
    "agent": "agent_",
    "environment": "env_",
    "session": "sesn_",
    "event": "sevt_",
    "api_key": "apikey_",
    "workspace": "wrkspc_",
    "request": "req_",
    "work": "work_",
    "environment_key": "envkey_",
    "file": "file_",
    "session_resource": "sesrsc_",
    "outcome": "outc_",
    "skill": "skill_",
    "skill_version": "skillver_",
    "memory_store": "memstore_",
    "memory": "mem_",
    "memory_version": "memver_",
    "deployment": "depl_",
    "deployment_run": "drun_",
    "session_thread": "sthr_",
}


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_ulid() -> str:
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    return _b32(ms, 10) + _b32(rand, 16)


def new_id(kind: str) -> str:
    return PREFIXES[kind] + "01" + new_ulid()


def deterministic_id(kind: str, *parts: str) -> str:
    """A stable id of `kind` for the given parts: concurrent creators of the same thing collide on insert."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return PREFIXES[kind] + "01" + _b32(int.from_bytes(digest[:17], "big"), 26)


def deterministic_event_id(session_id: str, key: str, index: int = 0) -> str:
    digest = hashlib.sha256(f"{session_id}\x00{key}\x00{index}".encode()).digest()
    return PREFIXES["event"] + "01" + _b32(int.from_bytes(digest[:17], "big"), 26)
