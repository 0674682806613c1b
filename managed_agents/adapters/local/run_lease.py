"""Per-session run leases: exactly one process of the embedded server runs a session's harness at a time.

`serve --workers N` runs N processes on one SQLite file. A process runs a session's harness only while it holds the
session's row in `run_leases` (owner = the process, `token` bumped on every acquisition, `expires_at` renewed by a
heartbeat). A process that dies holding leases stops renewing them: once they expire, any other process's scan
(`due`) wakes those sessions and takes them over, and the turn re-runs from the log (deterministic ids, conditional
appends: architecture "Harness").

Fencing: a process that stalled past its lease (stopped, swapped out) and wakes up after a takeover must not write
into the session. The orchestrator marks its harness thread with the lease it holds (`Fence`), and the event store
checks that mark inside the append's own write transaction (`SqliteEventStore.guard`): the append of a stale owner
fails with `LeaseLost` and writes nothing, so its steps can never interleave with the new owner's.

A wake that finds the session leased by another live process does not run it; it bumps the row's `wakes`, and the
owner runs once more before it lets go (`release` fails while `wakes` moved), so input logged by any process is
acted on. A released row keeps `expires_at` as the moment the session must be looked at again (the deadline of the
tool calls it waits for), so that timer survives the process that set it; a session released with nothing to look at
later (idle, waiting for the user, archived, deleted) has its row deleted, so the table holds the sessions in flight,
not every session ever run.

Letting go at the idle: the write that logs a turn's `session.status_idle` (end_turn) also lets go of the lease
(`let_go_at_idle`, last inside that append's transaction, when no wake arrived through another process meanwhile):
the row keeps its owner and token but no `expires_at`, which every process reads as free (`acquire` takes it, `due`
skips it). The owner's thread keeps its fence until another process acquires the row, so the step's own end stays
fenced as before; the orchestrator learns of it after the step (`let_go_in_step`) and, when it must run once more,
acquires again. Such rows are deleted by the owner's next heartbeat (`renew`), and at the start of the whole server.
One write per turn fewer than a release of its own (bench/turn_writes.py).

Claiming with the input: the write that logs a session's input from outside any run (a send: `user.*` events) also
takes the session's lease for this process when no live process holds it (`claim`, in that append's transaction),
and the wake that follows on the same thread hands it to the run it starts (`take_claim`, checked by one read;
`adopt`), which then needs no acquisition of its own: one write per turn fewer again. A held lease is left alone:
the wake then takes the usual way (a nudge of its owner, or this process's run goes round once more). A claim no run
takes is not renewed: it expires, and a process's scan runs the session.

Tokens come from one counter (`run_lease_tokens`), bumped by every acquisition of any session: a row deleted and
made again never hands out a token an earlier acquisition had, so a fenced stale owner stays refused.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from managed_agents.adapters.local.sqlite_store import SqliteDatabase
from managed_agents.domain.events import StoredEvent

log = logging.getLogger("managed_agents.leases")

SCHEMA = """
CREATE TABLE IF NOT EXISTS run_leases (
    session_id TEXT PRIMARY KEY,
    owner TEXT,
    token INTEGER NOT NULL,
    expires_at REAL,
    wakes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS run_leases_due ON run_leases (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS run_lease_tokens (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
INSERT OR IGNORE INTO run_lease_tokens (id, last) SELECT 1, COALESCE(MAX(token), 0) FROM run_leases;
"""


class LeaseLost(BaseException):
    """This process no longer holds the session's run lease: another process took the session over.

    A BaseException, so the harness's own `except Exception` handlers (which turn failures into events) cannot
    catch it and try to append again: the fenced step ends, and the orchestrator drops the run."""


@dataclass(frozen=True)
class Lease:
    session_id: str
    token: int
    wakes: int  # the row's wake counter when this process last looked: a change means input arrived elsewhere


def process_owner() -> str:
    """A name no other process (nor this one's next incarnation) will have: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _row(conn: sqlite3.Connection, session_id: str) -> tuple[Any, ...] | None:
    """The session's lease row as (owner, token, expires_at, wakes), or None."""
    row: tuple[Any, ...] | None = conn.execute(
        "SELECT owner, token, expires_at, wakes FROM run_leases WHERE session_id = ?", (session_id,)
    ).fetchone()
    return row


def _next_token(conn: sqlite3.Connection) -> int:
    """The next lease token (inside the acquiring transaction): never one handed out before, for any session."""
    (token,) = conn.execute("UPDATE run_lease_tokens SET last = last + 1 WHERE id = 1 RETURNING last").fetchone()
    return int(token)


class SqliteRunLeases:
    def __init__(
        self,
        db: SqliteDatabase,
        *,
        ttl_seconds: float = 10.0,
        owner: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self.owner = owner or process_owner()
        self._now = now
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # session id -> token, the leases this process holds
        self._let_go: dict[str, int] = {}  # session id -> token, let go at an idle: rows the heartbeat deletes
        self._stop = threading.Event()
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.query(statement)

    # -- holding ------------------------------------------------------------------------------------------------

    def acquire(self, session_id: str, *, nudge: bool = True) -> Lease | None:
        """The session's lease for this process, or None when another live process holds it (then, with `nudge`,
        that owner is told to run the session once more before it lets go)."""
        now = self._now()
        with self.db.transaction() as conn:
            row = _row(conn, session_id)
            if row is not None:
                owner, _, expires_at, _ = row
                held_elsewhere = owner is not None and owner != self.owner and (expires_at or 0) > now
                if held_elsewhere:
                    if nudge:
                        conn.execute("UPDATE run_leases SET wakes = wakes + 1 WHERE session_id = ?", (session_id,))
                    return None
            lease = self._take(conn, session_id, row, now)
        with self._lock:
            self._held[session_id] = lease.token
        return lease

    def release(self, lease: Lease, *, wake_at: float | None = None) -> Lease | None:
        """Let go of the lease; `wake_at`: when the session must be looked at again (any process's scan does).
        Returns None when released (or lost already), or the renewed lease when a wake arrived through another
        process meanwhile: the caller runs the session once more."""
        with self._lock:  # before the write: a heartbeat meanwhile must not take the released lease for a lost one
            if self._held.get(lease.session_id) == lease.token:
                del self._held[lease.session_id]
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT owner, token, wakes FROM run_leases WHERE session_id = ?", (lease.session_id,)
            ).fetchone()
            if row is None or row[0] != self.owner or row[1] != lease.token:
                again = None  # taken over: the new owner runs it
            elif row[2] != lease.wakes:
                conn.execute(
                    "UPDATE run_leases SET expires_at = ? WHERE session_id = ?",
                    (self._now() + self.ttl, lease.session_id),
                )
                again = Lease(lease.session_id, lease.token, int(row[2]))
            elif wake_at is None:  # nothing to look at later: the row goes (a later wake makes it again)
                conn.execute("DELETE FROM run_leases WHERE session_id = ?", (lease.session_id,))
                again = None
            else:
                conn.execute(
                    "UPDATE run_leases SET owner = NULL, expires_at = ? WHERE session_id = ?",
                    (wake_at, lease.session_id),
                )
                again = None
        if again is not None:
            with self._lock:
                self._held[lease.session_id] = again.token
        return again

    def holds(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._held

    # -- fencing ------------------------------------------------------------------------------------------------

    def fence(self, lease: Lease | None) -> None:
        """Mark the calling thread as writing under `lease` (None: clear); its appends to that session are fenced."""
        self._local.lease = lease

    def guard(self, conn: sqlite3.Connection, session_id: str) -> None:
        """Inside an append's write transaction: refuse it when the calling thread writes under a lease of this
        session that is no longer this process's (SqliteEventStore.guard)."""
        lease: Lease | None = getattr(self._local, "lease", None)
        if lease is None or lease.session_id != session_id:
            return
        row = conn.execute("SELECT owner, token FROM run_leases WHERE session_id = ?", (session_id,)).fetchone()
        if row is None or row[0] != self.owner or row[1] != lease.token:
            raise LeaseLost(f"session {session_id}: run lease {lease.token} is no longer held by {self.owner}")

    def settle(self, conn: sqlite3.Connection, session_id: str, stored: Sequence[StoredEvent]) -> None:
        """Last inside each append's write transaction (SqliteEventStore.before_commit): a run's thread lets go at the
        idle that ends its turn (`let_go_at_idle`); any other thread that logs user input claims the lease for the
        run its wake starts (`claim`)."""
        if getattr(self._local, "lease", None) is not None:
            self.let_go_at_idle(conn, session_id, stored)
        elif any(e.type.startswith("user.") for e in stored):
            self.claim(conn, session_id)

    def claim(self, conn: sqlite3.Connection, session_id: str) -> None:
        """Inside the write that logs a session's input (a send), outside any run: take the session's lease for the
        run the send's wake starts here, when no live process holds it (module docstring). The claim is the calling
        thread's until that wake takes it (`take_claim`); a held lease is left alone (the wake nudges its owner, or
        this process's run goes round once more)."""
        now = self._now()
        row = _row(conn, session_id)
        if row is not None:
            owner, _, expires_at, _ = row
            if owner is not None and expires_at is not None and expires_at > now:
                return
        claims: dict[str, Lease] = self._local.__dict__.setdefault("claims", {})
        claims[session_id] = self._take(conn, session_id, row, now)

    def _take(self, conn: sqlite3.Connection, session_id: str, row: tuple[Any, ...] | None, now: float) -> Lease:
        """Inside a write transaction: the session's lease row (`row` as `_row` read it; None: none yet) made this
        process's, with a new token and a fresh expiry."""
        token = _next_token(conn)
        if row is None:
            conn.execute(
                "INSERT INTO run_leases (session_id, owner, token, expires_at, wakes) VALUES (?,?,?,?,0)",
                (session_id, self.owner, token, now + self.ttl),
            )
            return Lease(session_id, token, 0)
        conn.execute(
            "UPDATE run_leases SET owner = ?, token = ?, expires_at = ? WHERE session_id = ?",
            (self.owner, token, now + self.ttl, session_id),
        )
        return Lease(session_id, token, int(row[3]))

    def take_claim(self, session_id: str) -> Lease | None:
        """The lease an append of the calling thread claimed for the session (`claim`), if it still is this process's
        as claimed (one read: a claim whose write did not commit, or that another acquisition replaced, is None)."""
        claims: dict[str, Lease] | None = getattr(self._local, "claims", None)
        lease = claims.pop(session_id, None) if claims else None
        if lease is None:
            return None
        rows = self.db.query("SELECT owner, token FROM run_leases WHERE session_id = ?", (session_id,))
        if not rows or rows[0][0] != self.owner or rows[0][1] != lease.token:
            return None
        return lease

    def adopt(self, lease: Lease) -> None:
        """A claimed lease taken by the run on the calling thread: held (the heartbeat renews it) and fenced."""
        with self._lock:
            self._held[lease.session_id] = lease.token
        self.fence(lease)

    def let_go_at_idle(self, conn: sqlite3.Connection, session_id: str, stored: Sequence[StoredEvent]) -> None:
        """Inside a run's append (`settle`): when the calling thread's run logs the idle that ends the session's turn,
        let go of the lease in that same write (module docstring), unless a wake arrived through another process
        meanwhile (the release would run once more: it is left to it)."""
        lease: Lease | None = getattr(self._local, "lease", None)
        if lease is None or lease.session_id != session_id or not stored or stored[-1].type != "session.status_idle":
            return
        stop = stored[-1].payload.get("stop_reason")
        if not isinstance(stop, dict) or stop.get("type") != "end_turn":
            return
        let_go = conn.execute(
            "UPDATE run_leases SET expires_at = NULL WHERE session_id = ? AND owner = ? AND token = ? AND wakes = ?",
            (session_id, self.owner, lease.token, lease.wakes),
        ).rowcount
        self._local.let_go = lease.token if let_go else None

    def let_go_in_step(self, lease: Lease) -> bool:
        """After a step run under `lease` on the calling thread: whether that step let go of it at its idle (then the
        lease is no longer held: a step after it acquires again). Clears the mark."""
        token = getattr(self._local, "let_go", None)
        self._local.let_go = None
        if token != lease.token:
            return False
        with self._lock:
            if self._held.get(lease.session_id) == token:
                del self._held[lease.session_id]
            self._let_go[lease.session_id] = token
        return True

    # -- heartbeat and takeover ---------------------------------------------------------------------------------

    def renew(self) -> list[str]:
        """Extend every lease this process holds, and delete the rows of those it let go at an idle and nobody took
        since (one write); returns the sessions it found it had lost."""
        with self._lock:
            held = dict(self._held)
            gone, self._let_go = self._let_go, {}
        if not held and not gone:
            return []
        with self.db.transaction() as conn:
            conn.executemany(
                "DELETE FROM run_leases WHERE session_id = ? AND owner = ? AND token = ? AND expires_at IS NULL",
                [(sid, self.owner, token) for sid, token in gone.items()],
            )
            if not held:
                return []
            # the leases held, each as held (not the rows let go, nor those claimed by a send and not yet run: a
            # claim no run took expires, and any process's scan then runs the session). A lease whose step let go
            # of it at the idle in a write that committed after `held` was read is still in `held` (its thread
            # learns of it after the step: let_go_in_step) but free in the store (`expires_at IS NULL`): renewing
            # it made it live again with no run behind it, and the next send's run, through another process, waited
            # for it to expire (bench/concurrent_sessions.py --workers 2: 2-4 of 100 sessions stalled ~15 s)
            expires = self._now() + self.ttl
            conn.executemany(
                "UPDATE run_leases SET expires_at = ? WHERE session_id = ? AND owner = ? AND token = ?"
                " AND expires_at IS NOT NULL",
                [(expires, sid, self.owner, token) for sid, token in held.items()],
            )
            rows = conn.execute("SELECT session_id, token FROM run_leases WHERE owner = ?", (self.owner,))
            mine = {str(sid): int(token) for sid, token in rows}
        with self._lock:  # still held as it was (not released nor re-acquired meanwhile) and gone from the store
            lost = [sid for sid, token in held.items() if mine.get(sid) != token and self._held.get(sid) == token]
            for sid in lost:
                del self._held[sid]
        return lost

    def due(self) -> list[str]:
        """Sessions someone must run now: leased by a process that stopped renewing, or released with a wake time
        that has passed."""
        rows = self.db.query(
            "SELECT session_id FROM run_leases WHERE expires_at IS NOT NULL AND expires_at < ? LIMIT 1000",
            (self._now(),),
        )
        return [str(r[0]) for r in rows]

    def clear(self) -> int:
        """At the start of the whole server: every lease belongs to a process of the last run, which is gone."""
        with self.db.transaction() as conn:
            # rows with nothing to look at later (let go at an idle, or released before releases deleted them): gone
            conn.execute("DELETE FROM run_leases WHERE expires_at IS NULL")
            cur = conn.execute("UPDATE run_leases SET owner = NULL, expires_at = ? WHERE owner IS NOT NULL", (0.0,))
            return cur.rowcount

    def start(self, wake: Callable[[str], object], lost: Callable[[str], object]) -> None:
        """The heartbeat (renew, a third of the TTL) and the takeover scan (`due` -> `wake`) on one thread."""
        interval = max(0.05, self.ttl / 3)

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    for sid in self.renew():
                        log.warning("run lease lost", extra={"session_id": sid})
                        lost(sid)
                    for sid in self.due():
                        wake(sid)
                except Exception:
                    log.exception("run lease heartbeat failed")

        threading.Thread(target=loop, name="run-leases", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
