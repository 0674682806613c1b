"""The ResourceStore contract: every adapter must pass all of it (architecture: "one contract suite run on both").

Kinds and attributes are the ones the services use, so both of the DynamoDB adapter's list paths run: `session`
`agent_id` / `status` / `environment_id` are lookup attributes (a GSI of their own), `session` `agent_version` and
`agent` `version` are not (filtered while reading the workspace's time index).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.errors import Conflict, StaleRevision
from managed_agents.domain.events import TimeRange
from managed_agents.ports import ListQuery, Record, ResourceStore
from managed_agents.services.records import mutate

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _ws() -> str:
    return f"wrkspc_test_{uuid.uuid4().hex[:12]}"


def _rec(
    kind: str,
    ws: str,
    *,
    id_: str | None = None,
    at: datetime = T0,
    archived: bool = False,
    **attrs: str | int | None,
) -> Record:
    rid = id_ or f"{kind}_{uuid.uuid4().hex}"
    return Record(kind, ws, rid, {"id": rid, "name": f"n-{rid}", "nested": {"k": [1, "2"]}}, at, 1, archived, attrs)


def _all_pages(store: ResourceStore, kind: str, ws: str, query: ListQuery) -> list[list[Record]]:
    """Follow the keyset cursor (created_at, id) of the last row of each page, as the API's page token does."""
    pages: list[list[Record]] = []
    q = query
    while True:
        rows, more = store.list_records(kind, ws, q)
        pages.append(rows)
        if not more:
            return pages
        assert rows, "a page that says more rows follow must not be empty"
        last = rows[-1]
        q = ListQuery(
            limit=q.limit,
            order=q.order,
            cursor=(rfc3339(last.created_at), last.id),
            include_archived=q.include_archived,
            created=q.created,
            equals=dict(q.equals),
            any_of=dict(q.any_of),
        )


def _ids(rows: list[Record]) -> list[str]:
    return [r.id for r in rows]


# -- single records ------------------------------------------------------------------------------------------------


def test_insert_then_get_round_trips_every_field(resource_store: ResourceStore) -> None:
    # Given a session record with typed attributes and a nested document
    ws = _ws()
    rec = _rec("session", ws, status="idle", agent_id="agent_1", agent_version=3, environment_id=None)
    # When it is inserted and read back by workspace and by id alone
    resource_store.insert(rec)
    got = resource_store.get("session", ws, rec.id)
    by_id = resource_store.get_by_id("session", rec.id)
    # Then both reads return exactly what was written
    assert got == rec and by_id == rec
    assert got is not None and got.created_at == T0 and got.created_at.tzinfo is not None
    assert got.attrs == {"status": "idle", "agent_id": "agent_1", "agent_version": 3, "environment_id": None}


def test_get_is_scoped_to_the_workspace_and_kind(resource_store: ResourceStore) -> None:
    ws, other = _ws(), _ws()
    rec = _rec("environment", ws)
    resource_store.insert(rec)
    assert resource_store.get("environment", other, rec.id) is None
    assert resource_store.get("agent", ws, rec.id) is None
    assert resource_store.get_by_id("agent", rec.id) is None
    assert resource_store.get("environment", ws, "env_missing") is None
    assert resource_store.get_by_id("environment", "env_missing") is None


def test_same_id_in_two_kinds_are_two_records(resource_store: ResourceStore) -> None:
    ws = _ws()
    resource_store.insert(_rec("agent", ws, id_="shared_1", version=1))
    resource_store.insert(_rec("environment", ws, id_="shared_1"))
    agent, env = resource_store.get("agent", ws, "shared_1"), resource_store.get("environment", ws, "shared_1")
    assert agent is not None and agent.attrs == {"version": 1}
    assert env is not None and env.attrs == {}


def test_duplicate_insert_is_a_conflict_and_changes_nothing(resource_store: ResourceStore) -> None:
    # Given a stored record
    ws = _ws()
    rec = _rec("agent", ws, version=1)
    resource_store.insert(rec)
    # When the same kind and id is inserted again, even from another workspace
    clash = Record("agent", _ws(), rec.id, {"other": True}, T0 + timedelta(days=1), attrs={"version": 9})
    with pytest.raises(Conflict, match=rec.id):
        resource_store.insert(clash)
    # Then the first record is untouched
    assert resource_store.get("agent", ws, rec.id) == rec


