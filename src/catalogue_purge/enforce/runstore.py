"""A run's records: the plan (intents) written before any action, outcomes as they happen.

Under a root that is a local folder or an s3:// prefix (through pyarrow's filesystems, so the
same code writes to moto locally and to S3 when deployed):

    <root>/plan.json              the plan's hash, written after intents.parquet: the marker
    <root>/intents.parquet        every intended action
    <root>/outcomes/part-*.parquet  one object per recorded chunk of outcomes (S3 puts are
                                  atomic: a part is there whole or not at all)
    <root>/outcomes/b00012-*.parquet  the same, of one batch of the delist map: a batch reads
                                  back only its own parts

A FAILED outcome is not final: a resumed run tries the listing again and appends its new
outcome, and a listing's outcome is the latest recorded for it (read_outcomes).

A dry run keeps its records under <root>/dry-run/, apart from the real ones. A plan the
safety limits held back is recorded under <root>/held/ (its intents, plan.json and why.json),
for a person to review before approving it; nothing acts on it from there.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalogue_purge.errors import PlanMismatch
from catalogue_purge.storage import locate

FAILED = "FAILED"


def latest_outcomes(outcomes: pa.Table) -> pa.Table:
    """Each listing's latest outcome, when a listing has several (a FAILED one retried);
    other tables (penalties, notices) are returned as they are."""
    names = outcomes.column_names
    if "listing_id" not in names or "outcome" not in names or outcomes.num_rows == 0:
        return outcomes
    if not pc.any(pc.equal(outcomes.column("outcome"), FAILED)).as_py():
        return outcomes
    ordered = outcomes.sort_by([("at", "ascending")]) if "at" in names else outcomes
    ordered = ordered.append_column("_row", pa.array(range(ordered.num_rows), pa.int64()))
    last = ordered.group_by("listing_id").aggregate([("_row", "max")]).column("_row_max")
    kept = ordered.filter(pc.is_in(ordered.column("_row"), value_set=last))
    return kept.sort_by("_row").drop_columns(["_row"])


class RunStore:
    def __init__(
        self,
        root: str,
        outcome_schema: pa.Schema,
        filesystem: pafs.FileSystem | None = None,
        batch: int | None = None,
    ):
        self.fs, self.root = locate(root, filesystem)
        self.location = root.rstrip("/")
        self.outcome_schema = outcome_schema
        self.batch = batch
        self.part_prefix = "part" if batch is None else f"b{batch:05d}"

    def dry(self) -> RunStore:
        return RunStore(f"{self.location}/dry-run", self.outcome_schema, self.fs, self.batch)

    def held(self) -> RunStore:
        """Where a plan held back by the safety limits is kept for review (see the module)."""
        return RunStore(f"{self.location}/held", self.outcome_schema, self.fs)

    def record_held(self, sha256: str, intents: pa.Table, reason: str, dry_run: bool) -> str:
        """Keep a held-back plan for review (again harmlessly); its location."""
        held = self.held()
        held.record_plan(sha256, intents, dry_run=dry_run)
        with held.fs.open_output_stream(held._path("why.json")) as handle:
            handle.write(json.dumps({"sha256": sha256, "reason": reason}, indent=2).encode())
        return held.location

    def for_batch(self, batch: int) -> RunStore:
        """The same run, reading and writing only the outcome parts of one delist batch."""
        return RunStore(self.location, self.outcome_schema, self.fs, batch)

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _exists(self, name: str) -> bool:
        return self.fs.get_file_info(self._path(name)).type == pafs.FileType.File

    def record_plan(
        self,
        sha256: str,
        intents: pa.Table,
        dry_run: bool = False,
        row_group_size: int | None = None,
    ) -> None:
        """Write the intents before anything acts; refuse a different plan for the same run."""
        if self._exists("plan.json"):
            recorded = self.read_plan()
            if recorded["sha256"] != sha256:
                raise PlanMismatch(
                    f"run at {self.location} already recorded plan {recorded['sha256']}; "
                    f"this plan is {sha256}. Use a new run id for a new plan."
                )
            return
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(self.root, recursive=True)
        # Row groups of one delist batch each: a batch reads only its own.
        pq.write_table(
            intents,
            self._path("intents.parquet"),
            filesystem=self.fs,
            row_group_size=row_group_size,
        )
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

    def has_plan(self) -> bool:
        return self._exists("plan.json")

    def read_intents(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """The intents [start, stop), reading only the row groups that hold them."""
        with self.fs.open_input_file(self._path("intents.parquet")) as handle:
            parquet = pq.ParquetFile(handle)
            meta = parquet.metadata
            stop = meta.num_rows if stop is None else min(stop, meta.num_rows)
            groups, first_row, offset = [], None, 0
            for index in range(meta.num_row_groups):
                rows = meta.row_group(index).num_rows
                if offset < stop and offset + rows > start:
                    groups.append(index)
                    first_row = offset if first_row is None else first_row
                offset += rows
            if not groups or first_row is None:
                return parquet.schema_arrow.empty_table()
            table = parquet.read_row_groups(groups)
        return table.slice(start - first_row, stop - start)

    def append_outcomes(self, outcomes: pa.Table) -> None:
        if outcomes.num_rows == 0:
            return
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(self._path("outcomes"), recursive=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"outcomes/{self.part_prefix}-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(outcomes, self._path(name), filesystem=self.fs)

    def _outcome_parts(self) -> list[str]:
        """Every part of the run, or a batch's own."""
        selector = pafs.FileSelector(self._path("outcomes"), allow_not_found=True)
        own = "" if self.batch is None else f"{self.part_prefix}-"
        return sorted(
            i.path
            for i in self.fs.get_file_info(selector)
            if i.path.endswith(".parquet") and i.base_name.startswith(own)
        )

    def read_outcomes(self) -> pa.Table:
        """One outcome per listing: the latest recorded (a retried FAILED is superseded)."""
        parts = self._outcome_parts()
        if not parts:
            return self.outcome_schema.empty_table()
        tables = [pq.read_table(p, filesystem=self.fs).cast(self.outcome_schema) for p in parts]
        return latest_outcomes(pa.concat_tables(tables))

    def outcomes_dataset(self) -> ds.Dataset:
        """The recorded outcomes as a dataset, for scanning without loading them (loaded
        when a FAILED outcome may have been retried since, to keep only the latest)."""
        parts = self._outcome_parts()
        if not parts:
            return ds.dataset(self.outcome_schema.empty_table())
        if "outcome" in self.outcome_schema.names:
            whole = ds.dataset(parts, format="parquet", filesystem=self.fs)
            if whole.count_rows(filter=ds.field("outcome") == FAILED):
                return ds.dataset(self.read_outcomes())
        return ds.dataset(parts, schema=self.outcome_schema, format="parquet", filesystem=self.fs)
