"""Snapshots under an s3:// prefix, read through pyarrow's S3 filesystem from moto's server."""

from __future__ import annotations

import uuid

import boto3
import pytest

from catalogue_purge.cli import main, parse_as_of
from catalogue_purge.detect.snapshot import open_snapshot
from catalogue_purge.detect.sweep import decisions, sweep
from catalogue_purge.errors import SnapshotError

from .conftest import SHIPPED_POLICY, listing, write_listings


@pytest.fixture
def bucket(aws):
    name = f"snapshots-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def upload(bucket: str, key: str, path) -> None:
    boto3.client("s3").upload_file(str(path), bucket, key)


def test_sweep_reads_an_s3_prefix(policy, bucket, tmp_path):
    upload(
        bucket,
        "2021-10-08/part-0.parquet",
        write_listings(
            tmp_path / "a.parquet",
            [
                listing("L-1", "Antminer S19 Pro 110TH/s", "Home Appliances > Heaters"),
                listing("L-2", "Blue ceramic vase"),
            ],
        ),
    )
    upload(
        bucket,
        "2021-10-08/part-1.parquet",
        write_listings(
            tmp_path / "b.parquet",
            [
                listing("L-3", "Shelf", "Digital Goods > Cryptocurrency > Coins"),
            ],
        ),
    )
    upload(
        bucket,
        "2021-10-07/part-0.parquet",
        write_listings(
            tmp_path / "c.parquet",
            [
                listing("L-9", "Antminer S9"),
            ],
        ),
    )
    snapshot = open_snapshot(f"s3://{bucket}/2021-10-08/")
    assert [f.rows for f in snapshot.files] == [2, 1]
    result = sweep(snapshot, policy, parse_as_of("2021-10-08", policy))
    # L-3 is under a suspended category (its text says nothing: a person decides).
    assert decisions(result.findings) == {"L-1": "delist", "L-3": "review"}
    assert result.snapshot["location"] == f"s3://{bucket}/2021-10-08/"


def test_broken_object_on_s3_names_the_object(bucket, tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    upload(bucket, "snap/part-0.parquet", broken)
    with pytest.raises(SnapshotError, match=rf"s3://{bucket}/snap/part-0\.parquet"):
        open_snapshot(f"s3://{bucket}/snap")


def test_empty_prefix_is_an_error(bucket):
    with pytest.raises(SnapshotError, match=r"holds no \.parquet file"):
        open_snapshot(f"s3://{bucket}/nothing-here/")


def test_cli_sweep_from_s3(bucket, tmp_path, capsys):
    upload(
        bucket,
        "s/part-0.parquet",
        write_listings(
            tmp_path / "a.parquet",
            [
                listing("L-1", "Whatsminer M30S++ 112T"),
            ],
        ),
    )
    code = main(
        [
            "sweep",
            "--snapshot",
            f"s3://{bucket}/s",
            "--policy",
            str(SHIPPED_POLICY),
            "--as-of",
            "2021-10-08",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert (tmp_path / "out" / "findings.parquet").exists()