def test_replace_bumps_the_revision_and_keeps_created_at(resource_store: ResourceStore) -> None:
    # Given a stored session
    ws = _ws()
    rec = _rec("session", ws, status="idle", agent_id="agent_1")
    resource_store.insert(rec)
    # When it is replaced at revision 1 with a new document, attributes and archived flag
    draft = Record("session", ws, rec.id, {"id": rec.id, "status": "running"}, T0, 1, True, {"status": "running"})
    new = resource_store.replace(draft, expected_rev=1)
    # Then the stored record is the new one at revision 2
    assert new.rev == 2
    got = resource_store.get("session", ws, rec.id)
    assert got is not None
    assert (got.rev, got.doc, got.attrs, got.archived, got.created_at) == (
        2,
        draft.doc,
        {"status": "running"},
        True,
        T0,
    )


def test_replace_with_a_stale_revision_fails_and_changes_nothing(resource_store: ResourceStore) -> None:
    ws = _ws()
    rec = _rec("agent", ws, version=1)
    resource_store.insert(rec)
    resource_store.replace(_rec("agent", ws, id_=rec.id, version=2), expected_rev=1)
    with pytest.raises(StaleRevision):
        resource_store.replace(_rec("agent", ws, id_=rec.id, version=3), expected_rev=1)
    got = resource_store.get("agent", ws, rec.id)
    assert got is not None and (got.rev, got.attrs) == (2, {"version": 2})


def test_replace_of_a_missing_or_foreign_record_is_stale(resource_store: ResourceStore) -> None:
    ws = _ws()
    with pytest.raises(StaleRevision):
        resource_store.replace(_rec("agent", ws), expected_rev=1)
    rec = _rec("agent", ws)
    resource_store.insert(rec)
    with pytest.raises(StaleRevision):
        resource_store.replace(_rec("agent", _ws(), id_=rec.id), expected_rev=1)
    assert resource_store.get("agent", ws, rec.id) == rec
    assert resource_store.get_by_id("agent", "agent_never_inserted") is None


def test_delete_is_scoped_to_the_workspace(resource_store: ResourceStore) -> None:
    ws = _ws()
    rec = _rec("session", ws, status="idle")
    resource_store.insert(rec)
    assert resource_store.delete("session", _ws(), rec.id) is False
    assert resource_store.get("session", ws, rec.id) == rec
    assert resource_store.delete("session", ws, rec.id) is True
    assert resource_store.get_by_id("session", rec.id) is None
    assert resource_store.delete("session", ws, rec.id) is False
    assert resource_store.find("session", "status", ["idle"]) == []


def test_a_large_document_round_trips(resource_store: ResourceStore) -> None:
    # An agent snapshot with a 100,000-character system prompt and many tools (over DynamoDB's 400 KB item
    # limit as JSON with multi-byte text), written, replaced and listed.
    ws = _ws()
    rec = _rec("session", ws, status="idle")
    rec.doc["agent"] = {
        "system": "Réponds brièvement. " * 5000,
        "tools": [{"name": f"tool_{i}", "input_schema": {"type": "object", "i": i}} for i in range(256)],
    }
    resource_store.insert(rec)
    assert resource_store.get("session", ws, rec.id) == rec
    rec.doc["status"] = "running"
    new = resource_store.replace(rec, expected_rev=1)
    (listed,), _ = resource_store.list_records("session", ws, ListQuery())
    assert listed.doc == new.doc == rec.doc


# -- lists ---------------------------------------------------------------------------------------------------------


