"""The labelled evaluation set: precision and recall the sweep is held to."""

from __future__ import annotations

from pathlib import Path

from catalogue_purge.cli import parse_as_of
from catalogue_purge.detect.snapshot import open_snapshot
from catalogue_purge.detect.sweep import sweep

from .evaluation.labelled import load_listings, score, write_snapshot


def test_evaluation_set_is_large_and_varied():
    rows = load_listings()
    assert len(rows) >= 300
    assert len({r["listing_id"] for r in rows}) == len(rows)
    kinds = {r["kind"] for r in rows if r["label"] == "prohibited"}
    assert kinds == {
        "asic_miner",
        "gpu_rig",
        "miner_accessory",
        "mining_software",
        "mining_tutorial",
        "cryptocurrency",
    }
    assert sum(r["evasion"] for r in rows) >= 40


def test_sweep_meets_precision_and_recall_targets(policy, tmp_path: Path):
    rows = load_listings()
    snapshot = open_snapshot(str(write_snapshot(rows, tmp_path / "evaluation.parquet")))
    result = sweep(snapshot, policy, parse_as_of("2021-10-08", policy))
    found = {r["listing_id"]: (r["decision"], r["evasion"]) for r in result.findings.to_pylist()}
    scores = score(rows, found)
    report = (
        f"false delists {scores.false_delists}; missed {scores.missed}; "
        f"missed evasions {scores.missed_evasions}; allowed acted on {scores.allowed_acted}"
    )
    assert scores.delist_precision >= 0.98, report
    assert scores.caught >= 0.95, report
    assert scores.evasions_flagged >= 0.90, report
    assert scores.allowed_acted_on <= 0.05, report
