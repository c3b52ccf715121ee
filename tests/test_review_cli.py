"""The review commands as a user runs them, against the local sandbox: a purge queues its
doubtful listings, a spreadsheet decides them, the applier applies them as a review run, and
the decided items come back as labelled listings."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import boto3
import pytest

from catalogue_purge.detect.policy import load_policy
from catalogue_purge.review.queue import ReviewQueue
from catalogue_purge.synthetic import generate_snapshot

from .conftest import SHIPPED_POLICY, cli
from .test_sandbox import sandbox, season_run  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow
POLICY = ["--stack", "local", "--policy", str(SHIPPED_POLICY)]


def test_review_commands_through_a_season(tmp_path, sandbox):  # noqa: F811 - the fixture
    generate_snapshot(tmp_path / "snapshot", rows=10_000, files=1, seed=7)
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
    rows[0] |= {
        "decision": "keep",
        "reason": "a graphics card sold alone",
        "exemption_expires": f"{datetime.now(UTC).year + 1}-06-30",
    }
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
    # One decision per review run: two runs, each chained.
    first = json.loads(
        cli("review", "apply", *POLICY, "--limit", "1", "--json", cwd=tmp_path, env=sandbox).stdout
    )
    assert sum(first["outcomes"].values()) == 1
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
    runs = json.loads(listed.stdout)
    assert sum(str(r.get("run_id", "")).startswith("review-") for r in runs) == 2
    # The whole chain, the purge and the two review runs, verifies with the stack's key; and
    # a review run exports as DSA statements of reasons.
    chain = tmp_path / "chain"
    for run in runs:
        cli(
            "audit",
            "download",
            run["run_id"],
            "--stack",
            "local",
            "--to",
            str(chain),
            cwd=tmp_path,
            env=sandbox,
        )
    verified = json.loads(
        cli(
            "audit", "verify", str(chain), "--stack", "local", "--json", cwd=tmp_path, env=sandbox
        ).stdout
    )
    assert verified["verified"] and len(verified["runs"]) == len(runs) == 3
    review_run = next(r["run_id"] for r in runs if r["run_id"].startswith("review-"))
    dsa = json.loads(
        cli(
            "audit",
            "dsa",
            str(chain / review_run),
            "--policy",
            str(SHIPPED_POLICY),
            "--to",
            str(tmp_path / "dsa.jsonl"),
            "--stack",
            "local",
            "--json",
            cwd=tmp_path,
            env=sandbox,
        ).stdout
    )
    assert dsa["batches"] <= 1

    # The keep decision's exemption, as an exemptions file to review.
    proposed = tmp_path / "proposed.exemptions.yaml"
    said = cli(
        "review",
        "exemptions",
        *POLICY,
        "--out",
        str(proposed),
        cwd=tmp_path,
        env={**sandbox, "COLUMNS": "500"},
    ).stdout
    assert "1 from reviewers' keep decisions" in said
    assert f"review-{rows[0]['listing_id']}" in proposed.read_text()

    # The page: a free port, the second tier, by priority, opened in "the browser" ($BROWSER).
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "catalogue_purge.cli",
            "review",
            "serve",
            *POLICY,
            "--port",
            "0",
            "--reviewer",
            "rv-serve",
            "--tier",
            "2",
            "--order",
            "priority",
            "--open",
        ],
        cwd=tmp_path,
        env={**os.environ, **sandbox, "BROWSER": f"{browser} %s", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line.replace("\n", ""))
        assert url and "rv-serve (tier 2)" in line, line
        page = urllib.request.urlopen(url.group(0), timeout=30).read().decode()
        config = json.loads(re.search(r"const CONFIG = (.*);\n", page).group(1))
        assert (config["tier"], config["reviewer"]) == (2, "rv-serve")
        request = urllib.request.Request(
            f"{url.group(0)}api/next", headers={"X-Review-Token": config["token"]}
        )
        served = json.loads(urllib.request.urlopen(request, timeout=30).read())
        status = json.loads(
            cli("review", "status", *POLICY, "--json", cwd=tmp_path, env=sandbox).stdout
        )
        assert served["item"] is not None and status["counts"]["CLAIMED"] >= 1
        # By priority: no waiting item outranks the one served (read from the sandbox's table).
        state = json.loads((tmp_path / "sandbox" / "sandbox.json").read_text())
        client = boto3.client(
            "dynamodb",
            endpoint_url=state["endpoint"],
            region_name=state["stack"]["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        table = state["stack"]["physical"]["ReviewQueueTable"]
        others = ReviewQueue(table, client, load_policy(SHIPPED_POLICY)).waiting()
        assert served["item"]["priority"] >= max(i.priority for i in others)
        for _ in range(100):
            if opened.exists():
                break
            time.sleep(0.1)
        assert opened.read_text().strip() == url.group(0)
    finally:
        server.terminate()
        server.wait(timeout=30)
