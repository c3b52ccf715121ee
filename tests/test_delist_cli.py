"""The delist command end to end: a sweep, then delisting against DynamoDB on moto's server."""

from __future__ import annotations

import json
import re

import boto3
import pyarrow.parquet as pq

from catalogue_purge.cli import main
from catalogue_purge.record.manifest import KmsSigner

from .conftest import delist_args, listing, sweep_with_cli


def test_sweep_then_delist_then_resume(live_table, tmp_path, capsys):
    rows = [
        listing("L-1", "Antminer S19 Pro 110TH/s", "Home Appliances > Heaters"),
        listing("L-2", "Whatsminer M30S++", "Computer & Office > Blockchain Miners"),
        listing(
            "L-3", "8 GPU open air frame", "Computer & Office > Computer Components > PC Cases"
        ),
        listing("L-4", "Blue vase"),
    ]
    sweep_with_cli(tmp_path, rows)

    client, table = live_table(rows)
    args = delist_args(tmp_path / "sweep", table)
    capsys.readouterr()
    # 2 of 4 swept listings is far over the policy's 2% share: held back until approved, and
    # a dry run predicts just that rather than delistings the real run would refuse.
    assert main([*args, "--dry-run"]) == 5
    held = capsys.readouterr().err
    assert "dry run: the real run would be held back" in held
    assert "max_share: 50.00% of 4 swept listings" in held

    assert main(args) == 5
    held = capsys.readouterr().err
    assert "max_share: 50.00% of 4 swept listings" in held
    plan_hash = re.search(r"--approve\s+([0-9a-f]{64})", held).group(1)
    assert (
        client.get_item(TableName=table, Key={"listing_id": {"S": "L-1"}})["Item"]["status"]["S"]
        == "ACTIVE"
    )
    # The held plan is kept for review, apart from the run's own records.
    held_plan = tmp_path / "sweep" / "runs" / "run-1" / "held"
    assert json.loads((held_plan / "why.json").read_text())["sha256"] == plan_hash
    assert pq.read_table(held_plan / "intents.parquet").column("listing_id").to_pylist() == [
        "L-1",
        "L-2",
    ]
    assert not (tmp_path / "sweep" / "runs" / "run-1" / "plan.json").exists()

    # Approved, the dry run predicts and changes nothing.
    assert main([*args, "--dry-run", "--approve", plan_hash]) == 0
    assert "dry run" in capsys.readouterr().out
    assert (
        client.get_item(TableName=table, Key={"listing_id": {"S": "L-1"}})["Item"]["status"]["S"]
        == "ACTIVE"
    )

    args += ["--approve", plan_hash]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "DELISTED" in printed and "balanced" in printed
    status = {
        k: client.get_item(TableName=table, Key={"listing_id": {"S": k}})["Item"]["status"]["S"]
        for k in ("L-1", "L-2", "L-3", "L-4")
    }
    assert status == {"L-1": "DELISTED", "L-2": "DELISTED", "L-3": "ACTIVE", "L-4": "ACTIVE"}

    assert main(args) == 0  # the same run again: nothing more to do, same outcomes
    assert "2 planned, 2 outcomes (balanced)" in capsys.readouterr().out

    # FinalizeRun: the run's manifest, signed by KMS, then verified as an auditor would.
    key_id = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")[
        "KeyMetadata"
    ]["KeyId"]
    manifests = tmp_path / "manifests"
    assert (
        main(
            [
                "finalize",
                "--findings",
                str(tmp_path / "sweep"),
                "--run-id",
                "run-1",
                "--manifests",
                str(manifests),
                "--key-id",
                key_id,
            ]
        )
        == 0
    )
    assert "counts delist 2, review 1, under" in capsys.readouterr().out
    chain = str(manifests / "runs" / "crypto-mining-2021")
    # Verification trusts only a pinned key: here the KMS key's, as the organisation publishes.
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(KmsSigner(boto3.client("kms"), key_id).public_key_pem())
    assert main(["audit", "verify", chain]) == 8
    assert "NOT verified: the signing key is not pinned" in capsys.readouterr().out
    assert main(["audit", "verify", chain, "--key", str(trusted)]) == 0
    assert "verified run-1 (sequence 1" in capsys.readouterr().out

    # --json: one document on stdout, nothing else, for scripts and pipelines.
    assert main([*args, "--json"]) == 0
    delisted = json.loads(capsys.readouterr().out)
    assert delisted["outcomes"] == {"DELISTED": 2}
    assert (delisted["planned"], delisted["balanced"], delisted["applied"]) == (2, True, 0)
    assert main(["audit", "list", "--root", str(manifests), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["run_id"], listed["sequence"]) == ("run-1", 1)
    assert main(["audit", "verify", chain, "--json", "--key", str(trusted)]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["verified"] and verified["key_pinned"]
    assert [(r["run_id"], r["ok"], r["problems"]) for r in verified["runs"]] == [
        ("run-1", True, [])
    ]
    (manifests / "runs" / "crypto-mining-2021" / "run-1" / "digest.sig").write_bytes(b"forged")
    assert main(["audit", "verify", chain, "--json", "--key", str(trusted)]) == 8
    assert json.loads(capsys.readouterr().out)["runs"][0]["ok"] is False
    manifest = json.loads(
        (manifests / "runs" / "crypto-mining-2021" / "run-1" / "manifest.json").read_text()
    )
    assert manifest["started_at"] <= manifest["ended_at"] <= manifest["finalized_at"]
    assert manifest["snapshot"]["files"][0]["rows"] == 4