def _seed(store: ResourceStore, ws: str, n: int, *, tie_every: int = 3) -> list[Record]:
    """n agents; every `tie_every` share a created_at, so the id breaks the tie."""
    recs = []
    for i in range(n):
        rec = _rec("agent", ws, id_=f"agent_{uuid.uuid4().hex}", at=T0 + timedelta(seconds=i // tie_every), version=i)
        store.insert(rec)
        recs.append(rec)
    return recs


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_keyset_pages_cover_every_row_once_in_created_id_order(resource_store: ResourceStore, order: str) -> None:
    # Given 23 agents with tied timestamps in one workspace and 4 in another
    ws = _ws()
    recs = _seed(resource_store, ws, 23)
    _seed(resource_store, _ws(), 4)
    # When every page of 5 is read through the cursor
    pages = _all_pages(resource_store, "agent", ws, ListQuery(limit=5, order=order))  # type: ignore[arg-type]
    # Then the pages hold every row once, in (created_at, id) order, and only the last says no more follow
    expected = sorted(recs, key=lambda r: (r.created_at, r.id), reverse=order == "desc")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [r.id for p in pages for r in p] == _ids(expected)


def test_a_page_that_ends_exactly_at_the_last_row_says_no_more(resource_store: ResourceStore) -> None:
    ws = _ws()
    recs = sorted(_seed(resource_store, ws, 4), key=lambda r: (r.created_at, r.id))
    rows, more = resource_store.list_records("agent", ws, ListQuery(limit=4, order="asc"))
    assert (_ids(rows), more) == (_ids(recs), False)
    rows, more = resource_store.list_records("agent", ws, ListQuery(limit=3, order="asc"))
    assert (_ids(rows), more) == (_ids(recs[:3]), True)
    assert resource_store.list_records("agent", _ws(), ListQuery()) == ([], False)


def test_archived_rows_are_listed_only_on_request(resource_store: ResourceStore) -> None:
    ws = _ws()
    live = [_rec("environment", ws, at=T0 + timedelta(seconds=i)) for i in range(4)]
    gone = [_rec("environment", ws, at=T0 + timedelta(seconds=i), archived=True) for i in range(4)]
    for rec in live + gone:
        resource_store.insert(rec)
    pages = _all_pages(resource_store, "environment", ws, ListQuery(limit=3, order="asc"))
    assert {r.id for p in pages for r in p} == {r.id for r in live}
    everything = _all_pages(resource_store, "environment", ws, ListQuery(limit=3, order="asc", include_archived=True))
    assert sorted(r.id for p in everything for r in p) == sorted(r.id for r in live + gone)
    # archiving through replace takes a row out of the default list
    resource_store.replace(Record("environment", ws, live[0].id, {}, T0, archived=True), expected_rev=1)
    rows, _ = resource_store.list_records("environment", ws, ListQuery(limit=100))
    assert live[0].id not in _ids(rows) and len(rows) == 3


def test_created_at_ranges(resource_store: ResourceStore) -> None:
    ws = _ws()
    recs = [_rec("agent", ws, at=T0 + timedelta(seconds=i)) for i in range(5)]
    for rec in recs:
        resource_store.insert(rec)
    t2 = T0 + timedelta(seconds=2)

    def ids(rng: TimeRange, order: str = "asc") -> list[str]:
        return _ids(resource_store.list_records("agent", ws, ListQuery(limit=100, order=order, created=rng))[0])  # type: ignore[arg-type]

    assert ids(TimeRange(gte=t2)) == _ids(recs[2:])
    assert ids(TimeRange(gt=t2)) == _ids(recs[3:])
    assert ids(TimeRange(lt=t2)) == _ids(recs[:2])
    assert ids(TimeRange(lte=t2)) == _ids(recs[:3])
    assert ids(TimeRange(gt=T0, lt=T0 + timedelta(seconds=4)), "desc") == _ids(recs[1:4][::-1])
    assert ids(TimeRange(gte=t2, lte=t2)) == [recs[2].id]
    assert ids(TimeRange(gt=t2, lt=t2)) == []
    assert ids(TimeRange(gte=T0 + timedelta(seconds=3), lte=T0 + timedelta(seconds=1))) == []


def test_created_range_and_cursor_together(resource_store: ResourceStore) -> None:
    ws = _ws()
    recs = _seed(resource_store, ws, 12, tie_every=2)
    rng = TimeRange(gte=T0 + timedelta(seconds=1), lt=T0 + timedelta(seconds=5))
    for order in ("asc", "desc"):
        pages = _all_pages(resource_store, "agent", ws, ListQuery(limit=3, order=order, created=rng))
        inside = [r for r in recs if rng.gte <= r.created_at < rng.lt]  # type: ignore[operator]
        expected = sorted(inside, key=lambda r: (r.created_at, r.id), reverse=order == "desc")
        assert [r.id for p in pages for r in p] == _ids(expected)


def _sessions(store: ResourceStore, ws: str) -> list[Record]:
    """12 sessions over two agents, three environments and three statuses, one archived."""
    recs = []
    for i in range(12):
        rec = _rec(
            "session",
            ws,
            at=T0 + timedelta(seconds=i),
            archived=i == 5,
            status=("idle", "running", "terminated")[i % 3],
            agent_id=f"agent_{i % 2}",
            agent_version=1 + i % 4,
            environment_id=f"env_{i % 3}" if i < 9 else None,
        )
        store.insert(rec)
        recs.append(rec)
    return recs


@pytest.mark.parametrize(
    ("equals", "any_of"),
    [
        ({"agent_id": "agent_0"}, {}),  # a lookup attribute
        ({"agent_version": 2}, {}),  # an int, not a lookup attribute
        ({"agent_id": "agent_1", "agent_version": 2}, {}),  # both
        ({"environment_id": "env_1"}, {}),  # a lookup attribute some rows lack
        ({}, {"status": ("idle", "terminated")}),
        ({"agent_id": "agent_0"}, {"status": ("running", "idle")}),
        ({"agent_id": "agent_9"}, {}),  # nothing matches
    ],
)
def test_attribute_filters_page_like_the_unfiltered_list(
    resource_store: ResourceStore, equals: dict[str, str | int], any_of: dict[str, tuple[str, ...]]
) -> None:
    # Given sessions in two workspaces
    ws = _ws()
    recs = _sessions(resource_store, ws)
    _sessions(resource_store, _ws())
    for order in ("asc", "desc"):
        for include_archived in (False, True):
            # When they are listed with filters, a page of 2 at a time
            query = ListQuery(
                limit=2,
                order=order,
                include_archived=include_archived,
                equals=dict(equals),
                any_of=dict(any_of),
            )
            pages = _all_pages(resource_store, "session", ws, query)
            # Then exactly the matching rows of the workspace come back, in order, each once
            expected = [
                r
                for r in sorted(recs, key=lambda r: (r.created_at, r.id), reverse=order == "desc")
                if (include_archived or not r.archived)
                and all(r.attrs.get(k) == v for k, v in equals.items())
                and all(r.attrs.get(k) in vs for k, vs in any_of.items())
            ]
            assert [r.id for p in pages for r in p] == _ids(expected), (order, include_archived)


def test_attribute_filters_are_typed(resource_store: ResourceStore) -> None:
    ws = _ws()
    rec = _rec("session", ws, agent_id="7", agent_version=7, status="idle")
    resource_store.insert(rec)
    assert resource_store.list_records("session", ws, ListQuery(equals={"agent_version": 7}))[0] == [rec]
    assert resource_store.list_records("session", ws, ListQuery(equals={"agent_version": "7"}))[0] == []
    assert resource_store.list_records("session", ws, ListQuery(equals={"agent_id": "7"}))[0] == [rec]
    assert resource_store.list_records("session", ws, ListQuery(equals={"agent_id": 7}))[0] == []


def test_filters_follow_replaced_attributes(resource_store: ResourceStore) -> None:
    ws = _ws()
    rec = _rec("session", ws, status="idle", agent_id="agent_a", environment_id="env_a")
    resource_store.insert(rec)
    moved = Record("session", ws, rec.id, rec.doc, T0, attrs={"status": "running", "agent_id": "agent_b"})
    resource_store.replace(moved, expected_rev=1)
    assert resource_store.list_records("session", ws, ListQuery(equals={"agent_id": "agent_a"}))[0] == []
    assert _ids(resource_store.list_records("session", ws, ListQuery(equals={"agent_id": "agent_b"}))[0]) == [rec.id]
    assert resource_store.list_records("session", ws, ListQuery(equals={"environment_id": "env_a"}))[0] == []


# -- find ----------------------------------------------------------------------------------------------------------


def test_find_looks_across_workspaces(resource_store: ResourceStore) -> None:
    # Given sessions in two workspaces in several statuses
    a, b = _ws(), _ws()
    running_a = _rec("session", a, status="running")
    rescheduling_b = _rec("session", b, status="rescheduling")
    idle_a = _rec("session", a, status="idle")
    for rec in (running_a, rescheduling_b, idle_a):
        resource_store.insert(rec)
    # When the ones running or rescheduling are found (crash recovery)
    found = resource_store.find("session", "status", ["running", "rescheduling"])
    # Then both come back, with their workspaces, and nothing else of ours
    mine = {r.id: r for r in found if r.workspace_id in (a, b)}
    assert mine == {running_a.id: running_a, rescheduling_b.id: rescheduling_b}
    assert resource_store.find("session", "status", []) == []
    assert resource_store.find("session", "status", ["no_such_status"]) == []


def test_find_follows_replaced_attributes_and_kinds(resource_store: ResourceStore) -> None:
    ws = _ws()
    key = _rec("api_key", ws, hash=f"h_{uuid.uuid4().hex}")
    resource_store.insert(key)
    assert resource_store.find("api_key", "hash", [str(key.attrs["hash"])]) == [key]
    assert resource_store.find("session", "status", [str(key.attrs["hash"])]) == []
    sess = _rec("session", ws, status="running")
    resource_store.insert(sess)
    mutate(resource_store, sess, lambda r: r.attrs.update(status="idle"))
    assert sess.id not in _ids(resource_store.find("session", "status", ["running"]))
    found = [r for r in resource_store.find("session", "status", ["idle"]) if r.id == sess.id]
    assert len(found) == 1 and found[0].rev == 2


@pytest.mark.parametrize("kind", ["api_key", "environment_key"])
def test_a_key_is_found_by_its_hash_as_soon_as_it_is_written_and_until_it_is_deleted(
    resource_store: ResourceStore, kind: str
) -> None:
    # Given a key record (a client uses a key right after it was created: the lookup must see it at once)
    ws, digest = _ws(), f"h_{uuid.uuid4().hex}"
    key = _rec(kind, ws, hash=digest, environment_id="env_1")
    resource_store.insert(key)
    # Then it is found by its hash, also after a revoke (archived), and no longer once deleted
    assert _ids(resource_store.find(kind, "hash", [digest])) == [key.id]
    revoked = mutate(resource_store, key, lambda r: setattr(r, "archived", True))
    (found,) = resource_store.find(kind, "hash", [digest])
    assert found.archived and found.rev == revoked.rev
    assert resource_store.delete(kind, ws, key.id)
    assert resource_store.find(kind, "hash", [digest]) == []
    # And a hash no key has finds nothing
    assert resource_store.find(kind, "hash", [f"h_{uuid.uuid4().hex}"]) == []


def test_live_work_items_are_found_by_state_until_they_stop(resource_store: ResourceStore) -> None:
    # Given work items of two workspaces in every state (the work reaper looks for the leased ones)
    a, b = _ws(), _ws()
    items = {
        state: _rec("work", ws, state=state, session_id=f"sesn_{uuid.uuid4().hex}")
        for state, ws in (("queued", a), ("starting", a), ("active", b), ("stopping", a), ("stopped", b))
    }
    for rec in items.values():
        resource_store.insert(rec)
    mine = {a, b}
    # When the leased ones are found across workspaces
    found = [
        r for r in resource_store.find("work", "state", ["starting", "active", "stopping"]) if r.workspace_id in mine
    ]
    # Then exactly those come back, with their workspaces
    assert sorted(_ids(found)) == sorted(items[s].id for s in ("starting", "active", "stopping"))
    # And an item that stops leaves the result; one that becomes active joins it
    mutate(resource_store, items["active"], lambda r: r.attrs.update(state="stopped"))
    mutate(resource_store, items["queued"], lambda r: r.attrs.update(state="active"))
    found = [
        r for r in resource_store.find("work", "state", ["starting", "active", "stopping"]) if r.workspace_id in mine
    ]
    assert sorted(_ids(found)) == sorted(items[s].id for s in ("starting", "queued", "stopping"))
    # And a workspace's stopped items are still listed by equality (whatever index serves it)
    rows, _ = resource_store.list_records("work", b, ListQuery(limit=10, equals={"state": "stopped"}))
    assert sorted(_ids(rows)) == sorted([items["active"].id, items["stopped"].id])


# -- optimistic concurrency ----------------------------------------------------------------------------------------


def test_exactly_one_of_two_writers_at_the_same_revision_wins(resource_store: ResourceStore) -> None:
    ws = _ws()
    rec = _rec("session", ws, status="idle")
    resource_store.insert(rec)
    first = Record("session", ws, rec.id, {"by": "first"}, T0, attrs={"status": "running"})
    second = Record("session", ws, rec.id, {"by": "second"}, T0, attrs={"status": "terminated"})
    resource_store.replace(first, expected_rev=1)
    with pytest.raises(StaleRevision):
        resource_store.replace(second, expected_rev=1)
    got = resource_store.get("session", ws, rec.id)
    assert got is not None and got.doc == {"by": "first"} and got.attrs == {"status": "running"}


@pytest.mark.slow
def test_concurrent_read_modify_write_loses_no_update(resource_store: ResourceStore) -> None:
    # Given one record and 8 threads that each increment its counter 15 times through mutate() (re-read on a lost
    # race, as the harness and the API do)
    ws = _ws()
    rec = _rec("session", ws, status="idle")
    rec.doc["counter"] = 0
    resource_store.insert(rec)
    writers, per_writer = 8, 15
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def bump(r: Record) -> None:
        r.doc["counter"] = int(r.doc["counter"]) + 1  # type: ignore[call-overload]
        r.attrs["status"] = "running" if int(r.doc["counter"]) % 2 else "idle"  # type: ignore[call-overload]

    def work() -> None:
        try:
            start.wait()
            for _ in range(per_writer):
                current = resource_store.get("session", ws, rec.id)
                assert current is not None
                mutate(resource_store, current, bump, attempts=1000)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every increment landed exactly once and the revision counts them
    assert errors == []
    got = resource_store.get("session", ws, rec.id)
    assert got is not None
    assert got.doc["counter"] == writers * per_writer
    assert got.rev == 1 + writers * per_writer
    assert got.attrs["status"] == "idle"
    assert _ids(resource_store.find("session", "status", ["idle"])).count(rec.id) == 1


def test_expires_at_round_trips_and_replace_sets_or_clears_it(resource_store: ResourceStore) -> None:
    # Given a record that expires in an hour (whole seconds: DynamoDB's TTL attribute holds epoch seconds)
    ws = _ws()
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    rec = _rec("idempotency_key", ws)
    rec.expires_at = expires
    resource_store.insert(rec)
    # When it is read back
    got = resource_store.get("idempotency_key", ws, rec.id)
    # Then its expiry is kept, and a plain record has none
    assert got is not None and got.expires_at == expires
    plain = _rec("agent", ws)
    resource_store.insert(plain)
    assert (resource_store.get("agent", ws, plain.id) or plain).expires_at is None
    # And a replace moves it, or clears it
    later = expires + timedelta(hours=1)

    def extend(r: Record) -> None:
        r.expires_at = later

    assert mutate(resource_store, got, extend).expires_at == later
    assert (resource_store.get("idempotency_key", ws, rec.id) or rec).expires_at == later

    def keep(r: Record) -> None:
        r.expires_at = None

    mutate(resource_store, resource_store.get("idempotency_key", ws, rec.id) or rec, keep)
    assert (resource_store.get("idempotency_key", ws, rec.id) or rec).expires_at is None


def test_write_all_applies_every_write_or_none(resource_store: ResourceStore) -> None:
    ws = _ws()
    keep, old, moved = _rec("session", ws, agent_id="a1"), _rec("session", ws), _rec("agent", ws)
    for rec in (keep, old, moved):
        resource_store.insert(rec)
    new = _rec("session", ws, agent_id="a2")
    changed = Record(moved.kind, ws, moved.id, {**moved.doc, "name": "changed"}, moved.created_at, 1)
    # When one write's condition fails (an insert of an existing id), none of the others is made
    with pytest.raises(Conflict):
        resource_store.write_all(inserts=[new, keep], replaces=[(changed, 1)], deletes=[("session", ws, old.id)])
    assert resource_store.get("session", ws, new.id) is None and resource_store.get("session", ws, old.id) is not None
    assert resource_store.get("agent", ws, moved.id).doc["name"] == moved.doc["name"]  # type: ignore[union-attr]
    # nor when a replace's revision moved, or a delete's record is gone
    with pytest.raises(StaleRevision):
        resource_store.write_all(inserts=[new], replaces=[(changed, 7)])
    with pytest.raises(StaleRevision):
        resource_store.write_all(inserts=[new], deletes=[("session", ws, "session_gone")])
    assert resource_store.get("session", ws, new.id) is None
    # When all conditions hold, all are made together (lookups included)
    resource_store.write_all(inserts=[new], replaces=[(changed, 1)], deletes=[("session", ws, old.id)])
    assert resource_store.get("session", ws, new.id) is not None and resource_store.get("session", ws, old.id) is None
    got = resource_store.get("agent", ws, moved.id)
    assert got is not None and got.rev == 2 and got.doc["name"] == "changed"
    assert [r.id for r in resource_store.find("session", "agent_id", ["a2"])] == [new.id]
