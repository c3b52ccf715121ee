"""The sweep: find every listing of a snapshot that the policy catches, with the evidence.

DuckDB is the query engine: it scans each Parquet part (streaming, row group by row group, in
parallel) and calls the matcher's screen as an Arrow UDF over whole vectors of titles and
descriptions. Only listings in a prohibited category or whose text passes the screen come
back to Python for the precise match; which rules fire (sql/fire_rules.sql) and the decisions
themselves (category, delist or review, evasion, exemptions; sql/classify_findings.sql) are
made in SQL.
"""

from __future__ import annotations

import hashlib
import json
import math
import time as _time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from duckdb.func import FunctionNullHandling, PythonUDFType

from catalogue_purge.detect.matcher import Matcher
from catalogue_purge.detect.policy import CATEGORY_SEPARATOR, Policy
from catalogue_purge.detect.snapshot import SWEEP_COLUMNS, Snapshot
from catalogue_purge.engine import connect, load_sql
from catalogue_purge.errors import SnapshotError
from catalogue_purge.storage import locate, parquet_bytes, read_bytes, write_bytes

FINDINGS_FILE = "findings.parquet"
CANDIDATE_BATCH = 4096
# Screened listings decided at a time: bounds the memory of the decision queries.
CLASSIFY_BATCH = 20_000
SWEEP_FILE = "sweep.json"
DUPLICATES_SHOWN = 100  # duplicate ids named in sweep.json (all are counted)
NO_ID = "no listing_id"
DUPLICATE_ID = "duplicate listing_id"


class Listing(Protocol):
    """The fields of one listing that its decision reads, wherever it comes from (a snapshot's
    row, or the live catalogue's record of it when it changed since the snapshot)."""

    @property
    def listing_id(self) -> str: ...
    @property
    def seller_id(self) -> str: ...
    @property
    def category_path(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def country_of_sale(self) -> str: ...


EVIDENCE_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("rule_id", pa.string()),
        ("weight", pa.float64()),
        ("shadow", pa.bool_()),
        ("caps", pa.bool_()),
        ("term", pa.string()),
        ("field", pa.string()),
        ("text", pa.string()),
    ]
)
THRESHOLDS_SCHEMA = pa.schema([("delist_at", pa.float64()), ("review_at", pa.float64())])
CATEGORIES_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("review_when_text_disagrees", pa.bool_()),
        ("review_when_text_silent", pa.bool_()),
    ]
)
CANDIDATE_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("country_of_sale", pa.string()),
        ("category_path", pa.string()),
        ("title", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("prohibited_category", pa.string()),
    ]
)
# The rows nothing can act on, one per snapshot row set aside: the manifest's quarantined table.
# A row without an id was never decided (decision null); a duplicate id's rows carry what the
# policy found in each.
QUARANTINE_SCHEMA = pa.schema(
    [
        ("reason", pa.string()),
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("country_of_sale", pa.string()),
        ("category_path", pa.string()),
        ("title", pa.string()),
        ("decision", pa.string()),
        ("rule_ids", pa.list_(pa.string())),
    ]
)
QUARANTINE_FILE = "quarantined.parquet"
EXEMPTION_SCHEMA = pa.schema(
    [
        ("exemption_id", pa.string()),
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("rule_id", pa.string()),
    ]
)
FINDINGS_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("country_of_sale", pa.string()),
        ("category_path", pa.string()),
        ("decision", pa.string()),
        ("rule_ids", pa.list_(pa.string())),
        ("matched_terms", pa.list_(pa.string())),
        ("evasion", pa.bool_()),
        ("title", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("prohibited_category", pa.string()),
        (
            "evidence",
            pa.list_(
                pa.struct(
                    [
                        ("rule_id", pa.string()),
                        ("term", pa.string()),
                        ("field", pa.string()),
                        ("text", pa.string()),
                        ("exemption_id", pa.string()),
                        # what the rule adds to the score (a rule counts once per listing)
                        ("weight", pa.float64()),
                        ("shadow", pa.bool_()),  # a rule in shadow: reported, never counted
                    ]
                )
            ),
        ),
        ("exemption_ids", pa.list_(pa.string())),
        # Caught again: the seller had listings delisted under the policy before ("seller"), or
        # the title closely matches one delisted before ("title"); relist_of names it.
        ("relist", pa.bool_()),
        ("relist_of", pa.string()),
        ("relist_reason", pa.string()),
        # The sum of the weights of the live rules that fired, exemptions aside; a prohibited
        # category delists whatever it is, and the score says whether the text agrees.
        ("score", pa.float64()),
        # The decision the rules in shadow would have made, where it differs (else null).
        ("shadow_decision", pa.string()),
    ]
)


