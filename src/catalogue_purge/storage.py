"""Locations that are a local path or an s3:// URI, read and written through pyarrow's
filesystems (S3 through AWS_ENDPOINT_URL when set, so moto's server locally)."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def s3_filesystem(endpoint_url: str | None = None, region: str | None = None) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem, pointed at AWS_ENDPOINT_URL when set (moto locally)."""
    endpoint = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    region = (
        region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    if endpoint:
        parsed = urlparse(endpoint)
        return pafs.S3FileSystem(
            endpoint_override=parsed.netloc or parsed.path,
            scheme=parsed.scheme or "https",
            region=region,
            allow_bucket_creation=False,
        )
    return pafs.S3FileSystem(region=region)


def locate(uri: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path within it for a local path or an s3:// URI."""
    if uri.startswith("s3://"):
        return filesystem or s3_filesystem(), uri.removeprefix("s3://").rstrip("/")
    return filesystem or pafs.LocalFileSystem(), uri.rstrip("/")


def read_bytes(uri: str) -> bytes:
    fs, path = locate(uri)
    with fs.open_input_stream(path) as handle:
        return bytes(handle.read())


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object (on S3 a single PUT: there whole or not at all); local files go
    through a temporary name and a rename, for the same guarantee."""
    fs, path = locate(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.partial"
        with fs.open_output_stream(tmp) as handle:
            handle.write(data)
        fs.move(tmp, path)
        return
    with fs.open_output_stream(path) as handle:
        handle.write(data)


def exists(uri: str) -> bool:
    fs, path = locate(uri)
    return bool(fs.get_file_info(path).type == pafs.FileType.File)


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as one zstd Parquet file, in memory: written whole with write_bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())
