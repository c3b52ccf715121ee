"""FinalizeRun and ManifestAccess, replayed from events/ against moto's server."""

from __future__ import annotations

import hashlib
import json
import urllib.request
import uuid

import boto3

from catalogue_purge.detect.matcher import Matcher
from catalogue_purge.detect.policy import load_policy
from catalogue_purge.detect.sweep import live_recheck, read_sweep
from catalogue_purge.enforce.catalogue import DynamoCatalogue
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA, apply_plan, plan_delistings
from catalogue_purge.enforce.runstore import RunStore

from .conftest import ROOT, SHIPPED_POLICY, listing, sweep_with_cli
from .test_function_delist import FakeContext, load_function


def event(name: str) -> dict:
    return json.loads((ROOT / "events" / f"{name}.json").read_text())


def test_finalize_then_an_auditor_lists_and_downloads(live_table, tmp_path, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    rows = [
        listing("L-1", "Antminer S19 Pro 110TH/s", "Home Appliances > Heaters"),
        listing(
            "L-2", "8 GPU open air frame", "Computer & Office > Computer Components > PC Cases"
        ),
        listing("L-3", "Blue vase"),
    ]
    sweep_with_cli(tmp_path, rows)
    suffix = uuid.uuid4().hex[:8]
    s3, kms = boto3.client("s3"), boto3.client("kms")
    runs_bucket, manifests_bucket = f"runs-{suffix}", f"manifests-{suffix}"
    for bucket in (runs_bucket, manifests_bucket):
        s3.create_bucket(Bucket=bucket)
    for name in ("findings.parquet", "sweep.json"):
        s3.upload_file(str(tmp_path / "sweep" / name), runs_bucket, f"sweeps/run-1/{name}")
    client, table = live_table(rows)
    policy = load_policy(SHIPPED_POLICY)
    findings, _ = read_sweep(f"s3://{runs_bucket}/sweeps/run-1")
    plan = plan_delistings(findings, "run-1", policy.id, policy.sha256)
    apply_plan(
        plan,
        DynamoCatalogue(table, client),
        RunStore(f"s3://{runs_bucket}/runs/run-1", OUTCOME_SCHEMA),
        live_recheck(policy, Matcher(policy)),
    )

    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("MANIFESTS_BUCKET", manifests_bucket)
    monkeypatch.setenv("SIGNING_KEY_ID", key_id)
    monkeypatch.setenv("AUDITOR_ROLE_NAME", "catalogue-purge-auditor")
    finalized = load_function("finalize_run").handler(
        event("finalize-run")
        | {
            "run_id": "run-1",
            "sweep_uri": f"s3://{runs_bucket}/sweeps/run-1",
            "runs_uri": f"s3://{runs_bucket}/runs",
        },
        FakeContext(function_name="FinalizeRun"),
    )
    assert finalized["counts"]["by_decision"] == {"delist": 1, "review": 1}

    access = load_function("manifest_access")
    request = event("manifest-access")
    listed = access.handler(request | {"queryStringParameters": None}, FakeContext())
    assert [r["run_id"] for r in json.loads(listed["body"])["runs"]] == ["run-1"]

    answer = access.handler(request | {"queryStringParameters": {"run_id": "run-1"}}, FakeContext())
    links = {link["name"]: link["url"] for link in json.loads(answer["body"])["links"]}
    assert {"manifest.json", "digest.json", "digest.sig", "public-key.pem", "report.html"} <= set(
        links
    )
    assert all("Expires=" in url or "X-Amz-Expires=900" in url for url in links.values())
    manifest = json.loads(urllib.request.urlopen(links["manifest.json"]).read())
    part = manifest["parts"][0]
    body = urllib.request.urlopen(links[part["key"]]).read()
    assert hashlib.sha256(body).hexdigest() == part["sha256"]

    stranger = request | {
        "requestContext": {
            "authorizer": {
                "iam": {
                    "userArn": "arn:aws:sts::123456789012:assumed-role/catalogue-purge-delist/x"
                }
            }
        }
    }
    assert access.handler(stranger, FakeContext())["statusCode"] == 403
