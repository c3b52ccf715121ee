"""Manifests written, then verified offline as an auditor would: round trip and tampering."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pyarrow as pa
import pytest

from catalogue_purge.cli import parse_as_of
from catalogue_purge.detect.matcher import Matcher
from catalogue_purge.detect.snapshot import open_snapshot
from catalogue_purge.detect.sweep import live_recheck, sweep
from catalogue_purge.enforce.catalogue import InMemoryCatalogue, LiveListing, Status
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA, apply_plan, plan_delistings
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.record.audit import verify_runs
from catalogue_purge.record.manifest import (
    KmsSigner,
    ManifestExists,
    build_tables,
    csv_bytes,
    write_manifest,
)

from .conftest import LIVE_VERSION, listing, write_listings

ROWS = [
    listing("L-1", "Antminer S19 Pro 110TH/s", "Home Appliances > Heaters", country_of_sale="CN"),
    listing(
        "L-2", '=HYPERLINK("http://x","Whatsminer M30S")', "Computer & Office > Blockchain Miners"
    ),
    listing("L-3", "8 GPU open air frame", "Computer & Office > Computer Components > PC Cases"),
    listing("L-4", "Blue vase"),
]


@pytest.fixture
def signer(aws):
    kms = boto3.client("kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    return KmsSigner(kms, key)


def make_tables(policy, tmp_path: Path, rows=ROWS) -> tuple[dict, dict]:
    snapshot = open_snapshot(str(write_listings(tmp_path / "snap.parquet", rows)))
    as_of = parse_as_of("2021-10-08", policy)
    result = sweep(snapshot, policy, as_of)
    catalogue = InMemoryCatalogue(
        {
            r["listing_id"]: LiveListing(
                r["listing_id"],
                r["seller_id"],
                Status.ACTIVE,
                r["category_path"],
                r["title"],
                None,
                r["country_of_sale"],
                LIVE_VERSION,
            )
            for r in rows
        }
    )
    plan = plan_delistings(result.findings, "run", policy.id, policy.sha256)
    store = RunStore(str(tmp_path / "runstore"), OUTCOME_SCHEMA)
    apply_plan(plan, catalogue, store, live_recheck(policy, Matcher(policy)))
    tables = build_tables(result.findings, store.read_outcomes(), policy, as_of)
    run = {
        "kind": "purge",
        "as_of": as_of.isoformat(),
        "policy": {"id": policy.id, "version": policy.version, "sha256": policy.sha256},
        "snapshot": result.snapshot,
        "started_at": "2021-10-08T00:00:00+08:00",
        "ended_at": "2021-10-08T00:05:00+08:00",
    }
    return tables, run


def write_run(root: Path, run_id: str, tables: dict, run: dict, signer) -> Path:
    write_manifest(str(root), run | {"run_id": run_id}, tables, signer, part_rows=2)
    return root / "runs" / run["policy"]["id"] / run_id


def problems(folders: list[Path]) -> list[str]:
    return [p for v in verify_runs(folders) for p in v.problems]


def test_round_trip_statements_of_reasons_and_openssl(policy, tmp_path, signer):
    tables, run = make_tables(policy, tmp_path)
    folder = write_run(tmp_path / "manifests", "run-1", tables, run, signer)
    assert problems([folder]) == []

    delisted = tables["delisted"].to_pylist()
    assert {r["listing_id"] for r in delisted} == {"L-1", "L-2"}
    heater = next(r for r in delisted if r["listing_id"] == "L-1")
    assert heater["outcome"] == "DELISTED" and heater["evasion"] is True
    assert heater["automated_decision"] is True and heater["country_of_sale"] == "CN"
    assert "1.2(a) Mining hardware" in heater["clauses"]
    assert "title" in heater["matched_fields"]
    review = tables["review"].to_pylist()
    assert [r["listing_id"] for r in review] == ["L-3"]
    assert review[0]["automated_decision"] is False

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["by_decision"] == {"delist": 2, "review": 1}
    assert manifest["policy"]["sha256"] == policy.sha256
    assert [p["key"] for p in manifest["parts"]][:2] == [
        "delisted-00000.parquet",
        "delisted-00000.csv",
    ]

    if shutil.which("openssl"):
        checked = subprocess.run(
            [
                "openssl",
                "dgst",
                "-sha256",
                "-verify",
                "public-key.pem",
                "-signature",
                "digest.sig",
                "digest.json",
            ],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.stdout.strip() == "Verified OK"


def test_csv_cells_never_start_a_formula(policy, tmp_path):
    tables, _ = make_tables(policy, tmp_path)
    data = csv_bytes(tables["delisted"])
    assert data.startswith(b"\xef\xbb\xbf")  # a spreadsheet then reads it as UTF-8
    assert "'=HYPERLINK" in data.decode("utf-8-sig")
    cells = ["+1", "-2", "@x", "ok", " =1+1", "\n=1+1", "\uff1d1+1", "\u3000@x", "\t1", "a=b"]
    rows = list(csv.reader(io.StringIO(csv_bytes(pa.table({"t": cells})).decode("utf-8-sig"))))
    assert [r[0] for r in rows[1:]] == [
        "'+1",
        "'-2",
        "'@x",
        "ok",
        "' =1+1",
        "'\n=1+1",
        "'\uff1d1+1",
        "'\u3000@x",
        "'\t1",
        "a=b",
    ]


def test_tampering_is_caught_and_named(policy, tmp_path, signer):
    tables, run = make_tables(policy, tmp_path)
    folder = write_run(tmp_path / "m", "run-1", tables, run, signer)

    part = folder / "delisted-00000.csv"
    data = bytearray(part.read_bytes())
    data[-3] ^= 1
    part.write_bytes(bytes(data))
    assert any("delisted-00000.csv SHA-256 does not match" in p for p in problems([folder]))

    part.unlink()
    assert any("part delisted-00000.csv is missing" in p for p in problems([folder]))

    folder = write_run(tmp_path / "m2", "run-1", tables, run, signer)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["counts"]["by_decision"]["delist"] = 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert any("manifest.json does not match the signed digest" in p for p in problems([folder]))

    folder = write_run(tmp_path / "m3", "run-1", tables, run, signer)
    other = KmsSigner(
        signer.client,
        signer.client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"][
            "KeyId"
        ],
    )
    (folder / "digest.sig").write_bytes(other.sign((folder / "digest.json").read_bytes()))
    assert any("digest.sig does not verify digest.json" in p for p in problems([folder]))


def test_the_chain_shows_a_removed_or_altered_earlier_run(policy, tmp_path, signer):
    tables, run = make_tables(policy, tmp_path)
    root = tmp_path / "m"
    folders = [write_run(root, f"run-{i}", tables, run, signer) for i in (1, 2, 3)]
    assert [json.loads((f / "digest.json").read_text())["sequence"] for f in folders] == [1, 2, 3]
    assert problems(folders) == []
    assert any(
        "run(s) 2..2 are missing from the chain" in p for p in problems([folders[0], folders[2]])
    )

    earlier = json.loads((folders[0] / "digest.json").read_text())
    earlier["signed_at"] = "2021-10-09T00:00:00+00:00"
    (folders[0] / "digest.json").write_text(json.dumps(earlier, indent=2, sort_keys=True) + "\n")
    found = problems(folders)
    assert any("run-1: digest.sig does not verify" in p for p in found)
    assert any("run-2: previous_digest_sha256 does not match run-1" in p for p in found)


def test_a_run_with_no_findings_writes_a_complete_manifest_once(policy, tmp_path, signer):
    tables, run = make_tables(policy, tmp_path, rows=[listing("L-9", "Blue vase")])
    assert tables["delisted"].num_rows == 0 and tables["review"].num_rows == 0
    folder = write_run(tmp_path / "m", "run-1", tables, run, signer)
    assert problems([folder]) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {p["key"] for p in manifest["parts"]} == {
        "exempted-00000.parquet",
        "exempted-00000.csv",
        "delisted-00000.parquet",
        "delisted-00000.csv",
        "review-00000.parquet",
        "review-00000.csv",
        "shadow-00000.parquet",
        "shadow-00000.csv",
        "report.html",
    }
    with pytest.raises(ManifestExists):
        write_run(tmp_path / "m", "run-1", tables, run, signer)


def test_cli_audit_verify(policy, tmp_path, signer, capsys):
    from catalogue_purge.cli import main

    tables, run = make_tables(policy, tmp_path)
    folders = [write_run(tmp_path / "m", f"run-{i}", tables, run, signer) for i in (1, 2)]
    policy_folder = folders[0].parent
    assert (
        main(["audit", "verify", str(policy_folder), "--key", str(folders[0] / "public-key.pem")])
        == 0
    )
    assert capsys.readouterr().out.count("verified") == 2
    shutil.rmtree(folders[0])
    assert main(["audit", "verify", str(policy_folder)]) == 8
    assert "missing from the chain" in capsys.readouterr().out


def test_manifests_on_s3_listed_downloaded_and_verified(policy, tmp_path, signer, capsys):
    import uuid

    from catalogue_purge.cli import main
    from catalogue_purge.record.audit import DownloadMismatch, download_run, list_runs

    s3 = boto3.client("s3")
    bucket = f"manifests-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    tables, run = make_tables(policy, tmp_path)
    for i in (1, 2):
        write_manifest(f"s3://{bucket}", run | {"run_id": f"run-{i}"}, tables, signer)
    runs = list_runs(f"s3://{bucket}", policy.id)
    assert [(r["run_id"], r["sequence"]) for r in runs] == [("run-1", 1), ("run-2", 2)]

    assert (
        main(
            ["audit", "download", "run-2", "--root", f"s3://{bucket}", "--to", str(tmp_path / "dl")]
        )
        == 8
    )
    assert "NOT verified: the signing key is not pinned" in capsys.readouterr().out
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(signer.public_key_pem())
    download = ["audit", "download", "run-2", "--root", f"s3://{bucket}", "--to"]
    assert main([*download, str(tmp_path / "dl"), "--key", str(trusted)]) == 0
    assert "verified" in capsys.readouterr().out

    key = f"runs/{policy.id}/run-1/delisted-00000.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=b"listing_id\r\nL-forged\r\n")
    with pytest.raises(DownloadMismatch, match=r"delisted-00000\.csv"):
        download_run(runs[0]["location"], tmp_path / "dl2")


def test_html_report_is_escaped_and_linked(policy, tmp_path, signer):
    tables, run = make_tables(policy, tmp_path)
    folder = write_run(tmp_path / "m", "run-1", tables, run, signer)
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "<h1>Enforcement run run-1</h1>" in html
    assert "asic-miner-brands" in html and "Home Appliances &gt; Heaters" in html
    assert "href='delisted-00000.csv'" in html
    assert "<script" not in html.lower()
    (folder / "report.html").write_text(html.replace("run-1", "run-X"), encoding="utf-8")
    assert any("report.html SHA-256 does not match" in p for p in problems([folder]))


def test_manifests_bucket_keeps_what_was_written(policy, tmp_path, signer):
    import uuid

    from botocore.exceptions import ClientError

    from catalogue_purge.job.stack import create_manifests_bucket

    s3 = boto3.client("s3")
    bucket = f"manifests-{uuid.uuid4().hex[:8]}"
    data_key = signer.client.create_key()["KeyMetadata"]["KeyId"]
    create_manifests_bucket(s3, bucket, data_key, retention_days=3650, tls_only=False)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("COMPLIANCE", 3650)

    tables, run = make_tables(policy, tmp_path)
    write_manifest(f"s3://{bucket}", run | {"run_id": "run-1"}, tables, signer)
    key = f"runs/{policy.id}/run-1/manifest.json"
    version = s3.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.head_object(Bucket=bucket, Key=key)["VersionId"] == version


def test_tls_only_policy_denies_plain_http():
    from catalogue_purge.job.stack import tls_only_policy

    statement = tls_only_policy("b")["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]


def test_tables_stream_in_parts_of_bounded_size(policy, tmp_path, signer):
    from catalogue_purge.record.manifest import stream_tables

    rows = [
        listing(f"L-{i}", f"Antminer S19 unit {i}", "Home Appliances > Heaters") for i in range(5)
    ]
    _, run = make_tables(policy, tmp_path, rows=rows)  # sweeps and delists into tmp_path
    snapshot = open_snapshot(str(tmp_path / "snap.parquet"))
    result = sweep(snapshot, policy, parse_as_of("2021-10-08", policy))
    outcomes = RunStore(str(tmp_path / "runstore"), OUTCOME_SCHEMA).read_outcomes()
    streamed = stream_tables(
        result.findings, outcomes, policy, parse_as_of("2021-10-08", policy), part_rows=2
    )
    sizes = [part.num_rows for part in streamed["delisted"]]
    assert sizes == [2, 2, 1]
    assert [part.num_rows for part in streamed["review"]] == [0]
    exact = stream_tables(
        result.findings, outcomes, policy, parse_as_of("2021-10-08", policy), part_rows=5
    )
    assert [part.num_rows for part in exact["delisted"]] == [5]  # no empty part after it
    streamed = stream_tables(
        result.findings, outcomes, policy, parse_as_of("2021-10-08", policy), part_rows=2
    )
    folder = write_run(tmp_path / "m", "run-1", streamed, run, signer)
    assert problems([folder]) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [p["rows"] for p in manifest["parts"] if p["table"] == "delisted"] == [2, 2, 2, 2, 1, 1]


def test_counts_are_checked_against_the_tables_themselves(policy, tmp_path, signer):
    from catalogue_purge.record.audit import _verify_counts

    tables, run = make_tables(policy, tmp_path)
    folder = write_run(tmp_path / "m", "run-1", tables, run, signer)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert _verify_counts(folder, manifest) == []
    manifest["counts"]["by_decision"]["review"] += 1
    manifest["counts"]["by_outcome"] = {"DELISTED": 99}
    found = _verify_counts(folder, manifest)
    assert any("counts by decision" in p for p in found)
    assert any("counts by outcome" in p for p in found)


def test_exempted_listings_are_listed_with_their_grounds_and_counted(tmp_path, signer):
    import pyarrow.parquet as pq

    from catalogue_purge.detect.policy import load_policy

    from .conftest import SHIPPED_POLICY

    policy_path = tmp_path / "policies" / SHIPPED_POLICY.name
    policy_path.parent.mkdir()
    policy_path.write_text(SHIPPED_POLICY.read_text(encoding="utf-8"), encoding="utf-8")
    policy_path.with_name("crypto-mining-2021.exemptions.yaml").write_text(
        "policy: crypto-mining-2021\nexemptions:\n"
        "  - {id: EX-7, listing_id: L-1, rules: ['*'], reason: museum piece, granted_by: c-17,"
        " granted_at: 2021-10-01, expires: 2021-12-31}\n",
        encoding="utf-8",
    )
    policy = load_policy(policy_path)
    tables, run = make_tables(policy, tmp_path)
    (exempted,) = tables["exempted"].to_pylist()
    assert (exempted["listing_id"], exempted["exemption_id"]) == ("L-1", "EX-7")
    assert (exempted["exemption_reason"], exempted["exemption_granted_by"]) == (
        "museum piece",
        "c-17",
    )
    assert str(exempted["exemption_expires"]) == "2021-12-31"
    folder = write_run(tmp_path / "m", "run-1", tables, run, signer)
    assert problems([folder]) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["exempted"] == 1
    assert "<b>1</b>exempted" in (folder / "report.html").read_text(encoding="utf-8")
    assert pq.read_table(folder / "exempted-00000.parquet").num_rows == 1


def test_rules_in_shadow_have_their_own_table_and_counts(tmp_path, signer):
    """A rule tried in shadow: the manifest lists what it matched and what it would have made
    of each listing, counts it, and the report says so; the counts are verified."""
    from catalogue_purge.detect.policy import load_policy
    from catalogue_purge.record.audit import _verify_counts

    from .conftest import SHIPPED_POLICY

    trial = (
        "  - id: trial-hash-box\n    description: a rule being tried\n"
        '    clause: "1.2(a) Mining hardware"\n    weight: 10\n    mode: shadow\n'
        "    terms:\n      en: [hash box]\n\n"
    )
    text = SHIPPED_POLICY.read_text(encoding="utf-8")
    marker = "  # ---------------------------------------------------------------- counter-evidence"
    assert marker in text
    path = tmp_path / "policies" / SHIPPED_POLICY.name
    path.parent.mkdir()
    path.write_text(text.replace(marker, trial + marker), encoding="utf-8")
    policy = load_policy(path)
    rows = [
        *ROWS,
        listing("L-5", "Silent hash box for the office", "Computer & Office > Servers"),
        listing("L-6", "Antminer S9 in a hash box", "Computer & Office > Servers"),
    ]
    tables, run = make_tables(policy, tmp_path, rows=rows)
    shadow = {r["listing_id"]: r for r in tables["shadow"].to_pylist()}
    assert sorted(shadow) == ["L-5", "L-6"]
    assert (shadow["L-5"]["decision"], shadow["L-5"]["shadow_decision"]) == ("none", "delist")
    assert shadow["L-5"]["changed"] is True and shadow["L-5"]["shadow_terms"] == ["hash box"]
    assert (shadow["L-6"]["decision"], shadow["L-6"]["changed"]) == ("delist", False)
    assert all(r["shadow_rule_ids"] == ["trial-hash-box"] for r in shadow.values())
    assert "L-5" not in {r["listing_id"] for r in tables["delisted"].to_pylist()}

    folder = write_run(tmp_path / "m", "run-1", tables, run, signer)
    assert problems([folder]) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["shadow"] == {
        "rows": 2,
        "by_rule": {"trial-hash-box": 2},
        "by_change": {"none->delist": 1},
    }
    report = (folder / "report.html").read_text(encoding="utf-8")
    assert "Rules in shadow" in report and "none-&gt;delist" in report
    manifest["counts"]["shadow"]["by_change"] = {}
    assert any("rules in shadow" in p for p in _verify_counts(folder, manifest))
    del manifest["counts"]["shadow"]
    assert any("rules in shadow" in p for p in _verify_counts(folder, manifest))


def test_a_manifest_file_on_s3_is_never_replaced(policy, tmp_path, signer):
    """A second writer of the same run (a redelivered FinalizeRun that lost the race) meets
    the file the first wrote: refused by S3's conditional write, not overwritten."""
    import uuid

    s3 = boto3.client("s3")
    bucket = f"manifests-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    tables, run = make_tables(policy, tmp_path)
    key = f"runs/{policy.id}/run-1/delisted-00000.parquet"
    s3.put_object(Bucket=bucket, Key=key, Body=b"first writer")
    with pytest.raises(ManifestExists, match=r"delisted-00000\.parquet is already written"):
        write_manifest(f"s3://{bucket}", run | {"run_id": "run-1"}, tables, signer)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"first writer"


