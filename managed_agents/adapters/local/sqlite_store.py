"""SQLite adapters: the embedded default for the resource store and the event log (one real file, WAL mode).

Appends run in `BEGIN IMMEDIATE` transactions, so the sequence stays gapless with concurrent writers in any
number of threads or processes; reads are keyset slices on the (session_id, seq) primary key, so a page costs
the same at event 100 and at event 100,000.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace as with_fields
from datetime import UTC, datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # (not POSIX: writers across processes wait in SQLite's busy handler alone)
    fcntl = None  # type: ignore[assignment]

from managed_agents.domain import deadline
from managed_agents.domain.clock import Clock, SystemClock, parse_rfc3339, rfc3339
from managed_agents.domain.errors import Conflict, DuplicateEvent, LogMoved, ServiceUnavailable, StaleRevision
from managed_agents.domain.events import JsonObject, NewEvent, Order, StoredEvent, TimeRange
from managed_agents.domain.lookups import LOOKUPS, lookup_attributes
from managed_agents.ports import ListQuery, OutboxEntry, Record, RecordSync

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    rev INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    attrs TEXT NOT NULL,
    doc TEXT NOT NULL,
    expires_at TEXT,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS resources_by_time ON resources (kind, workspace_id, created_at, id);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    internal TEXT,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (session_id, id);
CREATE INDEX IF NOT EXISTS events_by_type ON events (session_id, type, seq);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    workspace_id TEXT,
    data TEXT
);
"""

# One partial expression index per looked-up (kind, attribute) (domain/lookups.py): `find` and `equals` filters on
# them read the index instead of decoding every row's attrs (an API key lookup is one index probe). SQLite uses an
# expression index only for the same expression, and a partial index only where the query names its kind, so these
# queries spell the JSON path and the kind literally. Partial, not one index per attribute led by the kind: a write
# of a record's attrs (a session's status, twice a turn) maintains every index whose expression reads attrs and
# whose WHERE holds for the row, i.e. its own kind's 4, not all 17 (a status patch: 0.25 -> 0.07 ms of CPU).
_LOOKUP_ATTRS = frozenset(lookup_attributes())
_LOOKUP_PAIRS = frozenset((kind, attr) for kind, attrs in LOOKUPS.items() for attr in attrs)
_LOOKUP_INDEXES = "".join(
    f"CREATE INDEX IF NOT EXISTS resources_find_{kind}_{attr} ON resources (json_extract(attrs, '$.{attr}'))"
    f" WHERE kind = '{kind}';\n"
    for kind, attr in sorted(_LOOKUP_PAIRS)
)
# the indexes of databases made before (one per attribute, led by the kind, maintained on every attrs write)
_OLD_LOOKUP_INDEXES = "".join(f"DROP INDEX IF EXISTS resources_lookup_{attr};\n" for attr in sorted(_LOOKUP_ATTRS))


def _attr_sql(attr: str, params: list[object]) -> str:
    """The SQL of `attrs.<attr>`: the indexed literal expression for a looked-up attribute, else a bound path."""
    if attr in _LOOKUP_ATTRS and attr.isidentifier():
        return f"json_extract(attrs, '$.{attr}')"
    params.append(f"$.{attr}")
    return "json_extract(attrs, ?)"


def _kind_sql(kind: str, attrs: Iterable[str], params: list[object]) -> str:
    """The SQL of `kind = <kind>`: the literal where the query filters on a looked-up attribute of the kind (its
    partial index is used only then; bound, SQLite would prepare the statement again whenever the kind changes),
    else bound."""
    if kind.isidentifier() and any((kind, attr) in _LOOKUP_PAIRS for attr in attrs):
        return f"kind = '{kind}'"
    params.append(kind)
    return "kind = ?"


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
BUSY_TIMEOUT_MS = 30_000
# A write under a deadline needs SQLite's busy handler to give up before the deadline. A connection keeps the busy
# timeout it was given while that is at most the time left and at most _BUSY_SLACK_MS below it; a new one is set
# _BUSY_SLACK_MS / 2 below the time left, so the request writes that follow (their deadlines alike) keep it: no
# PRAGMA per write. A write without a deadline (the harness's) keeps a timeout at most _BUSY_SLACK_MS below
# BUSY_TIMEOUT_MS, else gets BUSY_TIMEOUT_MS back (once): request writes and harness writes share the connection
# (SqliteDatabase), and under the default request deadline (30 s) neither then sets it again.
_BUSY_SLACK_MS = 1_000
_RECORD_COLUMNS = "kind, id, workspace_id, created_at, rev, archived, attrs, doc, expires_at"
_EXPIRY_INDEX = "CREATE INDEX IF NOT EXISTS resources_by_expiry ON resources (expires_at) WHERE expires_at IS NOT NULL"
_BUSY = "the database is busy with another write and the request's deadline passed; nothing was done, retry"


