"""The whole job end to end against moto's server on loopback: the local run, which follows
the state machine's definition and calls the functions' handlers."""

from __future__ import annotations

import json

import boto3
from rich.progress import Progress

from catalogue_purge.cli import parse_as_of
from catalogue_purge.detect.snapshot import open_snapshot
from catalogue_purge.detect.sweep import sweep
from catalogue_purge.job.local import run_local
from catalogue_purge.synthetic import generate_snapshot


def test_the_whole_job_runs_and_its_manifest_verifies(aws, policy, tmp_path):
    generate_snapshot(tmp_path / "snapshot", rows=4_000, files=2, row_group_size=1_000, seed=11)
    as_of = parse_as_of("2021-10-08", policy)
    said: list[str] = []
    progress = Progress(disable=True)
    result = run_local(
        policy,
        str(tmp_path / "snapshot"),
        as_of,
        tmp_path / "work",
        say=said.append,
        rows_per_shard=1_500,
        progress=progress,
    )
    # The bars count listings (swept, delisted), not the few long shards and batches.
    bars = {task.description: (task.completed, task.total) for task in progress.tasks}
    delisted = result.output["closed"]["planned"]
    assert bars["listings swept"] == (4_000, 4_000)
    assert bars["listings delisted"] == (delisted, delisted)
    assert result.verified
    assert result.balanced
    # Two files of two row groups each, at most 1,500 rows a shard: one shard per row group.
    assert result.output["plan"]["shards"]["count"] == 4
    # Sharding loses nothing: the same findings as one sweep of the whole snapshot.
    whole = sweep(open_snapshot(str(tmp_path / "snapshot")), policy, as_of).findings
    assert result.findings.to_pylist() == whole.to_pylist()

    delisted = result.outcomes.get("DELISTED", 0)
    assert delisted == sum(d == "delist" for d in result.findings.column("decision").to_pylist())
    assert delisted > 0
    manifest = json.loads((result.manifest_folder / "manifest.json").read_text())
    assert manifest["counts"]["by_outcome"] == {"DELISTED": delisted}
    assert manifest["snapshot"]["rows"] == 4_000
    assert manifest["kind"] == "purge"
    assert (result.manifest_folder / "report.html").exists()

    # The live table: every delisted listing carries the run's enforcement fields.
    dynamodb = boto3.client("dynamodb")
    table = result.resources["ListingsTable"]
    for listing_id, decision in zip(
        result.findings.column("listing_id").to_pylist(),
        result.findings.column("decision").to_pylist(),
        strict=True,
    ):
        item = dynamodb.get_item(TableName=table, Key={"listing_id": {"S": listing_id}})["Item"]
        expected = "DELISTED" if decision == "delist" else "ACTIVE"
        assert item["status"]["S"] == expected, listing_id
        if decision == "delist":
            assert item["enforcement_run_id"]["S"] == result.run_id
    assert any(line.startswith("live catalogue: ") for line in said)