@dataclass(frozen=True)
class SweepResult:
    findings: pa.Table
    policy_id: str
    policy_version: str
    policy_sha256: str
    exemptions_sha256: str | None
    as_of: datetime
    acting: bool
    snapshot: dict
    rows_scanned: int
    candidates: int
    seconds: float
    # What was swept: {"kind": "full"} or a re-sweep's {"kind": "changed", "since": ...}.
    scope: dict = field(default_factory=lambda: {"kind": "full"})
    threads: int | None = None  # DuckDB's threads for the scan (None: it scanned nothing)
    # Rows the policy may catch that nothing can act on, set aside and counted by reason.
    quarantined: dict[str, int] = field(default_factory=dict)
    duplicate_ids: list[str] = field(default_factory=list)  # ids of several snapshot rows
    quarantine: pa.Table = field(default_factory=QUARANTINE_SCHEMA.empty_table)  # those rows

    @cached_property
    def summary(self) -> dict:
        return summarise(self.findings) | {
            "rows_scanned": self.rows_scanned,
            "candidates": self.candidates,
            "acting": self.acting,
            "quarantined": dict(sorted(self.quarantined.items())),
            "duplicate_ids": self.duplicate_ids[:DUPLICATES_SHOWN],
        }

    def record(self, findings_sha256: str) -> dict:
        """What sweep.json holds: enough to know exactly what produced the findings."""
        return {
            "policy": {
                "id": self.policy_id,
                "version": self.policy_version,
                "sha256": self.policy_sha256,
                "exemptions_sha256": self.exemptions_sha256,
            },
            "as_of": self.as_of.isoformat(),
            "snapshot": self.snapshot,
            "scope": self.scope,
            "findings_sha256": findings_sha256,
            "seconds": round(self.seconds, 3),
            "threads": self.threads,
            "summary": self.summary,
        }


ProgressCallback = Callable[[int], None]


def summarise(findings: pa.Table) -> dict:
    """Counts by decision, by rule and by country (evasions counted apart)."""
    con = connect(threads=1)
    con.register("findings", findings)
    by_decision = dict(con.execute(load_sql("summary_by_decision")).fetchall())
    by_rule = {
        r: dict(zip(["delist", "review", "exempted"], rest, strict=True))
        for r, *rest in con.execute(load_sql("summary_by_rule")).fetchall()
    }
    by_country = {
        c: dict(zip(["delist", "review", "exempted"], rest, strict=True))
        for c, *rest in con.execute(load_sql("summary_by_country")).fetchall()
    }
    evasions = con.execute(load_sql("summary_evasions")).fetchone()
    con.close()
    return {
        "findings": findings.num_rows,
        "by_decision": by_decision,
        "evasions": evasions[0] if evasions else 0,
        "by_rule": by_rule,
        "by_country": by_country,
    }


def _prohibited_prefixes(policy: Policy) -> list[str]:
    return [c.path + CATEGORY_SEPARATOR for c in policy.document.prohibited_categories]


def _exemptions_table(policy: Policy, on: date) -> pa.Table:
    rows = []
    for ex in policy.exemptions_on(on):
        for rule_id in ex.rules:
            rows.append(
                {
                    "exemption_id": ex.id,
                    "listing_id": ex.listing_id,
                    "seller_id": ex.seller_id,
                    "rule_id": rule_id,
                }
            )
    return pa.Table.from_pylist(rows, schema=EXEMPTION_SCHEMA)


def _listings_relation(
    con: duckdb.DuckDBPyConnection, snapshot: Snapshot, index: int
) -> duckdb.DuckDBPyRelation:
    """One part of the snapshot as a relation with the contract's column names.

    Local files are read by DuckDB's own Parquet reader; S3 objects through pyarrow's S3
    filesystem (DuckDB's httpfs would download itself at run time). Columns are renamed with
    the relational API, so no name from a mapping is ever pasted into SQL text.
    """
    part = snapshot.files[index]
    if snapshot.is_local and part.subset is None:
        rel = con.read_parquet(part.path)
    else:
        rel = con.from_arrow(part.fragment(snapshot.filesystem))
    projection = [
        duckdb.ColumnExpression(snapshot.source_column(name)).alias(name) for name in SWEEP_COLUMNS
    ]
    return rel.select(*projection)


