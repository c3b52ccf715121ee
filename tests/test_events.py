"""The sample events of events/, replayed against moto's server: a stack named
catalogue-purge created from template.yaml, a small snapshot where the schedules look for it,
then each function's handler with its sample event, in the order of the state machine, each
delivered twice."""

from __future__ import annotations

import json

import boto3
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from catalogue_purge.detect.policy import load_policy
from catalogue_purge.detect.sweep import read_sweep
from catalogue_purge.enforce.catalogue import put_listings
from catalogue_purge.errors import PlanMismatch
from catalogue_purge.job.events import FUNCTIONS
from catalogue_purge.job.local import QUIET, _live_listings, function_environment, invoke_handler
from catalogue_purge.job.stack import Stack, create_local, load_template
from catalogue_purge.review.queue import ReviewQueue
from catalogue_purge.synthetic import generate_snapshot

from .conftest import ROOT


def sample(name: str) -> dict:
    return json.loads((ROOT / "events" / f"{name}.json").read_text())


@pytest.fixture
def stack(aws):
    stack = Stack("catalogue-purge", load_template())
    s3 = boto3.client("s3")
    if "catalogue-purge-data-123456789012" in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        pytest.skip("the sample stack already exists on this moto server")
    create_local(stack)
    return stack


def test_the_sample_events_replay_in_order_and_twice(stack, tmp_path):
    environment = stack.environment() | QUIET

    def call(function: str, event: dict) -> dict:
        handler = stack.handler(function)
        with function_environment(environment):
            first = invoke_handler(handler, event)
            again = invoke_handler(handler, event)
        # A repeated delivery answers as the first (but for the time it took, and the notices
        # it sent: the first sends them, the second finds them sent).
        if function == "NoticesFunction":
            assert again["already_sent"] == first["sent"] and again["sent"] == 0
        elif function == "QueueReviewsFunction":  # the second finds them queued
            assert (again["queued"], again["already"]) == (0, first["queued"] + first["already"])
            assert again["waiting"] == first["waiting"]
        else:
            assert again | {"seconds": 0} == first | {"seconds": 0}, function
        result_model = FUNCTIONS[function][1]
        assert result_model is not None
        result_model.model_validate(first)
        return first

    # The snapshot where the schedules look: one file of two row groups, as in sweep-shard.json.
    generate_snapshot(tmp_path / "snapshot", rows=2_000, files=1, row_group_size=1_000, seed=5)
    data_bucket = stack.physical["DataBucket"]
    path = tmp_path / "snapshot" / "part-00000.parquet"
    boto3.client("s3").upload_file(str(path), data_bucket, "snapshots/latest/part-00000.parquet")
    assert pq.ParquetFile(path).metadata.num_row_groups == 2

    schedule = sample("schedule-delisting-cutoff")
    assert sample("plan-run") == schedule
    plan = call("PlanRunFunction", schedule)
    shard = sample("sweep-shard")
    assert (plan["run_id"], plan["sweep_uri"]) == (shard["run_id"], shard["sweep_uri"])
    assert plan["shards"]["count"] == 1
    items = (
        boto3.client("s3")
        .get_object(Bucket=plan["shards"]["bucket"], Key=plan["shards"]["key"])["Body"]
        .read()
    )
    assert json.loads(items) == [shard["shard"]]

    swept = call("SweepShardFunction", shard)
    assert swept["rows"] == 2_000

    close = sample("close-sweep")
    closed = call("CloseSweepFunction", close)
    assert closed["findings"] == swept["findings"] > 0
    assert not closed["held"]
    assert closed["batches"]["count"] == 1

    findings = read_sweep(plan["sweep_uri"])[0]
    put_listings(
        boto3.client("dynamodb"),
        stack.physical["ListingsTable"],
        _live_listings(str(path), findings.column("listing_id").to_pylist()),
    )
    delisted = call("DelistFunction", sample("delist-batch"))
    assert delisted["outcomes"] == {"DELISTED": closed["planned"]}

    penalties = call("PenaltiesFunction", sample("apply-penalties"))
    assert not penalties["applied"]  # the delisting date comes before the penalty date
    assert "before the penalty date" in penalties["reason"]

    finalized = call("FinalizeRunFunction", sample("finalize-run"))
    assert finalized["counts"]["by_outcome"] == {"DELISTED": closed["planned"]}
    assert finalized["manifest"] == sample("send-notices")["manifest"]

    notices = call("NoticesFunction", sample("send-notices"))
    sellers = len(
        set(
            findings.filter(pc.equal(findings.column("decision"), "delist"))
            .column("seller_id")
            .to_pylist()
        )
    )
    assert notices["sellers"] == sellers

    # The run's review findings wait in the queue; the applier finds nothing decided yet.
    reviews = call("QueueReviewsFunction", sample("queue-reviews"))
    in_review = findings.filter(pc.equal(findings.column("decision"), "review")).num_rows
    assert in_review > 0
    assert reviews["queued"] == reviews["waiting"] == in_review
    nothing = call("ApplyReviewsFunction", sample("apply-reviews"))
    assert nothing["run_id"] is None and nothing["outcomes"] == {}
    # A person decides one; the applier applies it once, as a review run.
    policy = load_policy(ROOT / "policies" / "crypto-mining-2021.yaml")
    queue = ReviewQueue(stack.physical["ReviewQueueTable"], boto3.client("dynamodb"), policy)
    share = policy.document.review.second_review_share
    for item in queue.claim("rv-events", count=in_review):
        queue.decide(
            item.listing_id,
            reviewer="rv-events",
            version=item.version,
            decision="keep",
            reason="a graphics card, not a rig",
        )
    with function_environment(environment):
        applied = invoke_handler(stack.handler("ApplyReviewsFunction"), sample("apply-reviews"))
        again = invoke_handler(stack.handler("ApplyReviewsFunction"), sample("apply-reviews"))
    kept = applied["outcomes"].get("KEPT", 0)
    assert 0 < kept <= in_review and (share or kept == in_review)
    assert applied["manifest"].endswith(applied["run_id"]) and again["run_id"] is None

    with function_environment(environment):
        access = invoke_handler(stack.handler("ManifestAccessFunction"), sample("manifest-access"))
    assert access["statusCode"] == 200
    body = json.loads(access["body"])
    assert body["run"]["run_id"] == plan["run_id"]
    assert {link["name"] for link in body["links"]} >= {"manifest.json", "digest.json"}

    # The same run id asked for another snapshot is refused, not mixed into this run.
    with pytest.raises(PlanMismatch), function_environment(environment):
        invoke_handler(
            stack.handler("PlanRunFunction"),
            schedule | {"snapshot_uri": f"s3://{data_bucket}/snapshots/"},
        )
