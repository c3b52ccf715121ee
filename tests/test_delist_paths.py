"""delist, finalize and reinstate off the happy path: a table that is not there, FAILED
outcomes retried, a run repeated, an unknown run id, no AWS region."""

from __future__ import annotations

import boto3
import pyarrow as pa

from catalogue_purge import aws as aws_clients
from catalogue_purge.cli import main, print_failures
from catalogue_purge.detect.policy import load_policy
from catalogue_purge.detect.sweep import read_sweep
from catalogue_purge.enforce.catalogue import InMemoryCatalogue, LiveListing, Status
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA, Outcome, apply_plan, plan_delistings
from catalogue_purge.enforce.runstore import RunStore, latest_outcomes

from .conftest import LIVE_VERSION, SHIPPED_POLICY, delist_args, listing, sweep_with_cli

ROWS = [
    listing("L-1", "Antminer S19 Pro 110TH/s", "Computer & Office > Blockchain Miners"),
    listing("L-2", "Whatsminer M30S++", "Computer & Office > Blockchain Miners"),
    listing("L-3", "Blue vase"),
]
POLICY = load_policy(SHIPPED_POLICY)


def sweep_plan(tmp_path, run_id: str):
    findings, _ = read_sweep(str(tmp_path / "sweep"))
    return plan_delistings(findings, run_id, POLICY.id, POLICY.sha256)


def live_catalogue(fault=None) -> InMemoryCatalogue:
    return InMemoryCatalogue(
        {
            r["listing_id"]: LiveListing.from_row(r | {"status": Status.ACTIVE}, LIVE_VERSION)
            for r in ROWS
        },
        fault=fault,
    )


def never_changed(live):
    return True, ()


def test_a_missing_table_is_refused_before_anything_is_planned(aws, tmp_path, capsys):
    sweep_with_cli(tmp_path, ROWS)
    assert main(delist_args(tmp_path / "sweep", "no-such-table")) == 1
    said = capsys.readouterr().err
    assert "listings table 'no-such-table' does not exist" in said
    assert "nothing was planned or delisted" in said
    assert not (tmp_path / "sweep" / "runs" / "run-1").exists()


def test_failed_outcomes_are_retried_by_the_resumed_run(tmp_path):
    sweep_with_cli(tmp_path, ROWS)
    plan = sweep_plan(tmp_path, "run-1")
    store = RunStore(str(tmp_path / "runs" / "run-1"), OUTCOME_SCHEMA)

    def down(write: int, listing_id: str) -> None:
        raise RuntimeError("the catalogue is down")

    first = apply_plan(plan, live_catalogue(down), store, never_changed, approve=plan.sha256)
    assert first.outcomes == {Outcome.FAILED: 2}
    assert first.applied == 2

    catalogue = live_catalogue()
    again = apply_plan(plan, catalogue, store, never_changed, approve=plan.sha256)
    assert again.outcomes == {Outcome.DELISTED: 2}
    assert again.balanced and not again.failed
    assert catalogue.listings["L-1"].status == Status.DELISTED
    assert store.read_outcomes().column("outcome").to_pylist() == ["DELISTED", "DELISTED"]

    third = apply_plan(plan, catalogue, store, never_changed, approve=plan.sha256)
    assert third.applied == 0
    assert third.outcomes == {Outcome.DELISTED: 2}


def test_a_repeated_complete_run_says_it_changed_nothing(live_table, tmp_path, capsys):
    sweep_with_cli(tmp_path, ROWS)
    _, table = live_table(ROWS)
    args = [
        *delist_args(tmp_path / "sweep", table),
        "--approve",
        sweep_plan(tmp_path, "run-1").sha256,
    ]
    assert main(args) == 0
    assert "complete already" not in capsys.readouterr().out
    assert main(args) == 0
    assert "run run-1 was complete already: nothing changed" in capsys.readouterr().out


def test_more_failures_than_shown_are_counted(capsys):
    print_failures([{"listing_id": f"L-{i}", "error": "down"} for i in range(25)])
    said = capsys.readouterr().out
    assert said.count("FAILED L-") == 20
    assert "... and 5 more FAILED" in said


def test_the_latest_outcome_supersedes_a_failed_one():
    rows = [
        {"listing_id": "A", "outcome": "FAILED", "at": 1},
        {"listing_id": "B", "outcome": "DELISTED", "at": 2},
        {"listing_id": "A", "outcome": "DELISTED", "at": 3},
        {"listing_id": "C", "outcome": "FAILED", "at": 4},
    ]
    assert latest_outcomes(pa.Table.from_pylist(rows)).to_pylist() == rows[1:]
    untouched = pa.Table.from_pylist(rows[1:2])
    assert latest_outcomes(untouched) is untouched


def test_finalize_refuses_an_unknown_run_and_failed_outcomes(aws, tmp_path, capsys):
    sweep_with_cli(tmp_path, ROWS)
    key = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")[
        "KeyMetadata"
    ]["KeyId"]
    base = [
        "finalize",
        "--findings",
        str(tmp_path / "sweep"),
        "--manifests",
        str(tmp_path / "manifests"),
        "--key-id",
        key,
    ]
    assert main([*base, "--run-id", "unknown"]) == 1
    assert "run unknown has no recorded plan" in capsys.readouterr().err

    plan = sweep_plan(tmp_path, "run-f")
    store = RunStore(str(tmp_path / "sweep" / "runs" / "run-f"), OUTCOME_SCHEMA)

    def down(write: int, listing_id: str) -> None:
        raise RuntimeError("the catalogue is down")

    apply_plan(plan, live_catalogue(down), store, never_changed, approve=plan.sha256)
    assert main([*base, "--run-id", "run-f"]) == 6
    said = capsys.readouterr().err
    assert "2 of 2 outcomes FAILED" in said and "--allow-failed" in said
    assert not (tmp_path / "manifests").exists()

    assert main([*base, "--run-id", "run-f", "--allow-failed"]) == 0
    assert "manifest of run run-f" in capsys.readouterr().out


def test_no_region_is_a_clear_error(monkeypatch, tmp_path, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    aws_clients._session.cache_clear()
    try:
        code = main(
            [
                "reinstate",
                "--stack",
                "catalogue-purge",
                "--run",
                "run-1",
                "--policy",
                str(SHIPPED_POLICY),
                "--listing",
                "L-1",
                "--reason",
                "appeal upheld",
            ]
        )
    finally:
        aws_clients._session.cache_clear()
    assert code == 1
    assert "no AWS region for " in capsys.readouterr().err