def set_aside_duplicates(findings: pa.Table) -> tuple[pa.Table, list[str], pa.Table]:
    """Findings whose listing_id stands on several snapshot rows: which row is the listing
    is unknowable, so none is acted on. (findings kept, the duplicate ids, the rows set aside
    as quarantined rows)."""
    none = QUARANTINE_SCHEMA.empty_table()
    if findings.num_rows == 0:
        return findings, [], none
    counted = findings.group_by("listing_id").aggregate([("listing_id", "count")])
    twice = counted.filter(pc.greater(counted.column("listing_id_count"), 1))
    if twice.num_rows == 0:
        return findings, [], none
    ids = twice.column("listing_id")
    duplicated = pc.is_in(findings.column("listing_id"), value_set=ids)
    kept = findings.filter(pc.invert(duplicated))
    aside = quarantine_rows(findings.filter(duplicated), DUPLICATE_ID)
    return kept, sorted(ids.to_pylist()), aside


def quarantine_counts(no_id: int, duplicate_rows: int) -> dict[str, int]:
    return {k: v for k, v in {NO_ID: no_id, DUPLICATE_ID: duplicate_rows}.items() if v}


def quarantine_rows(rows: pa.Table | pa.RecordBatch, reason: str) -> pa.Table:
    """Rows set aside for `reason`, in the quarantined table's shape (candidates have no
    decision yet; findings do)."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
    n = table.num_rows
    columns = {
        name: table.column(name) if name in table.column_names else pa.nulls(n, kind)
        for name, kind in zip(QUARANTINE_SCHEMA.names, QUARANTINE_SCHEMA.types, strict=True)
    }
    columns["reason"] = pa.array([reason] * n, pa.string())
    return pa.table(columns, schema=QUARANTINE_SCHEMA)


def merge_quarantine(*parts: pa.Table) -> pa.Table:
    """The quarantined rows in a stable order: by reason, id, seller and title."""
    table = pa.concat_tables([QUARANTINE_SCHEMA.empty_table(), *parts])
    return table.sort_by([(k, "ascending") for k in ("reason", "listing_id", "seller_id", "title")])


def _match_candidates(matcher: Matcher, batch: pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
    """Stage 2 over the screened rows: what the precise match finds, and the rows worth
    deciding (something was found, or the listing is in a prohibited category)."""
    hits = matcher.match_hits(
        batch.column("listing_id"), batch.column("title"), batch.column("description")
    )
    found = pc.is_in(batch.column("listing_id"), value_set=hits.column("listing_id").unique())
    keep = pc.or_(found, batch.column("prohibited_category").is_valid())
    kept = pa.Table.from_batches([batch]).filter(keep)
    return kept.select(CANDIDATE_SCHEMA.names).cast(CANDIDATE_SCHEMA), hits


def fire_rules(
    con: duckdb.DuckDBPyConnection, matcher: Matcher, candidates: pa.Table, hits: pa.Table
) -> pa.Table:
    """The evidence of every text rule that fires (sql/fire_rules.sql)."""
    con.register("candidates", candidates)
    con.register("hits", hits)
    con.register("patterns", matcher.patterns_table())
    con.register("rule_scope", matcher.rule_scope_table())
    return con.sql(load_sql("fire_rules")).to_arrow_table().cast(EVIDENCE_SCHEMA)


def match_listings(matcher: Matcher, listings: pa.Table) -> pa.Table:
    """The evidence of the text rules that fire for the given listings (listing_id,
    country_of_sale, title, description), without a snapshot: for tests and tools."""
    hits = matcher.match_hits(
        listings.column("listing_id").combine_chunks(),
        listings.column("title").combine_chunks(),
        listings.column("description").combine_chunks(),
    )
    con = connect(threads=1)
    try:
        return fire_rules(con, matcher, listings, hits)
    finally:
        con.close()


def _screen_function(
    matcher: Matcher, progress: ProgressCallback | None
) -> Callable[[pa.Array], pa.Array]:
    def screen_text(texts: pa.Array) -> pa.Array:
        mask = matcher.screen(texts)
        if progress is not None:
            progress(len(texts))
        return pa.array(mask, type=pa.bool_())

    return screen_text


def iter_candidate_batches(
    con: duckdb.DuckDBPyConnection,
    snapshot: Snapshot,
    policy: Policy,
    index: int,
    since: datetime | None = None,
) -> Iterator[pa.RecordBatch]:
    countries = policy.document.scope.countries
    params = {
        "prefixes": _prohibited_prefixes(policy),
        "countries": None if countries == "all" else list(countries),
        "since": since,
    }
    _listings_relation(con, snapshot, index).create_view("listings", replace=True)
    reader = con.sql(load_sql("screen_listings"), params=params).to_arrow_reader(CANDIDATE_BATCH)
    yield from reader


def sweep(
    snapshot: Snapshot,
    policy: Policy,
    as_of: datetime,
    *,
    progress: ProgressCallback | None = None,
    on_file_done: Callable[[int], None] | None = None,
    threads: int | None = None,
    matcher: Matcher | None = None,
    since: datetime | None = None,
    whole: bool = True,
) -> SweepResult:
    """Sweep the snapshot with the policy as of a time. Before the policy's delisting date the
    sweep finds nothing to act on (and scans nothing). `since` (a re-sweep's watermark) limits
    it to the listings updated after that time. A sweep of one shard of a snapshot
    (`whole=False`) leaves duplicate ids to the merge of the shards, which sees them all."""
    started = _time.perf_counter()

    def result(
        findings: pa.Table, acting: bool, rows: int, screened: int, used: int | None = None
    ) -> SweepResult:
        return SweepResult(
            findings=findings,
            policy_id=policy.id,
            policy_version=policy.version,
            policy_sha256=policy.sha256,
            exemptions_sha256=policy.exemptions_sha256,
            as_of=as_of,
            acting=acting,
            snapshot=snapshot.fingerprint(),
            rows_scanned=rows,
            candidates=screened,
            seconds=_time.perf_counter() - started,
            threads=used,
        )

    if not policy.delisting_active(as_of):
        return result(FINDINGS_SCHEMA.empty_table(), acting=False, rows=0, screened=0)
    matcher = matcher or Matcher(policy)
    # Decisions are made every CLASSIFY_BATCH screened listings on a second connection (the
    # first is streaming the scan), so memory stays flat however large the snapshot.
    with connect(threads=threads) as scanning, connect(threads=threads) as deciding:
        scanning.create_function(
            "screen_text",
            _screen_function(matcher, progress),
            [duckdb.sqltype("VARCHAR")],
            duckdb.sqltype("BOOLEAN"),
            type=PythonUDFType.ARROW,
            null_handling=FunctionNullHandling.SPECIAL,
        )
        deciding.register("exemptions", _exemptions_table(policy, policy.local_day(as_of)))
        pending: list[tuple[pa.Table, pa.Table]] = []
        parts: list[pa.Table] = []

        def decide_pending() -> None:
            if pending:
                candidates = pa.concat_tables([rows for rows, _ in pending])
                hits = pa.concat_tables([found for _, found in pending])
                parts.append(classify(deciding, matcher, candidates, hits))
                pending.clear()

        screened, no_id = 0, 0
        without_id: list[pa.Table] = []
        for index, part in enumerate(snapshot.files):
            try:
                for candidates in iter_candidate_batches(scanning, snapshot, policy, index, since):
                    screened += candidates.num_rows
                    batch = candidates
                    if batch.column("listing_id").null_count:
                        # nothing can act on a row without an id: set aside, counted
                        no_id += batch.column("listing_id").null_count
                        without_id.append(
                            quarantine_rows(
                                batch.filter(batch.column("listing_id").is_null()), NO_ID
                            )
                        )
                        batch = batch.filter(batch.column("listing_id").is_valid())
                    pending.append(_match_candidates(matcher, batch))
                    if sum(rows.num_rows for rows, _ in pending) >= CLASSIFY_BATCH:
                        decide_pending()
            except (duckdb.BinderException, duckdb.ParserException, duckdb.CatalogException):
                raise  # a fault in our SQL, not in the snapshot
            except (duckdb.Error, pa.ArrowException, OSError) as exc:
                # Unreadable pages surface as IO, conversion or bare errors ("don't know what
                # type"): the sweep fails, it never passes for a sweep that found less.
                raise SnapshotError(f"cannot sweep {part.path}: {exc}") from exc
            if on_file_done is not None:
                on_file_done(index)
        decide_pending()
        setting = scanning.execute("SELECT current_setting('threads')").fetchone()
        used = int(setting[0]) if setting else None
    findings = pa.concat_tables(parts) if parts else FINDINGS_SCHEMA.empty_table()
    findings, duplicates, aside = (
        set_aside_duplicates(findings) if whole else (findings, [], QUARANTINE_SCHEMA.empty_table())
    )
    return replace(
        result(
            findings.sort_by("listing_id"),
            acting=True,
            rows=snapshot.rows,
            screened=screened,
            used=used,
        ),
        quarantined=quarantine_counts(no_id, aside.num_rows),
        duplicate_ids=duplicates,
        quarantine=merge_quarantine(*without_id, aside),
    )


def classify(
    con: duckdb.DuckDBPyConnection,
    matcher: Matcher,
    candidates: pa.Table,
    hits: pa.Table,
    *,
    every_listing: bool = False,
) -> pa.Table:
    """The findings among screened listings (sql/fire_rules.sql, then
    sql/classify_findings.sql); `con` must hold the `exemptions` table. `every_listing` keeps a
    finding (its score and evidence) for each listing anything fired for, whatever its score:
    for explaining a decision, never for acting on one (its decisions are not the policy's)."""
    con.register("evidence", fire_rules(con, matcher, candidates, hits))
    thresholds = matcher.policy.document.thresholds
    review = -math.inf if every_listing else thresholds.review
    con.register(
        "thresholds",
        pa.table(
            {"delist_at": [max(thresholds.delist, review)], "review_at": [review]},
            schema=THRESHOLDS_SCHEMA,
        ),
    )
    categories = matcher.policy.document.prohibited_categories
    con.register(
        "categories",
        pa.table(
            {
                "path": [c.path for c in categories],
                "review_when_text_disagrees": [
                    c.when_text_disagrees == "review" for c in categories
                ],
                "review_when_text_silent": [c.when_text_silent == "review" for c in categories],
            },
            schema=CATEGORIES_SCHEMA,
        ),
    )
    return con.sql(load_sql("classify_findings")).to_arrow_table().cast(FINDINGS_SCHEMA)


def write_findings(result: SweepResult, out_dir: str | Path) -> Path:
    """Write DIR/findings.parquet and DIR/sweep.json (publish_sweep): the findings file."""
    publish_sweep(result, str(out_dir))
    return Path(out_dir) / FINDINGS_FILE


def publish_sweep(result: SweepResult, location: str) -> None:
    """findings.parquet then sweep.json at a local folder or an s3:// prefix, each written
    whole (a temporary name and a rename locally, one PUT on S3). sweep.json, the record, is
    written last: a sweep without it is not complete."""
    data = parquet_bytes(result.findings)
    base = location.rstrip("/")
    write_bytes(f"{base}/{FINDINGS_FILE}", data)
    write_bytes(f"{base}/{QUARANTINE_FILE}", parquet_bytes(result.quarantine))
    record = result.record(hashlib.sha256(data).hexdigest())
    text = json.dumps(record, indent=2, ensure_ascii=False, default=str)
    write_bytes(f"{base}/{SWEEP_FILE}", text.encode())


def read_findings(out_dir: str | Path) -> pa.Table:
    return read_sweep(str(out_dir))[0]


def read_sweep(location: str) -> tuple[pa.Table, dict]:
    """findings.parquet and sweep.json of a sweep, from a local folder or an s3:// prefix."""
    return findings_dataset(location).to_table(), read_sweep_record(location)


def read_sweep_record(location: str) -> dict:
    return dict(json.loads(read_bytes(f"{location.rstrip('/')}/{SWEEP_FILE}")))


def read_quarantine(location: str) -> pa.Table:
    """The rows a sweep set aside (none for a sweep recorded before they were kept)."""
    fs, path = locate(location)
    file = f"{path}/{QUARANTINE_FILE}"
    if fs.get_file_info(file).type != pafs.FileType.File:
        return QUARANTINE_SCHEMA.empty_table()
    return ds.dataset(file, schema=QUARANTINE_SCHEMA, format="parquet", filesystem=fs).to_table()


def findings_dataset(location: str) -> ds.Dataset:
    """A sweep's findings as a dataset, for scanning without loading them."""
    fs, path = locate(location)
    return ds.dataset(f"{path}/{FINDINGS_FILE}", format="parquet", filesystem=fs)


def decisions(findings: pa.Table) -> dict[str, str]:
    """listing_id -> decision: a convenience for tests and reports."""
    return dict(
        zip(
            findings.column("listing_id").to_pylist(),
            findings.column("decision").to_pylist(),
            strict=True,
        )
    )


def explain(
    policy: Policy,
    matcher: Matcher,
    listing: Listing,
    on: date,
) -> dict:
    """The decision for one listing, with its score, the thresholds and every piece of evidence
    with its weight (including rules that fired without deciding anything): for policy authors
    and appeals. The decision is the sweep's own classification."""
    thresholds = policy.document.thresholds
    explained: dict = {
        "listing_id": listing.listing_id,
        "in_scope": policy.country_in_scope(listing.country_of_sale),
        "thresholds": {"delist": thresholds.delist, "review": thresholds.review},
        "decision": "none",
        "score": 0.0,
        "prohibited_category": None,
        "rule_ids": [],
        "evidence": [],
        "exemption_ids": [],
        "shadow_decision": None,
    }
    if not explained["in_scope"]:
        return explained
    candidate = _candidate(policy, listing)
    explained["prohibited_category"] = candidate.column("prohibited_category")[0].as_py()
    hits = matcher.match_hits(
        candidate.column("listing_id").combine_chunks(),
        candidate.column("title").combine_chunks(),
        pa.array([listing.description], pa.string()),
    )
    with connect(threads=1) as con:
        con.register("exemptions", _exemptions_table(policy, on))
        decided = classify(con, matcher, candidate, hits).to_pylist()
        every = classify(con, matcher, candidate, hits, every_listing=True).to_pylist()
    if every:
        explained |= {
            "score": every[0]["score"],
            "evidence": every[0]["evidence"],
            "exemption_ids": every[0]["exemption_ids"],
        }
    if decided:
        finding = decided[0]
        explained |= {
            "decision": finding["decision"],
            "rule_ids": finding["rule_ids"],
            "shadow_decision": finding["shadow_decision"],
            "evasion": finding["evasion"],
        }
    return explained


def prohibited_category_of(policy: Policy, category_path: str | None) -> str | None:
    """The suspended category a category path is, or lies under, as the sweep reads it
    (sql/screen_listings.sql); None when it is in none."""
    given = (category_path or "") + CATEGORY_SEPARATOR
    prefix = next((p for p in _prohibited_prefixes(policy) if given.startswith(p)), None)
    return prefix.removesuffix(CATEGORY_SEPARATOR) if prefix else None


def _candidate(policy: Policy, live: Listing) -> pa.Table:
    """One listing as the decision query takes it, with its prohibited category (if any)."""
    return pa.table(
        {
            "listing_id": [live.listing_id],
            "seller_id": [live.seller_id],
            "country_of_sale": [live.country_of_sale],
            "category_path": [live.category_path],
            "title": [live.title],
            "updated_at": [None],
            "prohibited_category": [prohibited_category_of(policy, live.category_path)],
        },
        schema=CANDIDATE_SCHEMA,
    )


def live_recheck(
    policy: Policy, matcher: Matcher, on: date | None = None
) -> Callable[[Listing], tuple[bool, tuple[str, ...]]]:
    """For a listing that changed since the snapshot: do its live fields still call for
    delisting, and under which rules? The same classification as the sweep's (prohibited
    categories, rules in force in its country, exemptions in force `on` that day, today by
    default), over the live fields."""
    exemptions = _exemptions_table(policy, on or policy.local_day(datetime.now(UTC)))

    def recheck(live: Listing) -> tuple[bool, tuple[str, ...]]:
        if not policy.country_in_scope(live.country_of_sale):
            return False, ()
        candidate = _candidate(policy, live)
        hits = matcher.match_hits(
            candidate.column("listing_id").combine_chunks(),
            candidate.column("title").combine_chunks(),
            pa.array([live.description], pa.string()),
        )
        with connect(threads=1) as con:
            con.register("exemptions", exemptions)
            found = classify(con, matcher, candidate, hits).to_pylist()
        if not found or found[0]["decision"] != "delist":
            return False, tuple(found[0]["rule_ids"]) if found else ()
        return True, tuple(found[0]["rule_ids"])

    return recheck
