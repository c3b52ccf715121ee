"""The whole job end to end against moto's server on loopback: the local run."""

from __future__ import annotations

import json

import boto3

from catalogue_purge.cli import parse_as_of
from catalogue_purge.local import run_local
from catalogue_purge.synthetic import generate_snapshot


def test_the_whole_job_runs_and_its_manifest_verifies(aws, policy, tmp_path):
    generate_snapshot(tmp_path / "snapshot", rows=4_000, files=2, row_group_size=1_000, seed=11)
    said: list[str] = []
    result = run_local(
        policy,
        str(tmp_path / "snapshot"),
        parse_as_of("2021-10-08", policy),
        tmp_path / "work",
        say=said.append,
    )
    assert result.verified
    assert result.delisting.balanced
    delisted = result.delisting.outcomes.get("DELISTED", 0)
    assert delisted == sum(
        d == "delist" for d in result.sweep.findings.column("decision").to_pylist()
    )
    assert delisted > 0

    manifest = json.loads((result.manifest_folder / "manifest.json").read_text())
    assert manifest["counts"]["by_outcome"] == {"DELISTED": delisted}
    assert manifest["snapshot"]["rows"] == 4_000
    assert (result.manifest_folder / "report.html").exists()

    # The live table: every delisted listing carries the run's enforcement fields.
    dynamodb = boto3.client("dynamodb")
    table = next(
        t
        for t in dynamodb.list_tables()["TableNames"]
        if t.endswith(result.run_id.rsplit("-", 1)[-1])
    )
    first = result.sweep.findings.column("listing_id")[0].as_py()
    item = dynamodb.get_item(TableName=table, Key={"listing_id": {"S": first}})["Item"]
    assert item["status"]["S"] == "DELISTED"
    assert item["enforcement_run_id"]["S"] == result.run_id
    assert any(line.startswith("sweep: ") for line in said)
