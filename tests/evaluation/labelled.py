"""The hand-labelled evaluation set, as a snapshot, and the metrics the sweep is held to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

LISTINGS = Path(__file__).with_name("listings.jsonl")
SNAPSHOT_COLUMNS = (
    "listing_id",
    "seller_id",
    "title",
    "description",
    "category_path",
    "category_id",
    "country_of_sale",
    "status",
    "price",
    "currency",
    "updated_at",
)


def load_listings() -> list[dict]:
    with LISTINGS.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_snapshot(rows: list[dict], path: Path) -> Path:
    updated = datetime(2021, 10, 1, 8, 0, tzinfo=UTC)
    table = pa.table(
        {
            **{
                c: [r[c] for r in rows]
                for c in SNAPSHOT_COLUMNS
                if c not in ("status", "updated_at", "price")
            },
            "price": pa.array([float(r["price"]) for r in rows], pa.float64()),
            "status": ["ACTIVE"] * len(rows),
            "updated_at": pa.array([updated] * len(rows), pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    return path


@dataclass(frozen=True)
class Scores:
    delist_precision: float
    caught: float
    evasions_flagged: float
    allowed_acted_on: float
    false_delists: list[str]
    missed: list[str]
    missed_evasions: list[str]
    allowed_acted: list[str]


def score(rows: list[dict], decisions: dict[str, tuple[str, bool]]) -> Scores:
    """decisions: listing_id -> (decision, evasion flag) for every finding."""
    prohibited = [r for r in rows if r["label"] == "prohibited"]
    allowed = [r for r in rows if r["label"] == "allowed"]
    delisted = [r for r in rows if decisions.get(r["listing_id"], ("", False))[0] == "delist"]
    false_delists = [r["listing_id"] for r in delisted if r["label"] != "prohibited"]
    missed = [
        r["listing_id"]
        for r in prohibited
        if decisions.get(r["listing_id"], ("",))[0] not in ("delist", "review")
    ]
    evasions = [r for r in prohibited if r["evasion"]]
    missed_evasions = [
        r["listing_id"]
        for r in evasions
        if not (
            decisions.get(r["listing_id"], ("", False))[0] in ("delist", "review")
            and decisions[r["listing_id"]][1]
        )
    ]
    allowed_acted = [
        r["listing_id"]
        for r in allowed
        if decisions.get(r["listing_id"], ("",))[0] in ("delist", "review")
    ]
    return Scores(
        delist_precision=1 - len(false_delists) / max(len(delisted), 1),
        caught=1 - len(missed) / max(len(prohibited), 1),
        evasions_flagged=1 - len(missed_evasions) / max(len(evasions), 1),
        allowed_acted_on=len(allowed_acted) / max(len(allowed), 1),
        false_delists=false_delists,
        missed=missed,
        missed_evasions=missed_evasions,
        allowed_acted=allowed_acted,
    )
