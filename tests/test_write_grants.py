"""Each function may write only the part of the buckets its stage owns, and every object the job
writes is one some part of it may write: a run after the penalty date, then the grants of
template.yaml against every key it left."""

from __future__ import annotations

from fnmatch import fnmatchcase

import boto3
import pytest

from catalogue_purge.cli import parse_as_of
from catalogue_purge.job.local import run_local
from catalogue_purge.job.stack import Stack, load_template
from catalogue_purge.synthetic import generate_snapshot

PRINCIPALS = ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")


def listed(value):
    return value if isinstance(value, list) else [value]


def put_grants(stack: Stack) -> dict[str, list[str]]:
    """Each function and the state machine: the object ARNs it may PutObject to."""
    grants: dict[str, list[str]] = {}
    for logical_id, resource in stack.resources.items():
        if resource["Type"] not in PRINCIPALS:
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                if statement["Effect"] == "Allow" and "s3:PutObject" in listed(statement["Action"]):
                    arns = stack.resolve(listed(statement["Resource"]))
                    grants.setdefault(logical_id, []).extend(arns)
    return grants


@pytest.fixture(scope="module")
def grants() -> dict[str, list[str]]:
    stack = Stack("catalogue-purge", load_template())
    stack.arns |= {
        bucket: f"arn:aws:s3:::{bucket.lower()}" for bucket in ("DataBucket", "ManifestsBucket")
    }
    return put_grants(stack)


def test_no_function_may_write_a_whole_bucket(grants):
    assert set(grants) >= {"PlanRunFunction", "SweepShardFunction", "FinalizeRunFunction"}
    data = "arn:aws:s3:::databucket/"
    for principal, arns in grants.items():
        assert f"{data}*" not in arns, principal
    # A stage's grant does not reach another stage's records.
    assert not any(
        fnmatchcase(f"{data}runs/r/intents.parquet", a) for a in grants["SweepShardFunction"]
    )
    assert not any(fnmatchcase(f"{data}sweeps/r/run.json", a) for a in grants["DelistFunction"])
    assert not any(
        fnmatchcase(f"{data}runs/r/outcomes.parquet", a) for a in grants["PenaltiesFunction"]
    )


def test_every_object_the_job_writes_is_granted_to_a_writer(aws, policy, tmp_path, grants):
    generate_snapshot(tmp_path / "snapshot", rows=2_000, files=1, row_group_size=1_000, seed=5)
    result = run_local(
        policy,
        str(tmp_path / "snapshot"),
        parse_as_of("2021-10-16", policy),  # after the penalty date: every stage writes
        tmp_path / "work",
        say=lambda _line: None,
        rows_per_shard=1_000,
    )
    assert result.verified
    s3 = boto3.client("s3")
    written: dict[str, list[str]] = {}
    for logical_id in ("DataBucket", "ManifestsBucket"):
        bucket = result.resources[logical_id]
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        written[logical_id] = keys
    snapshot_prefix = load_template()["Parameters"]["SnapshotPrefix"]["Default"]
    job_keys = [k for k in written["DataBucket"] if not k.startswith(snapshot_prefix)]
    # Every stage left something: the run's records, the shards, the outcomes, the
    # penalties, the notices, the history and the manifest.
    for part in ("sweeps/", "/shards/", "runs/", "/penalties/", "/notices/", "history/"):
        assert any(part in k for k in job_keys), part
    assert written["ManifestsBucket"]
    ungranted = [
        (logical_id, key)
        for logical_id, keys in (
            ("DataBucket", job_keys),
            ("ManifestsBucket", written["ManifestsBucket"]),
        )
        for key in keys
        if not any(
            fnmatchcase(f"arn:aws:s3:::{logical_id.lower()}/{key}", arn)
            for arns in grants.values()
            for arn in arns
        )
    ]
    assert ungranted == []