class WriteLock:
    """This process's writers, one at a time, those answering a request first.

    A writer under a request's deadline (domain/deadline.py: an API call) is urgent: it takes the lock before any
    background writer waiting (a harness step's append, a lease heartbeat), which waits while an urgent one does.
    Under 400 sends beside 400 running turns a send used to queue behind the turns' appends (~280 ms of its ~290 ms
    in the service, bench/mixed_load.py `write_lock`), and the sends behind it for a write thread waited for all of
    that. Each kind waits in arrival order (Condition waiters are FIFO) and one waiter is woken per release."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._urgent_turn = threading.Condition(self._mutex)
        self._background_turn = threading.Condition(self._mutex)
        self._held = False
        self._urgent_waiting = 0

    def acquire(self, timeout: float | None = None, *, urgent: bool = False) -> bool:
        """Take the lock (False: `timeout` seconds passed first, nothing taken)."""
        turn = self._urgent_turn if urgent else self._background_turn
        with self._mutex:
            if urgent:
                self._urgent_waiting += 1
            try:
                ends = None if timeout is None else time.monotonic() + timeout
                while self._held or (not urgent and self._urgent_waiting):
                    left = None if ends is None else ends - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    turn.wait(left)
                self._held = True
                return True
            finally:
                if urgent:
                    self._urgent_waiting -= 1
                if not self._held:  # gave up while it was free: the wake-up it may have taken goes on
                    self._wake_next()

    def release(self) -> None:
        with self._mutex:
            self._held = False
            self._wake_next()

    def _wake_next(self) -> None:
        (self._urgent_turn if self._urgent_waiting else self._background_turn).notify()


class FileWriteLock:
    """The database's writers across processes (`serve --workers N`, the `keys` CLI beside a server), one at a time:
    an exclusive `flock` on a file beside the database, taken by the holder of this process's `WriteLock` before
    `BEGIN IMMEDIATE` and given back after its COMMIT.

    Without it a writer that found another process's transaction open waited in SQLite's busy handler, which polls
    with sleeps of up to 100 ms (bench/mixed_load.py --workers 2: 2-3 s of such waits per run, the longest 230-630
    ms). The kernel hands a lock over the moment it is given back: the longest wait fell to ~110 ms in two
    instrumented pairs of runs (the sends' p99 there did not move: it is bound by the CPU). A writer without a
    deadline (the harness's) blocks in the kernel; one under a request's deadline polls, every 0.25 ms at first and
    at most every 2 ms, up to the deadline (flock has no timeout; a writer blocked in the kernel past its deadline
    would break the 503 rule of api/edge.py). Polling is not fair: a process writing back to back can keep the lock
    from a poller until its deadline, as SQLite's busy handler could. SQLite's busy timeout still covers a writer
    that does not take this lock (an older build, the sqlite3 shell).

    The file is opened per process (an open file description inherited across a fork would be the parent's lock,
    not one of its own)."""

    def __init__(self, db_path: str) -> None:
        self.path = None if fcntl is None or db_path == ":memory:" or db_path.startswith("file:") else db_path + "-lock"
        self._fd: tuple[int, int] | None = None  # (pid, fd): the file as this process opened it

    def _file(self) -> int:
        assert self.path is not None
        pid = os.getpid()
        if self._fd is None or self._fd[0] != pid:
            self._fd = (pid, os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        return self._fd[1]

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock (False: `timeout` seconds passed first, nothing taken)."""
        if self.path is None:
            return True
        fd = self._file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
        ends, pause = time.monotonic() + timeout, 0.00025
        while True:
            left = ends - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.002)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                continue

    def release(self) -> None:
        if self.path is not None:
            fcntl.flock(self._file(), fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file if this process opened it (a process about to fork)."""
        if self._fd is not None and self._fd[0] == os.getpid():
            os.close(self._fd[1])
        self._fd = None


def _wait_now(waits: bool, left: float | None) -> float | None:
    """How long a writer holding this process's write lock may wait now for the next one (the processes' lock,
    SQLite's): not at all on the event loop before its first write (`waits` false, deadline.on_loop), else what is
    left of its deadline (None: it has none; `left` is what was left when it began)."""
    if not waits:
        return 0.0
    return None if left is None else deadline.remaining() or 0.0


class _Connection:
    """A SQLite connection and the busy timeout it was last given (`SqliteDatabase._bound_busy_wait`)."""

    __slots__ = ("busy_ms", "conn")

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self.busy_ms = BUSY_TIMEOUT_MS


class SqliteDatabase:
    """One database file; a connection per thread for reads (WAL lets readers run beside the single writer), and one
    connection for this process's write transactions, whichever thread runs them.

    Writers of this process queue on one lock (`WriteLock`: requests' writes first) before `BEGIN IMMEDIATE`.
    SQLite lets one writer in at a time anyway, and a writer that finds the database locked waits in SQLite's busy
    handler, which sleeps in steps of up to 100 ms: with a hundred sessions appending at once most of a turn's
    latency was those sleeps. The lock hands the write over the moment the previous transaction ends; its holder
    then takes `FileWriteLock`, the same hand-over between processes (other workers, the `keys` CLI beside a running
    server), and the busy timeout covers what remains (a writer that takes neither).

    The writes share one connection (used by one thread at a time: the lock's holder) so that its page cache stays
    warm: in WAL mode a connection drops its whole cache when it begins a transaction after another connection
    committed, and with a connection per thread (a hundred harness threads, the request threads) nearly every write
    transaction began by reading the tables' upper pages again from the file. A thread's reads inside its
    transaction (`query`) go to the transaction's connection, as they did when both were the thread's own.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._write_lock = WriteLock()
        self._file_lock = FileWriteLock(self.path)  # (other processes' writers)
        self._writer: _Connection | None = None  # made by the first write; used only by the write lock's holder
        conn = self._conn()
        conn.executescript(_SCHEMA)
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(resources)")}
        if "expires_at" not in columns:  # a database made before records could expire
            conn.execute("ALTER TABLE resources ADD COLUMN expires_at TEXT")
        outbox_columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(outbox)")}
        for name in ("workspace_id", "data"):  # (a database made before resource events)
            if name not in outbox_columns:
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {name} TEXT")
        conn.executescript(_OLD_LOOKUP_INDEXES + _LOOKUP_INDEXES + _EXPIRY_INDEX + ";")

    def _own(self) -> _Connection:
        """The calling thread's own connection (its reads outside a write transaction)."""
        own: _Connection | None = getattr(self._local, "own", None)
        if own is None:
            own = self._local.own = _Connection(self.path)
        return own

    def _conn(self) -> sqlite3.Connection:
        """The connection the calling thread reads with: its transaction's while it runs one, else its own."""
        tx: _Connection | None = getattr(self._local, "tx", None)
        return (tx or self._own()).conn

    @staticmethod
    def _bound_busy_wait(c: _Connection, left: float | None) -> None:
        """Give the connection a busy timeout that ends within `left` seconds (None: no deadline, the default),
        running the PRAGMA only when the current one does not fit (see _BUSY_SLACK_MS)."""
        current = c.busy_ms
        if left is None:
            if current >= BUSY_TIMEOUT_MS - _BUSY_SLACK_MS:
                return
            wanted = BUSY_TIMEOUT_MS
        else:
            ms = int(left * 1000)
            if ms - _BUSY_SLACK_MS <= current <= ms:
                return
            wanted = max(0, ms - _BUSY_SLACK_MS // 2)
        if current != wanted:
            c.conn.execute(f"PRAGMA busy_timeout={wanted}")
            c.busy_ms = wanted

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. Under a caller's deadline (domain/deadline.py: an API request) the wait for the
        write locks, this process's, the processes' and SQLite's, is bounded by the time left: ServiceUnavailable,
        nothing done. A call on the event loop (`deadline.on_loop`), before its first write commits, waits for this
        process's lock briefly and for the processes' and SQLite's not at all: WouldWait, nothing done."""
        left = deadline.remaining()
        bound = deadline.loop_bound()  # (a call on the event loop, before its first write: deadline.on_loop)
        waits = bound is None
        if bound is not None:
            if not self._write_lock.acquire(timeout=bound, urgent=True):
                raise deadline.WouldWait()
        elif left is None:
            self._write_lock.acquire()
        elif not self._write_lock.acquire(timeout=left, urgent=True):
            raise ServiceUnavailable(_BUSY)
        try:
            if not self._file_lock.acquire(_wait_now(waits, left)):
                raise ServiceUnavailable(_BUSY) if waits else deadline.WouldWait()
            try:
                yield from self._transaction(left, waits)
            finally:
                self._file_lock.release()
            deadline.wrote()
        finally:
            self._write_lock.release()

    def _transaction(self, left: float | None, waits: bool = True) -> Iterator[sqlite3.Connection]:
        """The transaction itself, both write locks held. `waits=False`: SQLite's busy handler does not wait either
        (a writer that takes neither lock, such as a backup, holds the database): WouldWait."""
        if self._writer is None:
            self._writer = _Connection(self.path)
        writer = self._writer
        conn = writer.conn
        self._bound_busy_wait(writer, _wait_now(waits, left))
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not waits and "locked" in str(exc):
                raise deadline.WouldWait() from exc
            if left is not None and "locked" in str(exc):
                raise ServiceUnavailable(_BUSY) from exc
            raise
        finally:
            if writer.busy_ms < _BUSY_SLACK_MS:  # (a deadline nearly out: the next writes do not keep it)
                self._bound_busy_wait(writer, None)
        self._local.tx = writer
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # (a COMMIT that fails, on a full disk or a deferred constraint, leaves the transaction open too: on
            # the one connection every write of the process shares, each later BEGIN would then fail)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._local.tx = None

    def close(self) -> None:
        """Close the calling thread's connection and the writes' (a process about to fork: SQLite connections must
        not cross it). No write may be running."""
        own: _Connection | None = getattr(self._local, "own", None)
        if own is not None:
            own.conn.close()
            self._local.own = None
        if self._writer is not None:
            self._writer.conn.close()
            self._writer = None
        self._file_lock.close()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        conn = self._conn()
        cur = conn.execute(sql, tuple(params))
        return list(cur.fetchall())


def _range_sql(column: str, rng: TimeRange | None, params: list[object]) -> str:
    if rng is None:
        return ""
    sql = ""
    for op, value in ((">", rng.gt), (">=", rng.gte), ("<", rng.lt), ("<=", rng.lte)):
        if value is not None:
            sql += f" AND {column} {op} ?"
            params.append(rfc3339(value))
    return sql


class SqliteEventStore:
    atomic_record_sync = True  # `append(..., sync=)` writes the record in the append's transaction
    patch_record_sync = True  # ... and a sync that says its `fields` sets just those, in place (json_set)

    def __init__(self, db: SqliteDatabase, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or SystemClock()
        # what an appended event also puts in the outbox (services/webhooks.py `outbox_events`: the webhook types and
        # their extra payload data), in the same transaction as the append: a crash cannot keep the event and lose
        # its webhook
        self.outbox_events: Callable[[StoredEvent], Sequence[tuple[str, Mapping[str, str] | None]]] | None = None
        # checked first inside each append's transaction (adapters/local/run_lease.py: a process whose run lease
        # was taken over cannot append to that session); raises to refuse the append
        self.guard: Callable[[sqlite3.Connection, str], None] | None = None
        # called last inside each append's transaction, with the events stored (adapters/local/run_lease.py: a run
        # lets go of its lease with the idle that ends its turn, in that idle's own write)
        self.before_commit: Callable[[sqlite3.Connection, str, Sequence[StoredEvent]], None] | None = None

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        sync: RecordSync | None = None,
        expected_last_seq: int | None = None,
    ) -> list[StoredEvent]:
        if not events:
            return []
        ids = [e.id for e in events]
        with self.db.transaction() as conn:
            if self.guard is not None:
                self.guard(conn, session_id)
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = ?", (session_id,)
            ).fetchone()
            if expected_last_seq is not None and last != expected_last_seq:
                _refuse_duplicates(conn, session_id, ids)  # (a batch logged already is a duplicate, moved or not)
                raise LogMoved(expected_last_seq)
            now = self.clock.now()
            stored = [
                StoredEvent(session_id, last + i + 1, e.id, e.type, now, dict(e.payload), e.internal)
                for i, e in enumerate(events)
            ]
            try:
                conn.executemany(
                    "INSERT INTO events (session_id, seq, id, type, processed_at, payload, internal)"
                    " VALUES (?,?,?,?,?,?,?)",
                    [
                        (
                            session_id,
                            s.seq,
                            s.id,
                            s.type,
                            rfc3339(now),
                            _dumps(s.payload),
                            None if s.internal is None else _dumps(s.internal),
                        )
                        for s in stored
                    ],
                )
            except sqlite3.IntegrityError:  # the unique index on (session_id, id): the transaction is rolled back
                _refuse_duplicates(conn, session_id, ids, up_to=last)  # (an id twice in the batch itself: raised)
                raise
            if self.outbox_events is not None:
                outboxed = [
                    (session_id, s.id, t, rfc3339(now), _dumps(dict(data)) if data else None)
                    for s in stored
                    for t, data in self.outbox_events(s)
                ]
                if outboxed:
                    conn.executemany(
                        "INSERT INTO outbox (session_id, event_id, type, created_at, data) VALUES (?,?,?,?,?)",
                        outboxed,
                    )
            if sync is not None:
                sync.written = _sync_record(conn, sync, stored)
            if self.before_commit is not None:
                self.before_commit(conn, session_id, stored)
        return stored

    def read(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int = 1000,
        order: Order = "asc",
        types: Sequence[str] | None = None,
        processed: TimeRange | None = None,
    ) -> list[StoredEvent]:
        rows = self._slice(
            "seq, id, type, processed_at, payload, internal",
            session_id,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            order=order,
            types=types,
            processed=processed,
        )
        return [self._row(session_id, row) for row in rows]

    def _slice(
        self,
        columns: str,
        session_id: str,
        *,
        after_seq: int,
        before_seq: int | None,
        limit: int,
        order: Order,
        types: Sequence[str] | None,
        processed: TimeRange | None,
    ) -> list[sqlite3.Row]:
        """The positional slice both readers share: a keyset range on (session_id, seq) plus the filters."""
        params: list[object] = [session_id, after_seq]
        sql = f"SELECT {columns} FROM events WHERE session_id = ? AND seq > ?"
        if before_seq is not None:
            sql += " AND seq < ?"
            params.append(before_seq)
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params.extend(types)
        sql += _range_sql("processed_at", processed, params)
        sql += f" ORDER BY seq {'DESC' if order == 'desc' else 'ASC'} LIMIT ?"
        params.append(limit)
        return self.db.query(sql, params)

    def read_wire_json(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int = 1000,
        order: Order = "asc",
        types: Sequence[str] | None = None,
        processed: TimeRange | None = None,
    ) -> list[tuple[int, str]]:
        """`read` as (seq, wire JSON) pairs spliced from the stored text: no JSON decoding or encoding at all.
        Payloads never hold `id`, `type` or `processed_at` (the wire fields put first)."""
        rows = self._slice(
            "seq, id, type, processed_at, payload",
            session_id,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            order=order,
            types=types,
            processed=processed,
        )
        out: list[tuple[int, str]] = []
        for seq, id_, type_, processed_at, payload in rows:
            head = f'{{"id":"{id_}","type":"{type_}","processed_at":"{processed_at}"'
            body = str(payload)
            out.append((int(seq), head + ("}" if body == "{}" else "," + body[1:])))
        return out

    def get(self, session_id: str, event_id: str) -> StoredEvent | None:
        rows = self.db.query(
            "SELECT seq, id, type, processed_at, payload, internal FROM events WHERE session_id = ? AND id = ?",
            (session_id, event_id),
        )
        return self._row(session_id, rows[0]) if rows else None

    def last_seq(self, session_id: str) -> int:
        rows = self.db.query("SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = ?", (session_id,))
        return int(rows[0][0])

    def delete_session(self, session_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))

    @staticmethod
    def _row(session_id: str, row: Sequence[object]) -> StoredEvent:
        seq, id_, type_, processed_at, payload, internal = row
        return StoredEvent(
            session_id=session_id,
            seq=int(str(seq)),
            id=str(id_),
            type=str(type_),
            processed_at=parse_rfc3339(str(processed_at)),
            payload=json.loads(str(payload)),
            internal=None if internal is None else json.loads(str(internal)),
        )


def _refuse_duplicates(conn: sqlite3.Connection, session_id: str, ids: list[str], up_to: int | None = None) -> None:
    """Raise DuplicateEvent if any of these event ids is in the session's log (`up_to`: at that seq or before, as
    it was before the failed insert). Asked only when an append failed (its insert broke the unique index on
    (session_id, id), or the log moved): a good append costs no read for it."""
    marks = ",".join("?" * len(ids))
    bound, params = ("", ()) if up_to is None else (" AND seq <= ?", (up_to,))
    dup = conn.execute(
        f"SELECT id FROM events WHERE session_id = ? AND id IN ({marks}){bound}", (session_id, *ids, *params)
    ).fetchall()
    if dup:
        raise DuplicateEvent([row[0] for row in dup])


def _sync_record(conn: sqlite3.Connection, sync: RecordSync, stored: list[StoredEvent]) -> Record | None:
    """Apply `sync` to its record inside the caller's write transaction (no other writer can come between)."""
    if sync.fields is not None:
        _patch_record(conn, sync, stored)
        return None
    row = conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM resources WHERE kind = ? AND id = ? AND workspace_id = ?",
        (sync.kind, sync.id, sync.workspace_id),
    ).fetchone()
    if row is None:
        return None
    rec = SqliteResourceStore._record(row)
    sync.change(rec, stored)
    rec.rev += 1
    _replace_row(conn, rec, rec.rev - 1)
    _insert_outbox(conn, sync.outbox)
    return rec


def _patch_record(conn: sqlite3.Connection, sync: RecordSync, stored: list[StoredEvent]) -> None:
    """Set the sync's `fields` in place (the next revision), with no read of the record and no rewrite of the rest
    of its document: what a whole-record `change` would write, since the rest is left as it is. A record that is
    not there is skipped (as `change` would be)."""
    assert sync.fields is not None
    doc, attrs = sync.fields(stored)
    params: list[object] = []
    sets = ["rev = rev + 1"]
    for column, fields in (("doc", doc), ("attrs", attrs)):
        if fields:
            if sync.unless is not None:  # (every SET reads the row as it was: the condition is on the old doc)
                name, values = sync.unless
                _plain(name)
                params += values
            paths = []
            for name, value in fields.items():
                _plain(name)
                paths.append("?, json(?)")
                params += [f"$.{name}", _dumps(value)]
            patched = f"json_set({column}, {', '.join(paths)})"
            if sync.unless is not None:
                marks = ",".join("?" * len(sync.unless[1]))
                cond = f"json_extract(doc, '$.{sync.unless[0]}') IN ({marks})"
                patched = f"CASE WHEN {cond} THEN {column} ELSE {patched} END"
            sets.append(f"{column} = {patched}")
    rows = conn.execute(
        f"UPDATE resources SET {', '.join(sets)} WHERE kind = ? AND id = ? AND workspace_id = ? RETURNING rev",
        (*params, sync.kind, sync.id, sync.workspace_id),
    ).fetchall()
    if not rows:
        return
    sync.patched_rev = int(rows[0][0])
    _insert_outbox(conn, sync.outbox)


def _plain(name: str) -> None:
    if not name.replace("_", "a").isalnum():
        raise ValueError(f"a record field to patch must be a plain name, got {name!r}")


def _replace_row(conn: sqlite3.Connection, new: Record, expected_rev: int) -> None:
    """Write `new` (its `rev` the next revision) over the row still at `expected_rev`, inside the caller's
    transaction; StaleRevision when the row moved or is gone."""
    cur = conn.execute(
        "UPDATE resources SET rev = ?, archived = ?, attrs = ?, doc = ?, expires_at = ?"
        " WHERE kind = ? AND id = ? AND workspace_id = ? AND rev = ?",
        (
            new.rev,
            int(new.archived),
            _dumps(new.attrs),
            _dumps(new.doc),
            None if new.expires_at is None else rfc3339(new.expires_at),
            new.kind,
            new.id,
            new.workspace_id,
            expected_rev,
        ),
    )
    if cur.rowcount != 1:
        raise StaleRevision(f"{new.kind} {new.id} changed since revision {expected_rev}")


class SqliteResourceStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def insert(self, rec: Record) -> None:
        try:
            with self.db.transaction() as conn:
                if rec.expires_at is not None:  # expiring records purge the expired ones (an index range)
                    conn.execute(
                        "DELETE FROM resources WHERE expires_at IS NOT NULL AND expires_at < ?",
                        (rfc3339(datetime.now(UTC)),),
                    )
                conn.execute(
                    f"INSERT INTO resources ({_RECORD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                    self._values(rec),
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"{rec.kind} {rec.id} already exists") from exc

    def get(self, kind: str, workspace_id: str, id_: str) -> Record | None:
        rows = self.db.query(
            f"SELECT {_RECORD_COLUMNS} FROM resources WHERE kind = ? AND id = ? AND workspace_id = ?",
            (kind, id_, workspace_id),
        )
        return self._record(rows[0]) if rows else None

    def get_by_id(self, kind: str, id_: str) -> Record | None:
        rows = self.db.query(
            f"SELECT {_RECORD_COLUMNS} FROM resources WHERE kind = ? AND id = ?",
            (kind, id_),
        )
        return self._record(rows[0]) if rows else None

    def replace(self, rec: Record, *, expected_rev: int) -> Record:
        new = with_fields(rec, rev=expected_rev + 1)
        with self.db.transaction() as conn:
            _replace_row(conn, new, expected_rev)
        return new

    def delete(self, kind: str, workspace_id: str, id_: str) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM resources WHERE kind = ? AND id = ? AND workspace_id = ?", (kind, id_, workspace_id)
            )
            return cur.rowcount == 1

    def write_all(
        self,
        *,
        inserts: Sequence[Record] = (),
        replaces: Sequence[tuple[Record, int]] = (),
        deletes: Sequence[tuple[str, str, str]] = (),
        outbox: Sequence[OutboxEntry] = (),
    ) -> None:
        """One transaction: every insert (Conflict when one exists), replace (StaleRevision when its revision moved)
        and delete (StaleRevision when it is gone), and the outbox rows of their webhook events, or none of them
        (the failure rolls the transaction back)."""
        with self.db.transaction() as conn:
            for rec in inserts:
                try:
                    conn.execute(
                        f"INSERT INTO resources ({_RECORD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", self._values(rec)
                    )
                except sqlite3.IntegrityError as exc:
                    raise Conflict(f"{rec.kind} {rec.id} already exists") from exc
            for rec, expected in replaces:
                _replace_row(conn, with_fields(rec, rev=expected + 1), expected)
            for kind, ws, id_ in deletes:
                cur = conn.execute(
                    "DELETE FROM resources WHERE kind = ? AND id = ? AND workspace_id = ?", (kind, id_, ws)
                )
                if cur.rowcount != 1:
                    raise StaleRevision(f"{kind} {id_} is gone")
            _insert_outbox(conn, outbox)

    def list_records(self, kind: str, workspace_id: str, query: ListQuery) -> tuple[list[Record], bool]:
        params: list[object] = []
        kind_sql = _kind_sql(kind, [*query.equals, *query.any_of], params)
        params.append(workspace_id)
        sql = f"SELECT {_RECORD_COLUMNS} FROM resources WHERE {kind_sql} AND workspace_id = ?"
        if not query.include_archived:
            sql += " AND archived = 0"
        sql += _range_sql("created_at", query.created, params)
        for attr, value in query.equals.items():
            sql += f" AND {_attr_sql(attr, params)} = ?"
            params.append(value)
        for attr, values in query.any_of.items():
            sql += f" AND {_attr_sql(attr, params)} IN ({','.join('?' * len(values))})"
            params.extend(values)
        desc = query.order == "desc"
        if query.cursor is not None:
            sql += f" AND (created_at, id) {'<' if desc else '>'} (?, ?)"
            params.extend(query.cursor)
        direction = "DESC" if desc else "ASC"
        sql += f" ORDER BY created_at {direction}, id {direction} LIMIT ?"
        params.append(query.limit + 1)
        rows = [self._record(r) for r in self.db.query(sql, params)]
        return rows[: query.limit], len(rows) > query.limit

    def find(self, kind: str, attr: str, values: Sequence[str]) -> list[Record]:
        if not values:
            return []
        params: list[object] = []
        kind_sql = _kind_sql(kind, [attr], params)
        where = _attr_sql(attr, params)
        rows = self.db.query(
            f"SELECT {_RECORD_COLUMNS} FROM resources WHERE {kind_sql} AND {where} IN ({','.join('?' * len(values))})",
            [*params, *values],
        )
        return [self._record(r) for r in rows]

    @staticmethod
    def _values(rec: Record) -> tuple[object, ...]:
        return (
            rec.kind,
            rec.id,
            rec.workspace_id,
            rfc3339(rec.created_at),
            rec.rev,
            int(rec.archived),
            _dumps(rec.attrs),
            _dumps(rec.doc),
            None if rec.expires_at is None else rfc3339(rec.expires_at),
        )

    @staticmethod
    def _record(row: Sequence[object]) -> Record:
        kind, id_, ws, created_at, rev, archived, attrs, doc, expires_at = row
        loaded_doc: JsonObject = json.loads(str(doc))
        return Record(
            kind=str(kind),
            workspace_id=str(ws),
            id=str(id_),
            doc=loaded_doc,
            created_at=parse_rfc3339(str(created_at)),
            rev=int(str(rev)),
            archived=bool(archived),
            attrs=json.loads(str(attrs)),
            expires_at=None if expires_at is None else parse_rfc3339(str(expires_at)),
        )


def _outbox_data(entry: OutboxEntry) -> str | None:
    return _dumps(dict(entry.data)) if entry.data else None


def _insert_outbox(conn: sqlite3.Connection, outbox: Sequence[OutboxEntry]) -> None:
    """Write resource webhook events' outbox rows inside the caller's transaction."""
    if outbox:
        conn.executemany(
            "INSERT INTO outbox (session_id, event_id, type, created_at, workspace_id, data) VALUES (?,?,?,?,?,?)",
            [
                (e.session_id, e.event_id, e.type, rfc3339(e.created_at), e.workspace_id, _outbox_data(e))
                for e in outbox
            ],
        )


class SqliteOutbox:
    """The outbox rows the event store writes (`SqliteEventStore.outbox_events`) and the resource store's `write_all`
    (resource events), oldest first (ports.Outbox)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def pending(self, limit: int = 100) -> list[OutboxEntry]:
        rows = self.db.query(
            "SELECT seq, session_id, event_id, type, created_at, workspace_id, data FROM outbox ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            OutboxEntry(str(r[0]), r[1], r[2], r[3], parse_rfc3339(r[4]), r[5], json.loads(r[6]) if r[6] else None)
            for r in rows
        ]

    def done(self, keys: Sequence[str]) -> None:
        if keys:
            with self.db.transaction() as conn:
                conn.executemany("DELETE FROM outbox WHERE seq = ?", [(int(k),) for k in keys])
