"""The shared resource shape (services/crud.py): create, omitted-vs-null updates, archive, delete, list pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteResourceStore
from managed_agents.domain.clock import SystemClock
from managed_agents.domain.errors import InvalidRequest, NotFound
from managed_agents.domain.ids import new_ulid
from managed_agents.services.common import Services, page_query
from managed_agents.services.crud import Collection, Kind, assign, assign_metadata
from managed_agents.wire.common import Metadata, MetadataPatch, Params

THING = Kind("thing", lambda: "thg_" + new_ulid(), not_found_code="thing_not_found", archived_code="thing_archived")


class ThingUpdate(Params):
    name: str | None = None
    description: str | None = None
    metadata: MetadataPatch | None = None


@pytest.fixture
def things(tmp_path: Path) -> Collection:
    return Collection(Services(SqliteResourceStore(SqliteDatabase(tmp_path / "db")), SystemClock()), THING)


def _update(things: Collection, rid: str, body: dict[str, object]) -> dict[str, object]:
    params = ThingUpdate.model_validate(body)

    def edit(doc: dict[str, object]) -> None:
        assign(doc, params, ("name", "description"), required=("name",), empty_clears=("description",))
        assign_metadata(doc, params)

    return things.update("ws", rid, edit)


def test_create_fills_the_common_fields_and_checks_metadata(things: Collection) -> None:
    # Given / When a thing is created
    metadata: Metadata = {"team": "a"}
    doc = things.create("ws", {"name": "n", "metadata": metadata})
    # Then it has the common fields of every resource
    assert doc["type"] == "thing" and str(doc["id"]).startswith("thg_")
    assert doc["created_at"] == doc["updated_at"] and doc["archived_at"] is None
    # And metadata over the limits is refused with the reference's code
    with pytest.raises(InvalidRequest) as err:
        things.create("ws", {"metadata": {f"k{i}": "v" for i in range(17)}})
    assert err.value.error_code == "invalid_metadata"


def test_update_keeps_omitted_fields_clears_nulls_and_refuses_clearing_required(things: Collection) -> None:
    # Given a thing with a description and metadata
    rid = str(things.create("ws", {"name": "n", "description": "d", "metadata": {"a": "1", "b": "2"}})["id"])
    # When only metadata is patched
    doc = _update(things, rid, {"metadata": {"a": None, "c": "3"}})
    # Then omitted fields keep their values and the patch upserts and deletes keys
    assert doc["name"] == "n" and doc["description"] == "d" and doc["metadata"] == {"b": "2", "c": "3"}
    # When description is sent empty, then it clears to null; an explicit null name is refused
    assert _update(things, rid, {"description": ""})["description"] is None
    with pytest.raises(InvalidRequest, match="name: cannot be cleared"):
        _update(things, rid, {"name": None})
    # And metadata: null clears every key
    assert _update(things, rid, {"metadata": None})["metadata"] == {}


def test_an_unchanged_update_keeps_updated_at_and_archived_records_refuse_changes(things: Collection) -> None:
    # Given a thing
    created = things.create("ws", {"name": "n"})
    rid = str(created["id"])
    # When an update changes nothing, then updated_at does not move
    assert _update(things, rid, {"name": "n"})["updated_at"] == created["updated_at"]
    # When it is archived twice, then the second archive returns it unchanged
    first = things.archive("ws", rid)
    assert first["archived_at"] is not None and things.archive("ws", rid) == first
    # And an archived thing cannot be changed
    with pytest.raises(InvalidRequest) as err:
        _update(things, rid, {"name": "m"})
    assert err.value.error_code == "thing_archived"


def test_delete_and_other_workspaces_are_not_found(things: Collection) -> None:
    # Given a thing in workspace ws
    rid = str(things.create("ws", {"name": "n"})["id"])
    # Then another workspace cannot see it
    with pytest.raises(NotFound) as err:
        things.get("other", rid)
    assert err.value.error_code == "thing_not_found"
    # When it is deleted, then the reply has the reference's shape and it is gone
    assert things.delete("ws", rid) == {"id": rid, "type": "thing_deleted"}
    with pytest.raises(NotFound):
        things.get("ws", rid)


def test_list_pages_walk_every_record_once(things: Collection) -> None:
    # Given five things
    ids = {str(things.create("ws", {"name": str(i)})["id"]) for i in range(5)}
    # When they are listed two at a time
    seen: list[str] = []
    page: str | None = None
    while True:
        data, page = things.list("ws", page_query(page, 2))
        seen += [str(d["id"]) for d in data]
        if page is None:
            break
    # Then every thing comes once
    assert sorted(seen) == sorted(ids) and len(seen) == 5
