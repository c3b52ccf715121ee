"""A policy's enforcement history, for re-sweeps: which listings earlier runs delisted (and
which of them were reinstated since), so that a listing caught again is recognised as a relist.

Under the data bucket (or any root), written once per run, never edited:

    history/<policy>/delisted/<run>.parquet     listing, seller, title tokens of each DELISTED
    history/<policy>/reinstated/<id>.parquet    listing and the run that had delisted it
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from catalogue_purge.detect.normalise import normalise
from catalogue_purge.engine import connect, load_sql
from catalogue_purge.storage import locate, parquet_bytes, write_bytes

DELISTED_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("title", pa.string()),
        ("tokens", pa.list_(pa.string())),
        ("run_id", pa.string()),
    ]
)
REINSTATED_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("run_id", pa.string()),
        ("reinstatement_id", pa.string()),
    ]
)
MIN_SIMILARITY = 0.6
COMMON_TOKENS = 1_000
_WORD = re.compile(r"\w{2,}")


def title_tokens(title: str | None) -> list[str]:
    """The distinct words of a normalised title, sorted: what two titles are compared by."""
    return sorted(set(_WORD.findall(normalise(title or ""))))


def record_delisted(
    root: str, policy_id: str, run_id: str, findings: pa.Table, outcomes: pa.Table
) -> int:
    """The run's DELISTED listings into the history (rewritten whole if the run repeats)."""
    delisted = outcomes.filter(pc.equal(outcomes.column("outcome"), "DELISTED"))
    ids = set(delisted.column("listing_id").to_pylist())
    rows = [
        {
            "listing_id": f["listing_id"],
            "seller_id": f["seller_id"],
            "title": f["title"],
            "tokens": title_tokens(f["title"]),
            "run_id": run_id,
        }
        for f in findings.select(["listing_id", "seller_id", "title"]).to_pylist()
        if f["listing_id"] in ids
    ]
    table = pa.Table.from_pylist(rows, schema=DELISTED_SCHEMA)
    location = f"{root.rstrip('/')}/history/{policy_id}/delisted/{run_id}.parquet"
    write_bytes(location, parquet_bytes(table))
    return table.num_rows


def record_reinstated(
    root: str, policy_id: str, reinstatement_id: str, reinstated: list[tuple[str, str]]
) -> None:
    """Listings reinstated (listing, the run that delisted it): no longer held against anyone."""
    table = pa.Table.from_pylist(
        [
            {"listing_id": listing, "run_id": run, "reinstatement_id": reinstatement_id}
            for listing, run in reinstated
        ],
        schema=REINSTATED_SCHEMA,
    )
    write_bytes(
        f"{root.rstrip('/')}/history/{policy_id}/reinstated/{reinstatement_id}.parquet",
        parquet_bytes(table),
    )


def _dataset(
    root: str, policy_id: str, kind: str, schema: pa.Schema, excluding: str | None = None
) -> pa.Table:
    fs, base = locate(f"{root.rstrip('/')}/history/{policy_id}/{kind}")
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    paths = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.path.endswith(".parquet")
        and i.base_name != f"{excluding}.parquet"
    )
    if not paths:
        return schema.empty_table()
    return ds.dataset(paths, schema=schema, format="parquet", filesystem=fs).to_table()


def read_reinstated(root: str, policy_id: str) -> pa.Table:
    """Every listing given back on appeal under the policy, with its reinstatement."""
    return _dataset(root, policy_id, "reinstated", REINSTATED_SCHEMA)


def past_delisted(
    root: str, policy_id: str, reinstated: pa.Table, excluding_run: str | None = None
) -> pa.Table:
    """Every listing earlier runs delisted and no reinstatement (read_reinstated) gave back."""
    delisted = _dataset(root, policy_id, "delisted", DELISTED_SCHEMA, excluding_run)
    if reinstated.num_rows == 0 or delisted.num_rows == 0:
        return delisted

    def listing_in_run(table: pa.Table) -> pa.ChunkedArray:
        return pc.binary_join_element_wise(table["listing_id"], table["run_id"], "\x1f")

    given_back = pc.is_in(listing_in_run(delisted), value_set=listing_in_run(reinstated))
    return delisted.filter(pc.invert(given_back))


def reinstated_listings(reinstated: pa.Table) -> dict[str, str]:
    """listing -> the reinstatement that gave it back (the latest, if several), from
    read_reinstated."""
    return {r["listing_id"]: r["reinstatement_id"] for r in reinstated.to_pylist()}


def hold_reinstated(findings: pa.Table, reinstated: dict[str, str]) -> pa.Table:
    """A listing reinstated on appeal and caught again goes to review, not to delisting: a
    person decided it once, a person decides again (and may grant an exemption). The
    reinstatement is named among its exemption ids."""
    if not reinstated or findings.num_rows == 0:
        return findings
    ids = findings.column("listing_id").to_pylist()
    decisions = findings.column("decision").to_pylist()
    exemptions = findings.column("exemption_ids").to_pylist()
    held = [i in reinstated and d == "delist" for i, d in zip(ids, decisions, strict=True)]
    if not any(held):
        return findings
    new_decisions = ["review" if h else d for h, d in zip(held, decisions, strict=True)]
    new_exemptions = [
        [*(e or []), f"reinstated:{reinstated[i]}"] if h else e
        for h, i, e in zip(held, ids, exemptions, strict=True)
    ]
    findings = findings.set_column(
        findings.schema.get_field_index("decision"), "decision", pa.array(new_decisions)
    )
    return findings.set_column(
        findings.schema.get_field_index("exemption_ids"),
        "exemption_ids",
        pa.array(new_exemptions, pa.list_(pa.string())),
    )


def mark_relists(findings: pa.Table, past: pa.Table) -> pa.Table:
    """The findings with relist, relist_of and relist_reason set (sql/relists.sql)."""
    if findings.num_rows == 0 or past.num_rows == 0:
        return findings
    caught = pa.table(
        {
            "listing_id": findings.column("listing_id"),
            "seller_id": findings.column("seller_id"),
            "tokens": pa.array(
                [title_tokens(t) for t in findings.column("title").to_pylist()],
                pa.list_(pa.string()),
            ),
        }
    )
    with connect(threads=1) as con:
        con.register("caught", caught)
        con.register("past", past)
        found = con.sql(
            load_sql("relists"),
            params={"min_similarity": MIN_SIMILARITY, "common_tokens": COMMON_TOKENS},
        ).fetchall()
    relists = {listing: (earlier, reason) for listing, earlier, reason, _ in found}
    ids = findings.column("listing_id").to_pylist()
    columns = {
        "relist": pa.array([i in relists for i in ids], pa.bool_()),
        "relist_of": pa.array([relists[i][0] if i in relists else None for i in ids], pa.string()),
        "relist_reason": pa.array(
            [relists[i][1] if i in relists else None for i in ids], pa.string()
        ),
    }
    for name, values in columns.items():
        findings = findings.set_column(findings.schema.get_field_index(name), name, values)
    return findings
