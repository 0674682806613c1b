"""The idempotency rules (services/idempotency.py) on the SQLite store, with a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteResourceStore
from managed_agents.domain.errors import InvalidRequest, RequestTooLarge
from managed_agents.ports import Record
from managed_agents.services.idempotency import KIND, Claim, IdempotencyService, InProgress, StoredResponse

WS = "wrkspc_1"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> IdempotencyService:
    return IdempotencyService(SqliteResourceStore(SqliteDatabase(tmp_path / "r.db")), clock)


def test_a_second_request_while_the_first_runs_is_a_retryable_409(service: IdempotencyService) -> None:
    # Given a key claimed by a request still running
    assert isinstance(service.begin(WS, "k", "fp"), Claim)
    # When the same request arrives again
    with pytest.raises(InProgress) as info:
        service.begin(WS, "k", "fp")
    # Then it is a 409 the SDK retries (no x-should-retry: false)
    assert info.value.status == 409 and info.value.retryable


def test_a_request_that_died_half_way_is_taken_over_after_the_pending_timeout(
    service: IdempotencyService, clock: Clock
) -> None:
    # Given a claim never completed nor released (its process died)
    service.begin(WS, "k", "fp")
    # When the same request comes back after the pending timeout
    clock.at += service.pending_timeout
    # Then it gets the key and runs
    assert isinstance(service.begin(WS, "k", "fp"), Claim)


def test_a_completed_request_is_replayed_until_the_key_expires(service: IdempotencyService, clock: Clock) -> None:
    claim = service.begin(WS, "k", "fp")
    assert isinstance(claim, Claim)
    service.complete(claim, 200, '{"id":"x"}', "req_1")
    clock.at += service.ttl - timedelta(seconds=1)
    assert service.begin(WS, "k", "fp") == StoredResponse(200, '{"id":"x"}', "req_1")
    # after the key's time it is a new key: even another request may use it
    clock.at += timedelta(seconds=1)
    assert isinstance(service.begin(WS, "k", "other"), Claim)


def test_a_failed_request_releases_its_key(service: IdempotencyService) -> None:
    claim = service.begin(WS, "k", "fp")
    assert isinstance(claim, Claim)
    service.release(claim)
    assert isinstance(service.begin(WS, "k", "fp"), Claim)


def test_a_response_too_large_to_keep_is_never_run_again(service: IdempotencyService) -> None:
    # Given a store that refuses the response (DynamoDB's item limit)
    claim = service.begin(WS, "k", "fp")
    assert isinstance(claim, Claim)
    store = service.resources
    replace = store.replace

    def refuse_big(rec: Record, *, expected_rev: int) -> Record:
        if rec.doc.get("body"):
            raise RequestTooLarge("too large")
        return replace(rec, expected_rev=expected_rev)

    store.replace = refuse_big  # type: ignore[method-assign]
    service.complete(claim, 200, "x" * 10, "req_1")
    # When the request comes again
    stored = service.begin(WS, "k", "fp")
    # Then it is known done, without a body to replay
    assert stored == StoredResponse(200, None, "req_1")


def test_first_attempts_of_creates_always_run_and_retries_replay_the_latest(service: IdempotencyService) -> None:
    # Given a create made twice on purpose (first attempts)
    first = service.begin_create(WS, "apikey_1", "fp", retried=False)
    assert isinstance(first, Claim)
    service.complete(first, 200, '{"n":1}', "req_1")
    second = service.begin_create(WS, "apikey_1", "fp", retried=False)
    assert isinstance(second, Claim)
    service.complete(second, 200, '{"n":2}', "req_2")
    # When a retry of the second arrives
    replay = service.begin_create(WS, "apikey_1", "fp", retried=True)
    # Then it replays the second; another credential's retry finds nothing of it
    assert replay == StoredResponse(200, '{"n":2}', "req_2")
    assert isinstance(service.begin_create(WS, "apikey_2", "fp", retried=True), Claim)


def test_keys_are_validated_and_records_expire_in_the_store(service: IdempotencyService) -> None:
    for bad in ("", "a b", "x" * 256):
        with pytest.raises(InvalidRequest):
            service.begin(WS, bad, "fp")
    claim = service.begin(WS, "k", "fp")
    assert isinstance(claim, Claim) and claim.record.kind == KIND
    assert claim.record.expires_at == claim.record.created_at + service.ttl
    with pytest.raises(InvalidRequest, match="different request"):  # not a 409: the key is misused, not busy
        service.begin(WS, "k", "other")
