"""The review commands as a user runs them, against the local sandbox: a purge queues its
doubtful listings, a spreadsheet decides them, the applier applies them as a review run, and
the decided items come back as labelled listings."""

from __future__ import annotations

import csv
import io
import json

import pytest

from catalogue_purge.synthetic import generate_snapshot

from .conftest import SHIPPED_POLICY, cli
from .test_sandbox import sandbox, season_run  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow
POLICY = ["--stack", "local", "--policy", str(SHIPPED_POLICY)]


def test_review_commands_through_a_season(tmp_path, sandbox):  # noqa: F811 - the fixture
    generate_snapshot(tmp_path / "snapshot", rows=2_000, files=1, seed=7)
    cli("local", "up", cwd=tmp_path, env=sandbox)
    ran = season_run(tmp_path, sandbox, tmp_path / "snapshot", "2021-10-20")
    assert "listing(s) wait for a person to decide" in ran.stdout
    status = json.loads(
        cli("review", "status", *POLICY, "--json", cwd=tmp_path, env=sandbox).stdout
    )
    waiting = status["waiting"]
    assert waiting >= 2 and status["counts"]["WAITING"] == waiting

    # The same run again queues nothing twice.
    season_run(tmp_path, sandbox, tmp_path / "snapshot", "2021-10-20")
    again = json.loads(cli("review", "status", *POLICY, "--json", cwd=tmp_path, env=sandbox).stdout)
    assert again["waiting"] == waiting

    sheet = tmp_path / "review.csv"
    exported = cli(
        "review",
        "export",
        *POLICY,
        "--out",
        str(sheet),
        "--reviewer",
        "rv-anna",
        "--count",
        "2",
        "--order",
        "priority",
        "--hours",
        "2",
        cwd=tmp_path,
        env=sandbox,
    )
    assert "2 item(s) claimed for rv-anna for 2 h" in exported.stdout
    rows = list(csv.DictReader(io.StringIO(sheet.read_bytes().decode("utf-8-sig"))))
    assert len(rows) == 2
    rows[0] |= {"decision": "keep", "reason": "a graphics card sold alone"}
    rows[1] |= {
        "decision": "delist",
        "reason": "a rig frame",
        "rules": rows[1]["found_under"].split("; ")[0],
    }
    with sheet.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # Another reviewer cannot decide the items rv-anna holds.
    refused = cli(
        "review",
        "import",
        *POLICY,
        str(sheet),
        "--reviewer",
        "rv-ben",
        cwd=tmp_path,
        env=sandbox,
        expect=4,
    )
    assert "not claimed by rv-ben" in refused.stdout
    imported = cli(
        "review", "import", *POLICY, str(sheet), "--reviewer", "rv-anna", cwd=tmp_path, env=sandbox
    )
    assert "decided: delist 1, keep 1" in imported.stdout

    dry = json.loads(
        cli("review", "apply", *POLICY, "--dry-run", "--json", cwd=tmp_path, env=sandbox).stdout
    )
    assert dry["dry_run"] and sum(dry["outcomes"].values()) >= 1
    applied = cli(
        "review",
        "apply",
        *POLICY,
        "--as-of",
        "2021-10-21T10:00:00+08:00",
        cwd=tmp_path,
        env=sandbox,
    )
    assert (
        "review run review-" in applied.stdout
        and "manifest (kind review, chained)" in applied.stdout
    )
    nothing = cli("review", "apply", *POLICY, cwd=tmp_path, env=sandbox)
    assert "no decision waits to be applied" in nothing.stdout
    bad = cli(
        "review",
        "apply",
        *POLICY,
        "--as-of",
        "2021-10-21T10:00",
        cwd=tmp_path,
        env=sandbox,
        expect=1,
    )
    assert "give a time zone" in bad.stdout + bad.stderr

    labels = tmp_path / "decided.jsonl"
    cli("review", "labels", *POLICY, "--out", str(labels), cwd=tmp_path, env=sandbox)
    labelled = [json.loads(line) for line in labels.read_text().splitlines()]
    assert {r["label"] for r in labelled} <= {"prohibited", "allowed"} and len(labelled) >= 1
    listed = cli("audit", "list", "--stack", "local", "--json", cwd=tmp_path, env=sandbox)
    assert any(str(r.get("run_id", "")).startswith("review-") for r in json.loads(listed.stdout))
