"""Which files of a snapshot folder are data: the Parquet ecosystem's convention (names that
start with `_` or `.` are not), locally and on S3, and relative paths kept on upload."""

from __future__ import annotations

import uuid

import boto3

from catalogue_purge.detect.snapshot import is_data, open_snapshot
from catalogue_purge.job.local import snapshot_keys

from .conftest import listing, write_listings


def folder_with_clutter(root):
    write_listings(root / "part-0.parquet", [listing("L-1", "Vase")])
    write_listings(root / "country=DE" / "part-0.parquet", [listing("L-2", "Vase")])
    for clutter in (
        "_tmp.parquet",
        ".hidden.parquet",
        "_truth.parquet",
        ".staging/part-9.parquet",
        "_temporary/0/part-8.parquet",
    ):
        write_listings(root / clutter, [listing("L-X", "Antminer S19")])
    return root


def test_names_starting_with_an_underscore_or_a_dot_are_not_data():
    assert is_data("part-0.parquet")
    assert is_data("country=DE/part-0.parquet")
    assert not is_data("_tmp.parquet")
    assert not is_data(".staging/part-0.parquet")
    assert not is_data("country=DE/_SUCCESS.parquet")


def test_a_local_folder_sweeps_only_its_data_and_keeps_relative_paths(tmp_path):
    root = folder_with_clutter(tmp_path / "snap")
    snapshot = open_snapshot(str(root))
    assert snapshot.rows == 2
    assert snapshot_keys(str(root), snapshot) == ["country=DE/part-0.parquet", "part-0.parquet"]


def test_an_s3_prefix_sweeps_only_its_data(aws, tmp_path):
    root = folder_with_clutter(tmp_path / "snap")
    bucket = f"snap-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    for path in root.rglob("*.parquet"):
        s3.upload_file(str(path), bucket, f"2021-10-08/{path.relative_to(root).as_posix()}")
    snapshot = open_snapshot(f"s3://{bucket}/2021-10-08/")
    assert snapshot.rows == 2
    assert [f.path.rsplit("2021-10-08/", 1)[1] for f in snapshot.files] == [
        "country=DE/part-0.parquet",
        "part-0.parquet",
    ]
