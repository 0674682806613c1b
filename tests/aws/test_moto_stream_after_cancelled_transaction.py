"""The moto platform's DynamoDB stream after a cancelled transaction is DynamoDB's: no record of the cancelled
writes, and a reader's iterator keeps seeing the writes after it (tests/aws/platform.py
`keep_streams_through_cancelled_transactions`).

Without it, the webhook relay of the moto platform read the webhook item of a transaction that was cancelled (a
deployment run's second `deployment_run.started`, tests/aws/test_deployment_runs_cut_off_on_moto.py), and lost the
items written after it.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.aws.platform import REGION, keep_streams_through_cancelled_transactions

TABLE = "streamed"


def _put(pk: str, *, only_new: bool = False) -> dict[str, Any]:
    put: dict[str, Any] = {"TableName": TABLE, "Item": {"pk": {"S": pk}}}
    if only_new:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    return {"Put": put}


def _read(streams: Any, iterator: str) -> tuple[list[str], str]:
    out = streams.get_records(ShardIterator=iterator)
    return [r["dynamodb"]["Keys"]["pk"]["S"] for r in out["Records"]], out["NextShardIterator"]


@pytest.mark.parametrize("reader_started", ["before", "after"])
def test_a_cancelled_transaction_leaves_no_stream_record_and_the_reader_sees_the_writes_after_it(
    monkeypatch: pytest.MonkeyPatch, reader_started: str
) -> None:
    keep_streams_through_cancelled_transactions(monkeypatch)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        streams = boto3.client(
            "dynamodbstreams", region_name=REGION, endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com"
        )
        arn = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]

        def iterator() -> str:
            shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
            it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
            return str(it["ShardIterator"])

        # Given a streamed table with one item, and (or not yet) a reader of its stream
        ddb.put_item(**_put("claim")["Put"])
        it = iterator() if reader_started == "before" else ""
        # When a transaction fails on its first item (a conditional insert of what exists), after a Put moto applied
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(TransactItems=[_put("claim", only_new=True), _put("cancelled")])
        # and a write follows
        ddb.put_item(**_put("after")["Put"])
        # Then the stream holds the committed writes only, and the reader sees the one after the cancelled transaction
        seen, _ = _read(streams, it or iterator())
        assert seen == ["claim", "after"]
        assert "Item" not in ddb.get_item(TableName=TABLE, Key={"pk": {"S": "cancelled"}})
