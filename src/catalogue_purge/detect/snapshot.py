"""The catalogue snapshot: Parquet files (a file, a folder, a glob, or an s3:// prefix).

Everything about a snapshot is checked before anything is acted on: each file is opened, its
columns are found (through the column mapping) and their types checked. A problem is a
SnapshotError that names the file and the column.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalogue_purge.errors import SnapshotError
from catalogue_purge.storage import s3_filesystem


def _is_text(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or (pa.types.is_dictionary(t) and _is_text(t.value_type))
        or pa.types.is_string_view(t)
    )


def _is_text_or_null(t: pa.DataType) -> bool:
    """Optional text: a part whose values are all missing may store the column as null."""
    return _is_text(t) or pa.types.is_null(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_integer(t)


# Contract column -> (check, expected type in words, required)
COLUMNS: dict[str, tuple] = {
    "listing_id": (_is_text, "string", True),
    "seller_id": (_is_text, "string", True),
    "title": (_is_text, "string", True),
    "description": (_is_text_or_null, "string", True),
    "category_path": (_is_text, "string", True),
    "category_id": (_is_text_or_null, "string", False),
    "country_of_sale": (_is_text, "string (ISO 3166-1 alpha-2)", True),
    "status": (_is_text, "string (ACTIVE, INACTIVE, DELISTED)", True),
    "price": (_is_number, "double", False),
    "currency": (_is_text_or_null, "string", False),
    "updated_at": (pa.types.is_timestamp, "timestamp", True),
}
SWEEP_COLUMNS = (
    "listing_id",
    "seller_id",
    "title",
    "description",
    "category_path",
    "country_of_sale",
    "status",
    "updated_at",
)


@dataclass(frozen=True)
class SnapshotFile:
    path: str
    size: int
    rows: int
    row_group_rows: tuple[int, ...]
    # Each row group's latest updated_at, from the Parquet statistics (None where absent):
    # what a re-sweep needs to skip the row groups that did not change.
    row_group_updated: tuple[datetime | None, ...]
    subset: tuple[int, int] | None = None  # row groups [first, last): one shard of the file

    @property
    def row_groups(self) -> int:
        return len(self.row_group_rows)

    @property
    def updated_max(self) -> datetime | None:
        known = [u for u in self.row_group_updated if u is not None]
        if len(known) < len(self.row_group_updated) or not known:
            return None
        return max(known)

    def fragment(self, filesystem: pafs.FileSystem) -> ds.Dataset:
        """The file, or only its row groups of `subset`, as a dataset."""
        fmt = ds.ParquetFileFormat()
        if self.subset is None:
            return ds.dataset([self.path], format=fmt, filesystem=filesystem)
        first, last = self.subset
        fragment = fmt.make_fragment(self.path, filesystem, row_groups=range(first, last))
        return ds.FileSystemDataset([fragment], fragment.physical_schema, fmt, filesystem)


@dataclass(frozen=True)
class Snapshot:
    """A resolved, checked snapshot."""

    location: str
    files: tuple[SnapshotFile, ...]
    filesystem: pafs.FileSystem
    columns: Mapping[str, str] = field(default_factory=dict)  # contract name -> source name

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def fingerprint(self) -> dict:
        """What a manifest records so an auditor can tell which snapshot a run read."""
        digest = hashlib.sha256()
        for f in self.files:
            digest.update(f"{f.path}\0{f.size}\0{f.rows}\n".encode())
        return {
            "location": self.location,
            "files": [
                {"path": f.path, "size": f.size, "rows": f.rows, "row_groups": f.row_groups}
                for f in self.files
            ],
            "rows": self.rows,
            "sha256": digest.hexdigest(),
        }

    def source_column(self, name: str) -> str:
        return self.columns.get(name, name)


def is_data(relative: str) -> bool:
    """A file of a snapshot folder, by its path under the folder: not data when any part of
    the path starts with `_` or `.` (the convention of pyarrow datasets, Spark and Hive:
    _SUCCESS, _tmp files, .hidden folders, a _truth file beside the data)."""
    return not any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def _list_files(
    location: str, filesystem: pafs.FileSystem | None
) -> tuple[list[str], pafs.FileSystem]:
    if location.startswith("s3://"):
        fs = filesystem or s3_filesystem()
        prefix = location.removeprefix("s3://").rstrip("/")
        try:
            info = fs.get_file_info(prefix)
            if info.type == pafs.FileType.File:
                return [prefix], fs
            infos = fs.get_file_info(
                pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
            )
        except OSError as exc:
            raise SnapshotError(f"cannot list snapshot {location}: {exc}") from exc
        files = sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.path.endswith(".parquet")
            and is_data(i.path.removeprefix(prefix))
        )
        return files, fs
    fs = filesystem or pafs.LocalFileSystem()
    path = Path(location)
    if path.is_file():
        return [str(path.resolve())], fs
    if path.is_dir():
        return sorted(
            str(p.resolve())
            for p in path.rglob("*.parquet")
            if is_data(p.relative_to(path).as_posix())
        ), fs
    if any(ch in location for ch in "*?["):
        return sorted(
            str(Path(p).resolve()) for p in glob.glob(location, recursive=True) if Path(p).is_file()
        ), fs
    raise SnapshotError(
        f"snapshot {location} does not exist (expected a Parquet file, a folder, a glob or s3://bucket/prefix)"
    )


def open_snapshot(
    location: str,
    columns: Mapping[str, str] | None = None,
    filesystem: pafs.FileSystem | None = None,
    required: tuple[str, ...] | None = None,
) -> Snapshot:
    """Resolve and check a snapshot. `columns` maps contract names to the export's names."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise SnapshotError(
            f"column mapping names unknown contract column(s) {', '.join(unknown)}; "
            f"contract columns are: {', '.join(COLUMNS)}"
        )
    paths, fs = _list_files(location, filesystem)
    if not paths:
        raise SnapshotError(f"snapshot {location} holds no .parquet file")
    needed = required or tuple(c for c, (_, _, req) in COLUMNS.items() if req)
    files = []
    for path in paths:
        try:
            with fs.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
                schema = meta.schema.to_arrow_schema()
                size = handle.size()
        except (OSError, pa.ArrowException) as exc:
            raise SnapshotError(
                f"cannot read {_display(location, path)} as Parquet: {exc}"
            ) from exc
        _check_schema(_display(location, path), schema, columns, needed)
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        updated = _row_group_updated(meta, columns.get("updated_at", "updated_at"))
        files.append(
            SnapshotFile(
                path, size, meta.num_rows, row_group_rows=groups, row_group_updated=updated
            )
        )
    return Snapshot(location, tuple(files), fs, columns)


