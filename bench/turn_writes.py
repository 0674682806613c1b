"""Writes per scripted turn: SQLite write transactions, session-record rewrites and harness steps (embedded runtime).

Counts, not timings, so they do not depend on the machine: one session, `--turns` turns of a plain user.message and
a one-text-block answer, driven through the official SDK against the runtime in this process; every
`SqliteDatabase.transaction` is counted (by the function that opened it), every session record written whole (in an
append's transaction, `RecordSync`, or on its own, `ResourceStore.replace`) or patched in place (`RecordSync.fields`),
every `advance()` by its outcome, and every `PRAGMA busy_timeout` a connection ran. Counting starts after the
session's stream is open and stops when the last turn's idle was streamed and the run parked.

BENCH_SERVER_SRC=<dir> counts the `managed_agents` package found in <dir> (a checkout of a baseline commit, e.g.
`git archive <commit> managed_agents | tar -x -C <dir>`) instead of this checkout's, for a before/after.
Prints one JSON line: per-turn figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, os.environ.get("BENCH_SERVER_SRC") or str(Path(__file__).resolve().parents[1]))

import anthropic

import managed_agents.adapters.local.in_process_orchestrator as orchestrator
from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.local import sqlite_store
from managed_agents.api.app import create_app
from managed_agents.settings import ServerSettings
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.testing.scripted_model import ScriptedModelServer
from managed_agents.wiring import bootstrap_admin_key, build_local_runtime

counts: collections.Counter[str] = collections.Counter()
counting = False


def _opener() -> str:
    """The function (outside the store and contextlib) that opened the transaction."""
    for frame in reversed(traceback.extract_stack(limit=10)[:-3]):
        if "sqlite_store" not in frame.filename and "contextlib" not in frame.filename:
            return f"{Path(frame.filename).stem}.{frame.name}"
    return "?"


def _instrument() -> None:
    transaction = sqlite_store.SqliteDatabase.transaction

    @contextmanager
    def counted_transaction(self: Any) -> Iterator[sqlite3.Connection]:
        if counting:
            counts["write_transactions"] += 1
            counts["by_opener:" + _opener()] += 1
        with transaction(self) as conn:
            yield conn

    sqlite_store.SqliteDatabase.transaction = counted_transaction  # type: ignore[method-assign,assignment]
    sync_record = sqlite_store._sync_record

    def counted_sync(conn: Any, sync: Any, stored: Any) -> Any:
        if counting:  # (a sync that says its fields is patched in place: not a rewrite of the whole record)
            what = "record_patches" if getattr(sync, "fields", None) is not None else "record_rewrites"
            counts[f"{what}:{sync.kind}"] += 1
        return sync_record(conn, sync, stored)

    sqlite_store._sync_record = counted_sync  # type: ignore[assignment]
    replace = sqlite_store.SqliteResourceStore.replace

    def counted_replace(self: Any, rec: Any, *, expected_rev: int) -> Any:
        if counting:
            counts[f"record_rewrites:{rec.kind}"] += 1
        return replace(self, rec, expected_rev=expected_rev)

    sqlite_store.SqliteResourceStore.replace = counted_replace  # type: ignore[method-assign]
    advance = orchestrator.advance

    def counted_advance(*args: Any, **kwargs: Any) -> Any:
        out = advance(*args, **kwargs)
        if counting:
            counts["harness_steps"] += 1
            counts[f"steps:{type(out).__name__}:{getattr(out, 'reason', '')}".rstrip(":")] += 1
        return out

    orchestrator.advance = counted_advance
    connect = sqlite_store.sqlite3.connect

    class CountingConnection(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            if counting and sql.startswith("PRAGMA busy_timeout"):
                counts["busy_timeout_pragmas"] += 1
            return super().execute(sql, *args)

    def counting_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, factory=CountingConnection, **kwargs)

    sqlite_store.sqlite3 = type(sys)("sqlite3_counted")  # type: ignore[assignment]
    sqlite_store.sqlite3.__dict__.update(sqlite3.__dict__)
    sqlite_store.sqlite3.connect = counting_connect  # type: ignore[attr-defined]


def main() -> None:
    global counting
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    _instrument()
    with tempfile.TemporaryDirectory() as tmp, ScriptedModelServer(fallback="echo") as model:
        settings = ServerSettings(data_dir=str(Path(tmp) / "data"), sandbox_isolation="none")
        rt = build_local_runtime(settings, model=AnthropicMessagesModel(api_key="b", base_url=model.base_url))
        key = bootstrap_admin_key(rt)
        port = free_port()
        rt.set_api_url(f"http://127.0.0.1:{port}")
        try:
            with UvicornThread(create_app(rt), port):
                client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=key, max_retries=0)
                agent = client.beta.agents.create(name="bench", model="claude-sonnet-4-6")
                env = client.beta.environments.create(name="bench", config={"type": "cloud"})
                sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
                with client.beta.sessions.events.stream(sid) as stream:
                    events = iter(stream)
                    counting = True
                    for turn in range(args.turns):
                        text = [{"type": "text", "text": f"turn {turn}"}]
                        client.beta.sessions.events.send(sid, events=[{"type": "user.message", "content": text}])
                        while next(events).type != "session.status_idle":
                            pass
                    deadline = time.monotonic() + 10
                    while not rt.orchestrator.idle() and time.monotonic() < deadline:  # the last run parks
                        time.sleep(0.01)
                    counting = False
        finally:
            rt.close()
    per_turn = {k: round(v / args.turns, 2) for k, v in sorted(counts.items())}
    print(json.dumps({"bench": "turn_writes", "turns": args.turns, "per_turn": per_turn}), flush=True)


if __name__ == "__main__":
    main()
