"""events.list scaling: reading the LAST page of 100 of a 100,000-event session vs a 1,000-event session.

Measured on the SQLite event store directly (`read(after_seq=N-100, limit=100)`) and through the API with the
official SDK (`events.list(limit=100, page=<cursor of the page that starts after seq N-100>)`). Prints the
median times and their ratio (goal <= 1.5). With the DynamoDB adapter present, also reports the Query calls one
page costs under moto.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from _common import emit, stack

from managed_agents.adapters.local.sqlite_store import SqliteDatabase, SqliteEventStore
from managed_agents.domain.events import NewEvent, StoredEvent
from managed_agents.domain.ids import new_id
from managed_agents.services.sessions import encode_seq_cursor

SMALL, LARGE, PAGE, BATCH = 1_000, 100_000, 100, 1_000
REPEAT = 200


def fill(store: SqliteEventStore, session_id: str, n: int) -> None:
    for start in range(0, n, BATCH):
        batch = [
            NewEvent(new_id("event"), "agent.message", {"content": [{"type": "text", "text": f"event {i}"}]})
            for i in range(start, min(n, start + BATCH))
        ]
        store.append(session_id, batch)


def median_ms(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bench_store() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteEventStore(SqliteDatabase(Path(tmp) / "events.db"))
        result: dict[int, float] = {}
        for n in (SMALL, LARGE):
            sid = new_id("session")
            fill(store, sid, n)
            result[n] = median_ms(lambda sid=sid, n=n: store.read(sid, after_seq=n - PAGE, limit=PAGE))
            assert len(store.read(sid, after_seq=n - PAGE, limit=PAGE)) == PAGE
    emit(
        bench="events_list_scaling",
        via="sqlite_store",
        small_events=SMALL,
        large_events=LARGE,
        small_last_page_ms=round(result[SMALL], 3),
        large_last_page_ms=round(result[LARGE], 3),
        ratio=round(result[LARGE] / result[SMALL], 3),
        goal="<= 1.5",
    )


def bench_api() -> None:
    with stack() as s:
        client = s.client()
        agent_id, env_id = s.agent_env(client)
        result: dict[int, float] = {}
        for n in (SMALL, LARGE):
            sid = client.beta.sessions.create(agent=agent_id, environment_id=env_id).id
            fill(s.rt.events, sid, n)  # type: ignore[arg-type]
            cursor = encode_seq_cursor(n - PAGE)

            def last_page(sid: str = sid, cursor: str = cursor, n: int = n) -> None:
                page = client.beta.sessions.events.list(sid, limit=PAGE, page=cursor)
                assert len(page.data) == PAGE and page.data[-1].content[0].text.endswith(str(n - 1))  # type: ignore[union-attr]

            result[n] = median_ms(last_page, repeat=100)
    emit(
        bench="events_list_scaling",
        via="api_sdk",
        small_events=SMALL,
        large_events=LARGE,
        small_last_page_ms=round(result[SMALL], 3),
        large_last_page_ms=round(result[LARGE], 3),
        ratio=round(result[LARGE] / result[SMALL], 3),
        goal="<= 1.5",
    )


def bench_dynamodb(n: int = 2_000) -> None:
    try:
        import boto3
        from moto import mock_aws

        from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore, create_events_table
    except ImportError as exc:
        emit(bench="events_list_scaling", via="dynamodb_moto", skipped=str(exc))
        return
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ[name] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ.pop("AWS_PROFILE", None)
    with mock_aws():
        ddb, s3 = boto3.client("dynamodb", region_name="us-east-1"), boto3.client("s3", region_name="us-east-1")
        create_events_table(ddb, "events")
        s3.create_bucket(Bucket="spill")
        store = DynamoDbEventStore(table_name="events", bucket_name="spill", dynamodb_client=ddb, s3_client=s3)
        sid, now = new_id("session"), datetime.now(UTC)
        events = [
            StoredEvent(sid, i, new_id("event"), "agent.message", now, {"content": [{"type": "text", "text": "x"}]})
            for i in range(1, n + 1)
        ]
        store.import_events(sid, events)
        calls = {}
        for label, kwargs in (
            ("last_page_asc", {"after_seq": n - PAGE}),
            ("first_page_desc", {"order": "desc"}),
            ("middle_page_asc", {"after_seq": n // 2}),
        ):
            before = store.query_calls
            got = store.read(sid, limit=PAGE, **kwargs)  # type: ignore[arg-type]
            assert len(got) == PAGE
            calls[label] = store.query_calls - before
    emit(bench="events_list_scaling", via="dynamodb_moto", session_events=n, page=PAGE, query_calls_per_page=calls)


def main() -> None:
    bench_store()
    bench_api()
    bench_dynamodb()


if __name__ == "__main__":
    main()
