"""The local endpoint (moto's server) answers DynamoDB's requests atomically, as DynamoDB does."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.exceptions import ClientError

from catalogue_purge.job.local import _OneDynamoDBRequestAtATime


def test_a_dynamodb_request_waits_for_the_one_in_progress():
    order: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        name = environ["name"]
        order.append(f"{name} in")
        if name == "first":
            entered.set()
            release.wait(5)
        order.append(f"{name} out")
        return [b"ok"]

    serialised = _OneDynamoDBRequestAtATime(app)
    target = {"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.TransactWriteItems"}
    first = threading.Thread(target=serialised, args=({**target, "name": "first"}, None))
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=serialised, args=({**target, "name": "second"}, None))
    second.start()
    second.join(0.3)  # it must not get in while the first is inside
    release.set()
    first.join(5)
    second.join(5)
    assert order == ["first in", "first out", "second in", "second out"]


def test_other_services_are_not_held_up():
    entered, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET"):
            entered.set()
            release.wait(5)
        return [b"s3"]

    serialised = _OneDynamoDBRequestAtATime(app)
    holder = threading.Thread(
        target=serialised, args=({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem"}, None)
    )
    holder.start()
    assert entered.wait(5)
    assert serialised({}, None) == [b"s3"]  # an S3 request passes while DynamoDB is busy
    release.set()
    holder.join(5)


def test_concurrent_conditional_transactions_never_both_pass(aws):
    """Each increment is a transaction conditioned on the version it read: with DynamoDB's
    semantics every success is one step, and no two successes share a version."""
    client = boto3.client("dynamodb")
    table = f"counter-{uuid.uuid4().hex[:6]}"
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName=table, Item={"k": {"S": "c"}, "v": {"N": "0"}})

    def increment(worker: int) -> list[int]:
        won = []
        for _ in range(15):
            while True:
                seen = int(
                    client.get_item(TableName=table, Key={"k": {"S": "c"}}, ConsistentRead=True)[
                        "Item"
                    ]["v"]["N"]
                )
                try:
                    client.transact_write_items(
                        TransactItems=[
                            {
                                "Update": {
                                    "TableName": table,
                                    "Key": {"k": {"S": "c"}},
                                    "UpdateExpression": "SET v = :n",
                                    "ConditionExpression": "v = :v",
                                    "ExpressionAttributeValues": {
                                        ":v": {"N": str(seen)},
                                        ":n": {"N": str(seen + 1)},
                                    },
                                }
                            },
                            {
                                "Put": {
                                    "TableName": table,
                                    "Item": {"k": {"S": f"w{worker}-{seen}"}},
                                }
                            },
                        ]
                    )
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "TransactionCanceledException":
                        raise
                    continue
                won.append(seen)
                break
        return won

    with ThreadPoolExecutor(6) as pool:
        wins = [v for won in pool.map(increment, range(6)) for v in won]
    final = int(client.get_item(TableName=table, Key={"k": {"S": "c"}})["Item"]["v"]["N"])
    assert sorted(wins) == list(range(6 * 15))
    assert final == 6 * 15
