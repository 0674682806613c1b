"""Run leases (adapters/local/run_lease.py): one owner per session, nudges, takeover on expiry, fenced appends."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from managed_agents.adapters.local.run_lease import Lease, LeaseLost, SqliteRunLeases
from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.domain.events import NewEvent
from managed_agents.domain.ids import new_id


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def parts(tmp_path: Path) -> tuple[SqliteDatabase, Clock, SqliteRunLeases, SqliteRunLeases]:
    db, clock = SqliteDatabase(tmp_path / "db.sqlite"), Clock()
    a = SqliteRunLeases(db, ttl_seconds=10, owner="a", now=clock)
    b = SqliteRunLeases(db, ttl_seconds=10, owner="b", now=clock)
    return db, clock, a, b


def test_one_owner_at_a_time_and_a_nudge_makes_the_owner_run_once_more(parts) -> None:  # type: ignore[no-untyped-def]
    _, _, a, b = parts
    sid = "sesn_" + uuid.uuid4().hex
    # Given process a holds the session's lease
    lease = a.acquire(sid)
    assert lease is not None
    # When process b is woken for the same session
    # Then it does not get the lease, and a's release asks a to run once more (input arrived through b)
    assert b.acquire(sid) is None
    again = a.release(lease)
    assert again is not None and again.token == lease.token
    # And after that run a lets go, and b may take the session
    assert a.release(again) is None
    taken = b.acquire(sid)
    assert taken is not None and taken.token == lease.token + 1


def test_a_takeover_probe_does_not_nudge_a_live_owner(parts) -> None:  # type: ignore[no-untyped-def]
    _, _, a, b = parts
    sid = "sesn_" + uuid.uuid4().hex
    lease = a.acquire(sid)
    assert lease is not None
    assert b.acquire(sid, nudge=False) is None
    assert a.release(lease) is None


def test_an_expired_lease_is_due_and_taken_over_and_the_stale_owner_is_fenced(parts) -> None:  # type: ignore[no-untyped-def]
    db, clock, a, b = parts
    events = SqliteEventStore(db)
    events.guard = lambda conn, sid: (a.guard(conn, sid), b.guard(conn, sid))  # both "processes" share the store
    sid = "sesn_" + uuid.uuid4().hex
    # Given a holds the lease and writes under it
    lease = a.acquire(sid)
    assert lease is not None
    a.fence(lease)
    events.append(sid, [NewEvent(new_id("event"), "agent.message", {"n": 1})])
    # When a stops renewing (dies or stalls) past the lease's expiry
    assert sid not in b.due()
    clock.t += 11
    # Then the session is due, b takes it over, and a's next append writes nothing
    assert sid in b.due()
    taken = b.acquire(sid, nudge=False)
    assert taken is not None
    with pytest.raises(LeaseLost):
        events.append(sid, [NewEvent(new_id("event"), "agent.message", {"n": 2})])
    a.fence(None)  # (one thread plays both processes here)
    b.fence(taken)
    events.append(sid, [NewEvent(new_id("event"), "agent.message", {"n": 3})])
    assert [e.payload["n"] for e in events.read(sid)] == [1, 3]
    # And a's heartbeat reports the loss, and its release leaves b's lease alone
    assert a.renew() == [sid]
    assert a.release(lease) is None
    assert sid not in b.due()


def test_a_released_lease_with_a_wake_time_is_due_then(parts) -> None:  # type: ignore[no-untyped-def]
    _, clock, a, b = parts
    sid = "sesn_" + uuid.uuid4().hex
    lease = a.acquire(sid)
    assert lease is not None
    # Given the session waits for tool results until t+30 and its owner let go
    assert a.release(lease, wake_at=clock.t + 30) is None
    # Then nobody must look at it before then, anybody after (the owner may be gone by then)
    assert sid not in b.due()
    clock.t += 31
    assert sid in b.due()


def test_clearing_frees_every_lease_of_the_last_run(parts) -> None:  # type: ignore[no-untyped-def]
    _, _, a, b = parts
    sid = "sesn_" + uuid.uuid4().hex
    assert a.acquire(sid) is not None
    assert b.clear() == 1
    assert b.acquire(sid) is not None


def _rows(db: SqliteDatabase, sid: str) -> int:
    return int(db.query("SELECT COUNT(*) FROM run_leases WHERE session_id = ?", (sid,))[0][0])


def test_a_session_let_go_with_nothing_to_look_at_later_leaves_no_row(parts) -> None:  # type: ignore[no-untyped-def]
    db, clock, a, b = parts
    sid = "sesn_" + uuid.uuid4().hex
    # Given a session run to idle (or to the user's turn, or archived): released without a wake time
    lease = a.acquire(sid)
    assert lease is not None and _rows(db, sid) == 1
    assert a.release(lease) is None
    # Then its row is gone: the table holds the sessions in flight, not every session ever run
    assert _rows(db, sid) == 0
    # And one waiting for tool results keeps its row, the timer of its deadline, until it is let go for good
    lease = a.acquire(sid)
    assert lease is not None
    assert a.release(lease, wake_at=clock.t + 30) is None
    assert _rows(db, sid) == 1
    clock.t += 31
    assert sid in b.due()
    taken = b.acquire(sid, nudge=False)
    assert taken is not None
    assert b.release(taken) is None
    assert _rows(db, sid) == 0 and sid not in b.due()
    # And the start-up clear drops rows released before releases deleted them
    db.query(
        "INSERT INTO run_leases (session_id, owner, token, expires_at, wakes) VALUES ('sesn_old', NULL, 1, NULL, 0)"
    )
    b.clear()
    assert _rows(db, "sesn_old") == 0


def test_a_stale_owner_stays_fenced_after_the_row_was_deleted_and_made_again(parts) -> None:  # type: ignore[no-untyped-def]
    db, clock, a, b = parts
    events = SqliteEventStore(db)
    events.guard = lambda conn, sid: (a.guard(conn, sid), b.guard(conn, sid))
    sid = "sesn_" + uuid.uuid4().hex
    # Given a writes under a lease, then stalls past its expiry
    stale = a.acquire(sid)
    assert stale is not None
    a.fence(stale)
    clock.t += 11
    # When b takes the session over and runs it to idle (its row deleted), and a later acquires it anew
    taken = b.acquire(sid, nudge=False)
    assert taken is not None and b.release(taken) is None
    again = a.acquire(sid)
    assert again is not None
    # Then no token was handed out twice, and the stalled thread's append (under its old lease) writes nothing
    assert len({stale.token, taken.token, again.token}) == 3
    with pytest.raises(LeaseLost):
        events.append(sid, [NewEvent(new_id("event"), "agent.message", {"n": 1})])
    assert events.read(sid) == []


def _idle(stop: str = "end_turn") -> NewEvent:
    return NewEvent(new_id("event"), "session.status_idle", {"stop_reason": {"type": stop}})


def _fenced(owner: SqliteRunLeases) -> tuple[str, Lease]:
    """A new session whose lease `owner` holds, with the calling thread fenced under it (a run's thread)."""
    sid = "sesn_" + uuid.uuid4().hex
    lease = owner.acquire(sid)
    assert lease is not None
    owner.fence(lease)
    return sid, lease


def _leased_store(db: SqliteDatabase, *owners: SqliteRunLeases) -> SqliteEventStore:
    """The event store as the embedded runtime wires it (wiring.py), for one or two "processes" sharing it."""
    events = SqliteEventStore(db)
    events.guard = lambda conn, sid: [o.guard(conn, sid) for o in owners] and None
    events.before_commit = lambda conn, sid, stored: [o.settle(conn, sid, stored) for o in owners] and None
    return events


def _count_writes(db: SqliteDatabase) -> list[int]:
    writes = [0]
    inner = db.transaction

    def counted():  # type: ignore[no-untyped-def]
        writes[0] += 1
        return inner()

    db.transaction = counted  # type: ignore[method-assign]
    return writes


def test_the_idle_that_ends_a_turn_lets_go_of_the_lease_in_its_own_write(parts) -> None:  # type: ignore[no-untyped-def]
    db, clock, a, b = parts
    events = _leased_store(db, a, b)
    sid, lease = _fenced(a)
    writes = _count_writes(db)
    # When a's run logs the idle that ends the turn
    events.append(sid, [NewEvent(new_id("event"), "agent.message", {"n": 1})])
    assert not a.let_go_in_step(lease)  # (a message alone keeps it)
    events.append(sid, [NewEvent(new_id("event"), "span.model_request_end", {}), _idle()])
    # Then that same write let go of the lease: no release of its own, nobody is due, and b takes it without a nudge
    assert writes[0] == 2
    assert a.let_go_in_step(lease) and not a.holds(sid)
    assert sid not in b.due()
    clock.t += 60  # (never due: nothing to look at later)
    assert sid not in a.due()
    taken = b.acquire(sid)
    assert taken is not None and taken.wakes == lease.wakes
    # And a's thread, still fenced with the old lease, writes nothing more once b holds it
    with pytest.raises(LeaseLost):
        events.append(sid, [NewEvent(new_id("event"), "agent.message", {"n": 2})])
    # And a's heartbeat leaves b's row alone
    assert a.renew() == []
    assert _rows(db, sid) == 1 and b.holds(sid)


def test_a_lease_let_go_at_an_idle_leaves_no_row_after_the_owners_heartbeat(parts) -> None:  # type: ignore[no-untyped-def]
    db, _, a, b = parts
    events = _leased_store(db, a, b)
    sid, lease = _fenced(a)
    events.append(sid, [_idle()])
    assert a.let_go_in_step(lease)
    # Given the row is still there (free) after the step
    assert _rows(db, sid) == 1
    # When a's heartbeat runs
    assert a.renew() == []
    # Then the row is gone: the table keeps holding the sessions in flight only
    assert _rows(db, sid) == 0
    # And the start-up clear drops such rows too (a process that died before its heartbeat)
    other = "sesn_" + uuid.uuid4().hex
    again = a.acquire(other)
    assert again is not None
    a.fence(again)
    events.append(other, [_idle()])
    assert b.clear() == 0 and _rows(db, other) == 0


def test_a_heartbeat_between_the_idle_write_and_the_end_of_its_step_leaves_the_lease_free(parts) -> None:  # type: ignore[no-untyped-def]
    db, clock, a, b = parts
    events = _leased_store(db, a, b)
    sid, lease = _fenced(a)
    # Given a's run logged the idle that ends the turn (letting go of the lease in that write), and its thread has
    # not yet learned so (let_go_in_step comes after the step)
    events.append(sid, [_idle()])
    # When a's heartbeat runs in between
    assert a.renew() == []
    # Then the lease stays free: the next input, logged through b, is claimed there at once, not left to wait for
    # a lease a's heartbeat made live again with no run behind it (b's wake then nudged a, which had nothing to run)
    assert a.let_go_in_step(lease)
    clock.t += 1
    events.append(sid, [_message()])
    assert b.take_claim(sid) is not None


def test_the_idle_keeps_the_lease_when_a_wake_came_through_another_process(parts) -> None:  # type: ignore[no-untyped-def]
    db, _, a, b = parts
    events = _leased_store(db, a, b)
    sid, lease = _fenced(a)
    # Given b was woken for the session during a's turn (it nudged a)
    assert b.acquire(sid) is None
    # When a's run logs the idle
    events.append(sid, [_idle()])
    # Then a still holds the lease, and its release asks it to run once more (as before)
    assert not a.let_go_in_step(lease) and a.holds(sid)
    assert b.acquire(sid, nudge=False) is None
    again = a.release(lease)
    assert again is not None


def test_only_the_idle_that_ends_the_turn_lets_go(parts) -> None:  # type: ignore[no-untyped-def]
    db, _, a, b = parts
    events = _leased_store(db, a, b)
    sid = "sesn_" + uuid.uuid4().hex
    lease = a.acquire(sid)
    assert lease is not None
    # An idle logged by a thread that runs no lease of the session (an API request) lets nothing go
    events.append(sid, [_idle()])
    assert not a.let_go_in_step(lease) and a.holds(sid)
    # Nor does one the run logs for another reason (the step after it decides: its release says)
    a.fence(lease)
    events.append(sid, [_idle("requires_action")])
    assert not a.let_go_in_step(lease) and a.holds(sid)
    assert b.acquire(sid, nudge=False) is None


def _message() -> NewEvent:
    return NewEvent(new_id("event"), "user.message", {"content": [{"type": "text", "text": "hi"}]})


def test_a_send_claims_a_free_lease_in_its_own_write_for_the_run_its_wake_starts(parts) -> None:  # type: ignore[no-untyped-def]
    db, _, a, b = parts
    events = _leased_store(db, a, b)
    sid = "sesn_" + uuid.uuid4().hex
    writes = _count_writes(db)
    # When a send (a thread with no run's lease) logs input for a session nobody holds
    events.append(sid, [_message()])
    # Then that one write took the session's lease for a: its wake gets it, with no acquisition of its own
    lease = a.take_claim(sid)
    assert writes[0] == 1 and lease is not None and b.take_claim(sid) is None
    assert a.take_claim(sid) is None  # (taken once)
    a.adopt(lease)
    assert a.holds(sid) and b.acquire(sid) is None  # b is woken meanwhile: it nudges a
    # And the run writes under it, lets go at its idle, and the release asks it to run once more (b's nudge)
    events.append(sid, [_idle()])
    assert not a.let_go_in_step(lease)
    assert a.release(lease) is not None


def test_a_send_leaves_a_held_lease_alone_and_its_claim_expires_unrenewed(parts) -> None:  # type: ignore[no-untyped-def]
    db, clock, a, b = parts
    events = _leased_store(db, a, b)
    sid = "sesn_" + uuid.uuid4().hex
    held = b.acquire(sid)
    assert held is not None
    # Given b holds the session: a send through a claims nothing (its wake nudges b the usual way)
    events.append(sid, [_message()])
    assert a.take_claim(sid) is None and b.take_claim(sid) is None
    assert b.release(held) is None
    # When a send through a claims the free lease, but no run takes the claim
    events.append(sid, [_message()])
    other = "sesn_" + uuid.uuid4().hex
    assert a.acquire(other) is not None  # (a holds something else: its heartbeat runs)
    # Then a's heartbeat does not renew the claim: it expires and the session is due for any process
    assert a.renew() == []
    clock.t += 11
    assert sid in b.due()
    assert b.acquire(sid, nudge=False) is not None
    # And the stale claim, taken late, is refused by its check
    assert a.take_claim(sid) is None


def test_a_claim_whose_write_rolled_back_is_refused(parts) -> None:  # type: ignore[no-untyped-def]
    db, _, a, b = parts
    events = _leased_store(db, a, b)
    sid = "sesn_" + uuid.uuid4().hex
    first = _message()
    events.append(sid, [first])
    assert a.take_claim(sid) is not None
    db.query("DELETE FROM run_leases")
    # When a send's write claims and then fails (here: a duplicate id, after the claim was made)
    inner = events.before_commit
    assert inner is not None

    def claim_then_fail(conn, s, stored):  # type: ignore[no-untyped-def]
        inner(conn, s, stored)
        raise RuntimeError("commit failed")

    events.before_commit = claim_then_fail
    with pytest.raises(RuntimeError):
        events.append(sid, [_message()])
    # Then nothing of it is kept, and the claim it left on the thread is refused
    assert _rows(db, sid) == 0 and a.take_claim(sid) is None
