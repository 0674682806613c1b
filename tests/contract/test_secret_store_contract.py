"""The SecretStore contract, run on every adapter (encrypted files; Secrets Manager on moto)."""

from __future__ import annotations

import threading

import pytest

from managed_agents.ports import SecretStore


def test_put_then_get_round_trips_the_fields(secret_store: SecretStore) -> None:
    # Given a secret with several fields, unicode and characters JSON must escape
    value = {"access_token": 'tok-ü-"quoted"-\n', "refresh_token": "r" * 4000, "empty": ""}
    # When it is stored and read back
    secret_store.put("vaults/vlt_1/vcrd_1", value)
    # Then the same fields come back
    assert secret_store.get("vaults/vlt_1/vcrd_1") == value


def test_get_of_a_missing_secret_is_none(secret_store: SecretStore) -> None:
    assert secret_store.get("vaults/never/written") is None


def test_put_replaces_the_whole_value(secret_store: SecretStore) -> None:
    secret_store.put("a/b", {"token": "one", "extra": "x"})
    secret_store.put("a/b", {"token": "two"})
    assert secret_store.get("a/b") == {"token": "two"}


def test_names_are_independent(secret_store: SecretStore) -> None:
    secret_store.put("n/1", {"v": "1"})
    secret_store.put("n/2", {"v": "2"})
    secret_store.put("n/1x", {"v": "3"})
    assert [secret_store.get(n) for n in ("n/1", "n/2", "n/1x")] == [{"v": "1"}, {"v": "2"}, {"v": "3"}]


def test_delete_removes_and_reports_whether_there_was_one(secret_store: SecretStore) -> None:
    secret_store.put("d/1", {"v": "1"})
    secret_store.put("d/2", {"v": "2"})
    # When one is deleted twice
    assert secret_store.delete("d/1") is True
    assert secret_store.delete("d/1") is False
    # Then it is gone and its neighbour is not
    assert secret_store.get("d/1") is None
    assert secret_store.get("d/2") == {"v": "2"}


def test_a_deleted_name_can_be_written_again(secret_store: SecretStore) -> None:
    secret_store.put("again/1", {"v": "old"})
    secret_store.delete("again/1")
    secret_store.put("again/1", {"v": "new"})
    assert secret_store.get("again/1") == {"v": "new"}


@pytest.mark.parametrize("bad", ["", "has space", "a" * 201, "semi;colon", "new\nline"])
def test_names_outside_the_pattern_are_rejected_by_every_operation(secret_store: SecretStore, bad: str) -> None:
    with pytest.raises(ValueError, match="does not match"):
        secret_store.put(bad, {"v": "1"})
    with pytest.raises(ValueError, match="does not match"):
        secret_store.get(bad)
    with pytest.raises(ValueError, match="does not match"):
        secret_store.delete(bad)


def test_concurrent_writers_leave_one_complete_value(secret_store: SecretStore) -> None:
    # Given 8 threads each writing their own complete value to the same name
    values = [{"token": f"t{i}" * 50, "n": str(i)} for i in range(8)]
    barrier = threading.Barrier(len(values))
    errors: list[BaseException] = []

    def write(v: dict[str, str]) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                secret_store.put("race/1", v)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Then nothing failed and the stored value is exactly one writer's value, never a mix
    assert not errors
    assert secret_store.get("race/1") in values