def test_the_report_keeps_delist_and_review_apart_and_says_penalties_in_words():
    from collections import Counter

    from catalogue_purge.record.report import RunSummary, render_report

    summary = RunSummary()
    summary.add(
        "delisted",
        pa.table(
            {
                "outcome": ["DELISTED"] * 20,
                "rule_ids": [[f"rule-{i}"] for i in range(20)],
                "category_path": ["A"] * 20,
                "country_of_sale": ["CN"] * 20,
                "seller_id": ["S-1"] * 20,
                "evasion": [True] + [False] * 19,
            }
        ),
    )
    summary.add(
        "review",
        pa.table(
            {
                "rule_ids": [["rule-0"]] * 3,
                "category_path": ["A"] * 3,
                "country_of_sale": ["DE"] * 3,
                "seller_id": ["S-2"] * 3,
                "evasion": [True] * 3,
            }
        ),
    )
    summary.penalties = Counter({"applied:store-blocked": 2, "proposed:account-closed": 1})
    summary.rows["penalties"] = 3
    run = {"run_id": "r", "policy": {"id": "p", "version": "1", "sha256": "0" * 64}}
    html = render_report(run, summary, []).decode()
    assert summary.evasions == 1  # review items are not judged evasions
    assert "<b>1</b>evasions" in html
    # rule-0: 1 delisted, 3 for review, in their own columns
    assert "<td>rule-0</td><td class='n'>1</td><td class='n'>3</td>" in html
    assert "<td>DE</td><td class='n'>0</td><td class='n'>3</td>" in html
    # 20 rules: 15 shown, the rest behind a <details>
    assert "<details><summary>and 5 more</summary>" in html
    assert "store blocked (applied)" in html and "account closed (proposed)" in html


def test_the_quarantined_counts_are_checked_against_its_table(policy, tmp_path, signer):
    from catalogue_purge.detect.sweep import DUPLICATE_ID, quarantine_rows
    from catalogue_purge.record.audit import _verify_counts

    tables, run = make_tables(policy, tmp_path)
    aside = pa.table({"listing_id": ["L-7", "L-7"], "seller_id": ["S-1", "S-2"]})
    tables["quarantined"] = quarantine_rows(aside, DUPLICATE_ID)
    run["quarantined"] = {"by_reason": {DUPLICATE_ID: 2}, "duplicate_ids": ["L-7"]}
    folder = write_run(tmp_path / "m", "run-1", tables, run, signer)
    assert problems([folder]) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["quarantined"] == {DUPLICATE_ID: 2}
    manifest["quarantined"]["by_reason"] = {DUPLICATE_ID: 1}  # the record says fewer
    (found,) = _verify_counts(folder, manifest)
    assert "rows set aside counted" in found and "holds {'duplicate listing_id': 2}" in found
