"""A run's records: the plan (intents) written before any action, outcomes as they happen.

Under a root that is a local folder or an s3:// prefix (through pyarrow's filesystems, so the
same code writes to moto locally and to S3 when deployed):

    <root>/plan.json              the plan's hash, written after intents.parquet: the marker
    <root>/intents.parquet        every intended action
    <root>/outcomes/part-*.parquet  one object per recorded chunk of outcomes (S3 puts are
                                  atomic: a part is there whole or not at all)

A dry run keeps its records under <root>/dry-run/, apart from the real ones.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalogue_purge.errors import PlanMismatch
from catalogue_purge.storage import locate


class RunStore:
    def __init__(
        self, root: str, outcome_schema: pa.Schema, filesystem: pafs.FileSystem | None = None
    ):
        self.fs, self.root = locate(root, filesystem)
        self.location = root.rstrip("/")
        self.outcome_schema = outcome_schema

    def dry(self) -> RunStore:
        return RunStore(f"{self.location}/dry-run", self.outcome_schema, self.fs)

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _exists(self, name: str) -> bool:
        return self.fs.get_file_info(self._path(name)).type == pafs.FileType.File

    def record_plan(self, sha256: str, intents: pa.Table, dry_run: bool = False) -> None:
        """Write the intents before anything acts; refuse a different plan for the same run."""
        if self._exists("plan.json"):
            with self.fs.open_input_stream(self._path("plan.json")) as handle:
                recorded = json.loads(handle.read())
            if recorded["sha256"] != sha256:
                raise PlanMismatch(
                    f"run at {self.location} already recorded plan {recorded['sha256']}; "
                    f"this plan is {sha256}. Use a new run id for a new plan."
                )
            return
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(self.root, recursive=True)
        pq.write_table(intents, self._path("intents.parquet"), filesystem=self.fs)
        marker = {
            "sha256": sha256,
            "intents": intents.num_rows,
            "dry_run": dry_run,
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        with self.fs.open_output_stream(self._path("plan.json")) as handle:
            handle.write(json.dumps(marker, indent=2).encode())

    def read_plan(self) -> dict:
        """plan.json: the plan's hash, its size, and when the run recorded it (its start)."""
        with self.fs.open_input_stream(self._path("plan.json")) as handle:
            return dict(json.loads(handle.read()))

    def write_marker(self, document: dict) -> None:
        """done.json: a step's own record that it finished (what it did, in a few fields)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(self.root, recursive=True)
        with self.fs.open_output_stream(self._path("done.json")) as handle:
            handle.write(json.dumps(document, indent=2, default=str).encode())

    def read_marker(self) -> dict | None:
        if not self._exists("done.json"):
            return None
        with self.fs.open_input_stream(self._path("done.json")) as handle:
            return dict(json.loads(handle.read()))

    def read_intents(self) -> pa.Table:
        return pq.read_table(self._path("intents.parquet"), filesystem=self.fs)

    def append_outcomes(self, outcomes: pa.Table) -> None:
        if outcomes.num_rows == 0:
            return
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(self._path("outcomes"), recursive=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"outcomes/part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(outcomes, self._path(name), filesystem=self.fs)

    def _outcome_parts(self) -> list[str]:
        selector = pafs.FileSelector(self._path("outcomes"), allow_not_found=True)
        return sorted(
            i.path for i in self.fs.get_file_info(selector) if i.path.endswith(".parquet")
        )

    def read_outcomes(self) -> pa.Table:
        parts = self._outcome_parts()
        if not parts:
            return self.outcome_schema.empty_table()
        tables = [pq.read_table(p, filesystem=self.fs).cast(self.outcome_schema) for p in parts]
        return pa.concat_tables(tables)

    def outcomes_dataset(self) -> ds.Dataset:
        """The recorded outcomes as a dataset, for scanning without loading them."""
        parts = self._outcome_parts()
        if not parts:
            return ds.dataset(self.outcome_schema.empty_table())
        return ds.dataset(parts, schema=self.outcome_schema, format="parquet", filesystem=self.fs)
