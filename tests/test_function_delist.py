"""The Delist Lambda, replayed from events/ against moto's server, delivered twice."""

from __future__ import annotations

import importlib.util
import json
import uuid
from dataclasses import dataclass

import boto3

from catalogue_purge.detect.policy import load_policy
from catalogue_purge.detect.sweep import read_sweep
from catalogue_purge.enforce.delist import plan_delistings
from catalogue_purge.job.events import DelistBatch

from .conftest import ROOT, SHIPPED_POLICY, listing, sweep_with_cli


@dataclass
class FakeContext:
    function_name: str = "Delist"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:Delist"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def load_function(name: str):
    spec = importlib.util.spec_from_file_location(
        f"function_{name}", ROOT / "functions" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def status(client, table: str, listing_id: str) -> str:
    return client.get_item(TableName=table, Key={"listing_id": {"S": listing_id}})["Item"][
        "status"
    ]["S"]


def test_sample_event_parses():
    event = json.loads((ROOT / "events" / "delist-batch.json").read_text())
    assert DelistBatch.model_validate(event).batch_size == 10_000


def test_a_batch_delivered_twice_acts_once(live_table, tmp_path, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "catalogue-purge")
    rows = [
        listing("L-1", "Antminer S19 Pro 110TH/s", "Home Appliances > Heaters"),
        listing("L-2", "Whatsminer M30S++", "Computer & Office > Blockchain Miners"),
        listing("L-3", "Blue vase"),
    ]
    sweep_with_cli(tmp_path, rows)

    suffix = uuid.uuid4().hex[:8]
    dynamodb, table = live_table(rows)
    s3 = boto3.client("s3")
    bucket, idempotency = f"runs-{suffix}", f"idempotency-{suffix}"
    s3.create_bucket(Bucket=bucket)
    for name in ("findings.parquet", "sweep.json"):
        s3.upload_file(str(tmp_path / "sweep" / name), bucket, f"sweeps/run-1/{name}")
    dynamodb.create_table(
        TableName=idempotency,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("IDEMPOTENCY_TABLE", idempotency)

    findings, _ = read_sweep(str(tmp_path / "sweep"))
    policy = load_policy(SHIPPED_POLICY)
    approved = plan_delistings(findings, "run-1", policy.id, policy.sha256).sha256
    event = json.loads((ROOT / "events" / "delist-batch.json").read_text()) | {
        "run_id": "run-1",
        "sweep_uri": f"s3://{bucket}/sweeps/run-1",
        "runs_uri": f"s3://{bucket}/runs",
        "table": table,
        "batch_size": 100,
        "approve": approved,
    }
    function = load_function("delist")
    first = function.handler(event, FakeContext())
    assert first["outcomes"] == {"DELISTED": 2}
    assert status(dynamodb, table, "L-1") == "DELISTED"

    # The seller's listing is back, edited, before the same event is delivered again: a second
    # delivery must answer from the first, not act.
    dynamodb.update_item(
        TableName=table,
        Key={"listing_id": {"S": "L-1"}},
        UpdateExpression="SET #s = :a",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":a": {"S": "ACTIVE"}},
    )
    again = function.handler(event, FakeContext())
    assert again == first
    assert status(dynamodb, table, "L-1") == "ACTIVE"
    assert list(s3.list_objects_v2(Bucket=bucket, Prefix="runs/run-1/intents")["Contents"])


def test_batches_of_a_recorded_plan_read_only_their_own_records(tmp_path):
    """Once the plan is recorded (CloseSweep does it, with a row group per batch), a batch
    reads its slice of the intents and its own outcome parts: the run's records are read
    once over all the batches, not once per batch."""
    from catalogue_purge.enforce.catalogue import InMemoryCatalogue, LiveListing
    from catalogue_purge.enforce.delist import OUTCOME_SCHEMA
    from catalogue_purge.enforce.runstore import RunStore
    from catalogue_purge.job.pipeline import delist_batch

    from .conftest import LIVE_VERSION

    rows = [
        listing(f"L-{i}", f"Antminer S19 Pro unit {i}", "Home Appliances > Heaters")
        for i in range(5)
    ] + [listing("L-9", "Blue vase")]
    sweep_with_cli(tmp_path, rows)
    findings, _ = read_sweep(str(tmp_path / "sweep"))
    policy = load_policy(SHIPPED_POLICY)
    plan = plan_delistings(findings, "run-1", policy.id, policy.sha256)
    assert len(plan.intents) == 5
    run = RunStore(str(tmp_path / "runs" / "run-1"), OUTCOME_SCHEMA)
    run.record_plan(plan.sha256, plan.table(), row_group_size=2)
    assert [r["listing_id"] for r in run.read_intents(2, 4).to_pylist()] == ["L-2", "L-3"]

    catalogue = InMemoryCatalogue(
        {r["listing_id"]: LiveListing.from_row(r, LIVE_VERSION) for r in rows}
    )

    def deliver(index: int):
        batch = DelistBatch(
            run_id="run-1",
            sweep_uri=str(tmp_path / "sweep"),
            runs_uri=str(tmp_path / "runs"),
            table="unused",
            batch_index=index,
            batch_size=2,
            approve=plan.sha256,
        )
        return delist_batch(batch, catalogue, SHIPPED_POLICY.parent)

    # The findings are not read again: the recorded intents are what the batches apply.
    (tmp_path / "sweep" / "findings.parquet").unlink()
    results = [deliver(i) for i in range(3)]
    assert [r.planned for r in results] == [2, 2, 1]
    assert {r.plan_sha256 for r in results} == {plan.sha256}
    assert all(r.outcomes == {"DELISTED": r.planned} for r in results)
    parts = sorted(p.name for p in (tmp_path / "runs" / "run-1" / "outcomes").iterdir())
    assert [p[:6] for p in parts] == ["b00000", "b00001", "b00002"]
    # A batch delivered again finds its own outcomes and writes nothing.
    assert deliver(1).outcomes == {"DELISTED": 2}
    assert len(list((tmp_path / "runs" / "run-1" / "outcomes").iterdir())) == 3
    # The whole run's records: one outcome per intent.
    assert sorted(run.read_outcomes().column("listing_id").to_pylist()) == [
        f"L-{i}" for i in range(5)
    ]