def _row_group_updated(meta: pq.FileMetaData, column: str) -> tuple[datetime | None, ...]:
    names = meta.schema.names
    if column not in names:
        return (None,) * meta.num_row_groups
    index = names.index(column)
    latest: list[datetime | None] = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        value = stats.max if stats is not None and stats.has_min_max else None
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        latest.append(value if isinstance(value, datetime) else None)
    return tuple(latest)


def _display(location: str, path: str) -> str:
    return f"s3://{path}" if location.startswith("s3://") else path


def _check_schema(
    where: str, schema: pa.Schema, columns: Mapping[str, str], needed: tuple[str, ...]
) -> None:
    problems = []
    for name in needed:
        source = columns.get(name, name)
        index = schema.get_field_index(source)
        mapped = f" (mapped from {source!r})" if source != name else ""
        if index < 0:
            hint = f"; map it with --map {name}=<column>" if source == name else ""
            problems.append(f"missing column {source!r}{mapped}{hint}")
            continue
        check, expected, _ = COLUMNS[name]
        actual = schema.field(index).type
        if not check(actual):
            problems.append(f"column {source!r}{mapped} has type {actual}, expected {expected}")
    if problems:
        raise SnapshotError(
            f"{where}: " + "; ".join(problems) + f". Columns present: {', '.join(schema.names)}"
        )
