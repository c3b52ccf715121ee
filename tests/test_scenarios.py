"""The command line as a user runs it: `catalogue-purge` in a subprocess, each local run on its
own moto server, off the demo's path (other dates, every option of `run`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import SHIPPED_POLICY, cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("snapshots")
    for name, rows, files in (("20k", "20000", "2"), ("2k", "2000", "1")):
        cli("generate", "--out", str(root / name), "--rows", rows, "--files", files, cwd=root)
    return {"20k": root / "20k", "2k": root / "2k"}


def run_local(snapshot: Path, out: Path, as_of: str, *extra: str, expect: int | None = 0):
    return cli(
        "run",
        "--local",
        "--snapshot",
        str(snapshot),
        "--policy",
        str(SHIPPED_POLICY),
        "--as-of",
        as_of,
        "--out",
        str(out),
        *extra,
        cwd=out.parent,
        expect=expect,
    )


def manifest_of(out: Path) -> dict:
    (folder,) = (out / "manifests").iterdir()
    return json.loads((folder / "manifest.json").read_text())


def test_the_day_before_the_delisting_date_acts_on_nothing(snapshots, tmp_path):
    done = run_local(snapshots["20k"], tmp_path / "run", "2021-10-07")
    assert "nothing to act on" in done.stdout
    assert "verified" in done.stdout
    manifest = manifest_of(tmp_path / "run")
    assert manifest["counts"]["by_decision"] == {"delist": 0, "review": 0}


def test_between_the_dates_delists_without_penalties(snapshots, tmp_path):
    done = run_local(snapshots["20k"], tmp_path / "run", "2021-10-08")
    assert "before the penalty date" in done.stdout
    manifest = manifest_of(tmp_path / "run")
    assert manifest["counts"]["by_outcome"]["DELISTED"] > 50
    assert not manifest["counts"].get("by_penalty")


def test_after_the_penalty_date_penalises(snapshots, tmp_path):
    done = run_local(snapshots["20k"], tmp_path / "run", "2021-10-16")
    manifest = manifest_of(tmp_path / "run")
    delisted = manifest["counts"]["by_outcome"]["DELISTED"]
    penalties = manifest["counts"]["by_penalty"]
    assert delisted > 50
    assert sum(penalties.values()) > 20
    assert re.search(r"penalties: \d+ seller\(s\) with listings delisted", done.stdout)


def test_a_dry_run_changes_nothing_and_signs_nothing(snapshots, tmp_path):
    done = run_local(snapshots["2k"], tmp_path / "run", "2021-10-08", "--dry-run")
    assert "dry run: predicted outcomes DELISTED " in done.stdout
    assert "nothing was delisted" in done.stdout
    assert "notices:" not in done.stdout
    assert not (tmp_path / "run" / "manifests").exists()


def test_run_id_kind_and_scope_are_the_runs_own(snapshots, tmp_path):
    done = run_local(
        snapshots["2k"],
        tmp_path / "run",
        "2021-10-08",
        "--run-id",
        "rehearsal-1",
        "--kind",
        "re-sweep",
        "--scope",
        "changed",
    )
    manifest = json.loads(
        (tmp_path / "run" / "manifests" / "rehearsal-1" / "manifest.json").read_text()
    )
    assert manifest["run_id"] == "rehearsal-1"
    assert manifest["kind"] == "re-sweep"
    # A new local stack has no earlier run to compare with: said, and swept in full.
    assert manifest["sweep"]["reason"] == "changed asked, full swept: no earlier complete run"
    assert "scope: re-sweep run, full sweep (changed asked, full swept" in done.stdout


def test_a_dry_runs_plan_hash_approves_the_real_run_and_another_is_refused(snapshots, tmp_path):
    dry = run_local(
        snapshots["2k"], tmp_path / "dry", "2021-10-08", "--dry-run", "--run-id", "approved-1"
    )
    plan = re.search(r"\(plan ([0-9a-f]{64})\)", dry.stdout).group(1)

    wrong = run_local(
        snapshots["2k"],
        tmp_path / "wrong",
        "2021-10-08",
        "--run-id",
        "approved-1",
        "--approve",
        "0" * 64,
        expect=None,
    )
    assert wrong.returncode != 0
    assert f"plan {plan} is not the approved plan {'0' * 64}" in wrong.stderr
    assert not (tmp_path / "wrong" / "manifests").exists()

    run_local(
        snapshots["2k"], tmp_path / "run", "2021-10-08", "--run-id", "approved-1", "--approve", plan
    )
    assert manifest_of(tmp_path / "run")["plan_sha256"] == plan


def test_json_output_is_one_document_and_nothing_else(snapshots, tmp_path):
    done = run_local(snapshots["2k"], tmp_path / "run", "2021-10-08", "--json", "--examples", "2")
    document = json.loads(done.stdout)  # the whole of stdout
    assert document["balanced"] and document["verified"]
    assert document["outcomes"] == manifest_of(tmp_path / "run")["counts"]["by_outcome"]
    assert len(document["evasions"]) == 2
    assert "moto's server" in done.stderr  # what the run says goes to stderr

    swept = cli(
        "sweep",
        "--snapshot",
        str(snapshots["2k"]),
        "--policy",
        str(SHIPPED_POLICY),
        "--as-of",
        "2021-10-08",
        "--out",
        str(tmp_path / "sweep"),
        "--json",
        cwd=tmp_path,
    )
    sweep = json.loads(swept.stdout)
    assert sweep["summary"]["rows_scanned"] == 2000
    assert sweep["summary"]["findings"] == document["summary"]["findings"]
    assert Path(sweep["findings"]).exists()


def test_a_listing_with_a_two_megabyte_description_is_delisted(tmp_path):
    from .conftest import listing, write_listings

    huge = listing(
        "L-HUGE",
        "Antminer S19 Pro 110TH/s",
        "Computer & Office > Blockchain Miners",
        description="Specifications. " * 130_000,  # about 2 MB
    )
    write_listings(tmp_path / "snap" / "part-0.parquet", [huge, listing("L-2", "Blue vase")])
    # 1 of 2 listings is over the policy's share limit: the dry run holds it and names the plan.
    held = run_local(
        tmp_path / "snap",
        tmp_path / "dry",
        "2021-10-08",
        "--dry-run",
        "--run-id",
        "huge-1",
        expect=5,
    )
    assert "dry run: the real run would be held back" in held.stderr
    sha = re.search(r"the same --run-id and --approve ([0-9a-f]{64})", held.stderr).group(1)
    run_local(
        tmp_path / "snap", tmp_path / "out", "2021-10-08", "--run-id", "huge-1", "--approve", sha
    )
    assert manifest_of(tmp_path / "out")["counts"]["by_outcome"] == {"DELISTED": 1}


def test_a_listing_without_updated_at_is_re_checked_live_and_delisted(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .conftest import listing

    rows = [
        listing("L-1", "Antminer S19 Pro 110TH/s", "Computer & Office > Blockchain Miners"),
        *(listing(f"L-{i}", "Blue vase") for i in range(2, 60)),
    ]
    table = pa.Table.from_pylist(rows)
    table = table.set_column(
        table.schema.get_field_index("updated_at"),
        "updated_at",
        pa.array([None] + [r["updated_at"] for r in rows[1:]], pa.timestamp("us", tz="UTC")),
    )
    (tmp_path / "snap").mkdir()
    pq.write_table(table, tmp_path / "snap" / "part-0.parquet")
    run_local(tmp_path / "snap", tmp_path / "run", "2021-10-08")
    # No version to condition the write on: re-checked from the live listing, then delisted.
    counts = manifest_of(tmp_path / "run")["counts"]
    assert counts["by_outcome"] == {"CHANGED_SINCE_SNAPSHOT_DELISTED": 1}


def test_rows_without_an_id_or_sharing_one_are_set_aside_and_counted(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .conftest import listing

    miner = ("Antminer S19 Pro 110TH/s", "Computer & Office > Blockchain Miners")
    rows = [
        listing("L-TWICE", *miner),
        listing("L-TWICE", *miner, seller_id="S-2"),
        listing("L-NO-ID", *miner),
        listing("L-ONCE", *miner),
        *(listing(f"L-{i}", "Blue vase") for i in range(100)),
    ]
    table = pa.Table.from_pylist(rows)
    ids = table.column("listing_id").to_pylist()
    ids[2] = None
    table = table.set_column(0, "listing_id", pa.array(ids, pa.string()))
    table = table.set_column(
        table.schema.get_field_index("updated_at"),
        "updated_at",
        table.column("updated_at").cast(pa.timestamp("us", tz="UTC")),
    )
    (tmp_path / "snap").mkdir()
    pq.write_table(table, tmp_path / "snap" / "part-0.parquet")
    done = run_local(tmp_path / "snap", tmp_path / "run", "2021-10-08")
    assert "set aside, never acted on: duplicate listing_id 2, no listing_id 1" in done.stdout
    manifest = manifest_of(tmp_path / "run")
    assert manifest["counts"]["by_outcome"] == {"DELISTED": 1}  # L-ONCE alone
    assert manifest["quarantined"] == {
        "by_reason": {"duplicate listing_id": 2, "no listing_id": 1},
        "duplicate_ids": ["L-TWICE"],
    }
    # Each row set aside is in the manifest, with what the policy found in it, and counted.
    assert manifest["counts"]["quarantined"] == {"duplicate listing_id": 2, "no listing_id": 1}
    (folder,) = (tmp_path / "run" / "manifests").iterdir()
    (part,) = [
        p["key"]
        for p in manifest["parts"]
        if p["table"] == "quarantined" and p["format"] == "parquet"
    ]
    aside = pq.read_table(folder / part).to_pylist()
    assert [(r["reason"], r["listing_id"], r["seller_id"], r["decision"]) for r in aside] == [
        ("duplicate listing_id", "L-TWICE", "S-1", "delist"),
        ("duplicate listing_id", "L-TWICE", "S-2", "delist"),
        ("no listing_id", None, "S-1", None),
    ]
    assert all(r["title"] == miner[0] for r in aside)
    assert "rows set aside" in (folder / "report.html").read_text()
