"""The purge run's control flow: the local interpreter of the definition, and a run held back
by the policy's safety limits, then approved, against moto."""

from __future__ import annotations

import boto3
import pytest

from catalogue_purge.detect.policy import POLICIES_ENV, load_policy
from catalogue_purge.detect.sweep import read_sweep
from catalogue_purge.enforce.catalogue import put_listings
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PurgeError
from catalogue_purge.job.events import StartRun
from catalogue_purge.job.local import _live_listings, run_job
from catalogue_purge.job.stack import Stack, create_local, load_template
from catalogue_purge.job.statemachine import ExecutionFailed, Runtime, execute
from catalogue_purge.synthetic import generate_snapshot

from .conftest import SHIPPED_POLICY

MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSON"},
                "Parameters": {"Bucket": "b", "Key": "k"},
            },
            "ItemSelector": {"n.$": "$$.Map.Item.Value", "run.$": "$.run"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Work",
                "States": {"Work": {"Type": "Task", "Resource": "Fn", "End": True}},
            },
            "MaxConcurrencyPath": "$.concurrency",
            "ToleratedFailurePercentagePath": "$.tolerated",
            "ResultPath": "$.results",
            "End": True,
        }
    },
}


def runtime(fail_on: set[int]) -> Runtime:
    def invoke_many(function, payloads, concurrency):
        assert function == "Fn" and concurrency == 3
        return [
            RuntimeError(f"item {p['n']}") if p["n"] in fail_on else {"double": p["n"] * 2}
            for p in payloads
        ]

    return Runtime(
        invoke=lambda f, p: {},
        invoke_many=invoke_many,
        read_items=lambda bucket, key: list(range(10)),
    )


def test_a_map_tolerates_failures_up_to_its_percentage():
    state = {"run": "r", "concurrency": 3, "tolerated": 10}
    done = execute(MAP, state, runtime(fail_on={4}))
    assert [r["double"] for r in done["results"]] == [0, 2, 4, 6, 10, 12, 14, 16, 18]
    with pytest.raises(ExecutionFailed) as failed:
        execute(MAP, state | {"tolerated": 5}, runtime(fail_on={4}))
    assert failed.value.error == "States.ExceedToleratedFailureThreshold"
    assert "item 4" in failed.value.cause


def test_the_interpreter_refuses_what_it_cannot_follow():
    parallel = {"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [], "End": True}}}
    with pytest.raises(PurgeError, match="Parallel"):
        execute(parallel, {}, runtime(set()))
    odd = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "Fn", "TimeoutSeconds": 5, "End": True}},
    }
    with pytest.raises(PurgeError, match="TimeoutSeconds"):
        execute(odd, {}, runtime(set()))


def test_a_run_held_by_the_safety_limits_then_approved(aws, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    text = SHIPPED_POLICY.read_text().replace("max_listings: 200000", "max_listings: 3")
    (policies / SHIPPED_POLICY.name).write_text(text)
    policy = load_policy(policies / SHIPPED_POLICY.name)
    assert policy.document.safety_limits.max_listings == 3

    stack = Stack("held", load_template())
    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    create_local(stack)
    generate_snapshot(tmp_path / "snapshot", rows=1_500, files=1, row_group_size=500, seed=3)
    snapshot = tmp_path / "snapshot" / "part-00000.parquet"
    s3.upload_file(str(snapshot), stack.physical["DataBucket"], "snapshots/latest/a.parquet")
    start = StartRun(
        policy_id=policy.id,
        snapshot_uri=f"s3://{stack.physical['DataBucket']}/snapshots/latest/",
        as_of="2021-10-08T00:00:00+08:00",
        run_id="held-1",
    )
    environment = {POLICIES_ENV: str(policies)}

    with pytest.raises(ExecutionFailed) as held:
        run_job(stack, start, environment=environment, workers=1)
    assert held.value.error == "SafetyLimitExceeded"
    assert "max_listings" in held.value.cause
    plan_hash = held.value.cause.split("approve=")[1].split()[0].rstrip(".")
    runs = f"s3://{stack.physical['DataBucket']}/runs/held-1"
    assert RunStore(runs, OUTCOME_SCHEMA).read_outcomes().num_rows == 0  # nothing was done

    def load_live(name: str, document: dict) -> None:
        if name == "DelistBatches":
            ids = read_sweep(document["plan"]["sweep_uri"])[0].column("listing_id").to_pylist()
            put_listings(
                dynamodb, stack.physical["ListingsTable"], _live_listings(str(snapshot), ids)
            )

    # Approved, the same run resumes from its recorded sweep and goes through.
    approved = start.model_copy(update={"approve": plan_hash})
    output = run_job(stack, approved, environment=environment, workers=1, before_state=load_live)
    assert output["closed"]["plan_sha256"] == plan_hash
    assert output["closed"]["planned"] > 3
    delisted = output["manifest"]["counts"]["by_outcome"]["DELISTED"]
    assert delisted == output["closed"]["planned"]

    # Approving another plan is refused before anything is done.
    other = start.model_copy(update={"approve": "0" * 64, "run_id": "held-2"})
    with pytest.raises(PurgeError, match="not the approved plan"):
        run_job(stack, other, environment=environment, workers=1)


def test_a_dry_run_through_the_state_machine_changes_nothing(aws, tmp_path):
    stack = Stack("dry", load_template())
    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    create_local(stack)
    generate_snapshot(tmp_path / "snapshot", rows=600, files=1, row_group_size=300, seed=8)
    snapshot = tmp_path / "snapshot" / "part-00000.parquet"
    s3.upload_file(str(snapshot), stack.physical["DataBucket"], "snapshots/latest/a.parquet")
    start = StartRun(
        policy_id="crypto-mining-2021",
        snapshot_uri=f"s3://{stack.physical['DataBucket']}/snapshots/latest/",
        as_of="2021-10-08T00:00:00+08:00",
        dry_run=True,
    )
    assert start.resolved_run_id() == "purge-20211007T160000Z-dry-run"

    def load_live(name: str, document: dict) -> None:
        if name == "DelistBatches":
            ids = read_sweep(document["plan"]["sweep_uri"])[0].column("listing_id").to_pylist()
            put_listings(
                dynamodb, stack.physical["ListingsTable"], _live_listings(str(snapshot), ids)
            )

    output = run_job(stack, start, workers=1, before_state=load_live)
    assert "manifest" not in output and "penalties" not in output  # it ends at DryRunDone
    planned = output["closed"]["planned"]
    assert planned > 0
    runs = f"s3://{stack.physical['DataBucket']}/runs/{start.resolved_run_id()}"
    predicted = RunStore(runs, OUTCOME_SCHEMA).dry().read_outcomes()
    assert predicted.num_rows == planned
    assert RunStore(runs, OUTCOME_SCHEMA).read_outcomes().num_rows == 0
    table = stack.physical["ListingsTable"]
    statuses = {i["status"]["S"] for i in dynamodb.scan(TableName=table)["Items"]}
    assert statuses == {"ACTIVE"}  # nothing was delisted
