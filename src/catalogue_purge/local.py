"""The whole job on one machine: moto's server on loopback stands in for AWS.

Runs the same steps as the deployed job, through the same code and boto3 endpoints: the
snapshot goes to a bucket, the live catalogue to a DynamoDB table, then sweep, delist (within
the policy's safety limits), finalize (a signed, chained manifest), and the manifest is
downloaded and verified like an auditor would.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow.dataset as ds

from catalogue_purge import aws
from catalogue_purge.audit import download_run, list_runs, verify_runs
from catalogue_purge.catalogue import (
    DynamoCatalogue,
    LiveListing,
    Status,
    create_listings_table,
    format_version,
    put_listings,
)
from catalogue_purge.delist import OUTCOME_SCHEMA, Report, apply_plan, plan_delistings
from catalogue_purge.manifest import KmsSigner, create_manifests_bucket, finalize_run
from catalogue_purge.matcher import Matcher
from catalogue_purge.policy import Policy
from catalogue_purge.runstore import RunStore
from catalogue_purge.snapshot import open_snapshot
from catalogue_purge.sweep import SweepResult, live_recheck, sweep, write_findings

Say = Callable[[str], None]


@dataclass(frozen=True)
class LocalRun:
    run_id: str
    sweep: SweepResult
    delisting: Report
    manifest_folder: Path
    verified: bool


def start_moto() -> tuple[object, str]:
    """moto's server on 127.0.0.1 (a free port), with the environment boto3 and pyarrow read."""
    # Imported here: moto is a development dependency, never part of a deployed package.
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )
    return server, endpoint


def _live_listings(snapshot_path: str, listing_ids: set[str]) -> list[LiveListing]:
    table = ds.dataset(snapshot_path, format="parquet").to_table(
        filter=ds.field("listing_id").isin(sorted(listing_ids))
    )
    return [
        LiveListing(
            r["listing_id"],
            r["seller_id"],
            Status(r["status"]),
            r["category_path"],
            r["title"],
            r["description"],
            r["country_of_sale"],
            format_version(r["updated_at"]),
        )
        for r in table.to_pylist()
    ]


def run_local(
    policy: Policy, snapshot_path: str, as_of: datetime, work: Path, say: Say = print
) -> LocalRun:
    """Create the resources, run the job, verify the manifest. `work` receives the findings and
    the downloaded manifest."""
    run_id = f"local-{as_of:%Y%m%d}-{uuid.uuid4().hex[:6]}"
    s3, dynamodb, kms = aws.client("s3"), aws.client("dynamodb"), aws.client("kms")
    suffix = run_id.rsplit("-", 1)[-1]  # several local runs can share one moto server
    data_bucket = f"catalogue-purge-data-{suffix}"
    manifests_bucket = f"catalogue-purge-manifests-{suffix}"
    table = f"listings-{suffix}"
    s3.create_bucket(Bucket=data_bucket)
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    data_key = kms.create_key()["KeyMetadata"]["KeyId"]
    # moto's server is plain HTTP: the bucket's TLS-only policy would refuse every request.
    create_manifests_bucket(s3, manifests_bucket, data_key, retention_days=3650, tls_only=False)
    create_listings_table(dynamodb, table)

    local = open_snapshot(snapshot_path)
    for file in local.files:
        s3.upload_file(file.path, data_bucket, f"snapshots/{run_id}/{Path(file.path).name}")
    say(f"snapshot: {local.rows:,} listings in {len(local.files)} file(s) -> s3://{data_bucket}")

    snapshot = open_snapshot(f"s3://{data_bucket}/snapshots/{run_id}/")
    swept = sweep(snapshot, policy, as_of)
    write_findings(swept, work / "sweep")
    for name in ("findings.parquet", "sweep.json"):
        s3.upload_file(str(work / "sweep" / name), data_bucket, f"sweeps/{run_id}/{name}")
    summary = swept.summary
    say(
        f"sweep: {summary['findings']:,} findings ({summary['by_decision']}), "
        f"{summary['evasions']:,} evasions, {swept.seconds:.1f}s"
    )

    # The live catalogue: the listings the run can touch (those the sweep caught), as they
    # stand in the snapshot; loading all of them into moto would take minutes.
    caught = set(swept.findings.column("listing_id").to_pylist())
    put_listings(dynamodb, table, _live_listings(snapshot_path, caught))
    plan = plan_delistings(swept.findings, run_id, policy.id, policy.sha256)
    report = apply_plan(
        plan,
        DynamoCatalogue(table, dynamodb),
        RunStore(f"s3://{data_bucket}/runs/{run_id}", OUTCOME_SCHEMA),
        live_recheck(policy, Matcher(policy)),
        limits=policy.document.safety_limits,
        swept=summary["rows_scanned"],
    )
    say(
        f"delist: {report.outcomes} ({'balanced' if report.balanced else 'NOT balanced'}), "
        f"{report.seconds:.1f}s"
    )

    finalize_run(
        f"s3://{data_bucket}/sweeps/{run_id}",
        runs_uri=f"s3://{data_bucket}/runs",
        run_id=run_id,
        manifests_root=f"s3://{manifests_bucket}",
        signer=KmsSigner(kms, key_id),
        policies_dir=Path(policy.path).parent,
    )
    listed = [r for r in list_runs(f"s3://{manifests_bucket}", policy.id) if r["run_id"] == run_id]
    folder = download_run(listed[0]["location"], work / "manifests")
    verification = verify_runs([folder], from_first=False)[0]
    for problem in verification.problems:
        say(f"  - {problem}")
    return LocalRun(run_id, swept, report, folder, verification.ok)
