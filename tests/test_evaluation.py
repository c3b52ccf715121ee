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


# The three-way splits (tests/evaluation/guidelines.md): `tune` the policy may be tuned on;
# `blind`, written from the guidelines alone by writers who never saw the policy, is never
# tuned on. The floors below are the figures last measured, so a change cannot make them worse
# unnoticed; the targets the policy is held to (DEFAULT_TARGETS) are not all met yet.
EVALUATION = Path(__file__).parent / "evaluation"
SPLITS = {
    "tune": sorted((EVALUATION / "tune").glob("*.jsonl")),
    "blind": sorted((EVALUATION / "blind").glob("*.jsonl")),
}
FLOORS = {  # figure: (tune, blind), each split's batches pooled
    "delist_precision": (0.995, 0.97),
    "prohibited_caught": (0.99, 0.96),
    "evasions_flagged": (0.985, 0.935),
    "review_surfaced": (0.985, 0.94),
}
CEILINGS = {
    "allowed_touched": (0.04, 0.055),
    "allowed_touched_elsewhere": (0.005, 0.02),
    "review_delisted": (0.005, 0.02),
}


def test_the_splits_are_large_varied_and_apart():
    from catalogue_purge.detect.evaluation import load_labelled

    rows = {split: [r for f in files for r in load_labelled(f)] for split, files in SPLITS.items()}
    assert len(rows["blind"]) >= 500 and sum(len(r) for r in rows.values()) >= 1_200
    everything = [r for split in rows.values() for r in split]
    assert len({r["listing_id"] for r in everything}) == len(everything)  # no row in both
    assert len({r["lang"] for r in everything if r.get("lang")}) >= 8
    for split in rows.values():
        assert {r["label"] for r in split} == {"prohibited", "review", "allowed"}


def test_the_policy_on_both_splits(policy, capsys):
    from catalogue_purge.detect.evaluation import DEFAULT_TARGETS, FIGURES, evaluate, load_labelled

    for index, (split, files) in enumerate(SPLITS.items()):
        rows = [r for f in files for r in load_labelled(f)]
        ev = evaluate(policy, rows, split)
        with capsys.disabled():
            shown = ", ".join(f"{n} {ev.figures[n]:.3f}" for n in FIGURES)
            print(f"\n{split} ({ev.rows} listings): {shown}")
            print(f"  against the targets: {ev.unmet(DEFAULT_TARGETS) or 'all met'}")
        for name, floors in FLOORS.items():
            assert ev.figures[name] >= floors[index], (split, name, ev.figures[name])
        for name, ceilings in CEILINGS.items():
            assert ev.figures[name] <= ceilings[index], (split, name, ev.figures[name])
