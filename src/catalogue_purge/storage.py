"""Locations that are a local path or an s3:// URI, read and written through pyarrow's
filesystems (S3 through AWS_ENDPOINT_URL when set, so moto's server locally)."""

from __future__ import annotations

import pyarrow.fs as pafs

from catalogue_purge.snapshot import s3_filesystem


def locate(uri: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path within it for a local path or an s3:// URI."""
    if uri.startswith("s3://"):
        return filesystem or s3_filesystem(), uri.removeprefix("s3://").rstrip("/")
    return filesystem or pafs.LocalFileSystem(), uri.rstrip("/")


def read_bytes(uri: str) -> bytes:
    fs, path = locate(uri)
    with fs.open_input_stream(path) as handle:
        return bytes(handle.read())
