from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue_purge.detect.matcher import Matcher
from catalogue_purge.detect.policy import Policy, load_policy

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_POLICY = ROOT / "policies" / "crypto-mining-2021.yaml"


@pytest.fixture(scope="session", autouse=True)
def compiled_database_cache(tmp_path_factory) -> Path:
    """One cache of compiled Hyperscan databases for the whole session (the processes the
    tests start included), apart from the user's own: a policy compiles once, not per test."""
    from catalogue_purge.detect.matcher import CACHE_ENVIRONMENT

    root = tmp_path_factory.mktemp("compiled")
    previous = os.environ.get(CACHE_ENVIRONMENT)
    os.environ[CACHE_ENVIRONMENT] = str(root)
    yield root
    if previous is None:
        os.environ.pop(CACHE_ENVIRONMENT, None)
    else:
        os.environ[CACHE_ENVIRONMENT] = previous


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(SHIPPED_POLICY)


@pytest.fixture(scope="session")
def matcher(policy: Policy) -> Matcher:
    return Matcher(policy)


def listing(listing_id: str, title: str, category: str = "Home & Garden > Decor", **extra) -> dict:
    row = {
        "listing_id": listing_id,
        "seller_id": extra.pop("seller_id", "S-1"),
        "title": title,
        "description": extra.pop("description", None),
        "category_path": category,
        "category_id": extra.pop("category_id", "C-1"),
        "country_of_sale": extra.pop("country_of_sale", "US"),
        "status": extra.pop("status", "ACTIVE"),
        "price": float(extra.pop("price", 10.0)),
        "currency": extra.pop("currency", "USD"),
        "updated_at": extra.pop("updated_at", datetime(2021, 10, 1, tzinfo=UTC)),
    }
    assert not extra, extra
    return row


def write_listings(path: Path, rows: list[dict], rename: dict[str, str] | None = None) -> Path:
    table = pa.Table.from_pylist(rows)
    table = table.set_column(
        table.schema.get_field_index("updated_at"),
        "updated_at",
        table.column("updated_at").cast(pa.timestamp("us", tz="UTC")),
    )
    if rename:
        table = table.rename_columns([rename.get(n, n) for n in table.column_names])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's server on loopback: the code under test talks to it like to AWS."""
    from catalogue_purge.job.local import serve_moto

    server, endpoint = serve_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    """Environment pointing boto3 and pyarrow at moto's server, with dummy credentials."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


LIVE_VERSION = "2021-10-01T00:00:00.000000Z"


@pytest.fixture
def live_table(aws):
    """A listings table on moto's server holding the given snapshot rows, all ACTIVE at
    LIVE_VERSION (the snapshot's updated_at): returns (client, table name)."""
    import uuid

    import boto3

    from catalogue_purge.enforce.catalogue import LiveListing, Status, put_listings
    from catalogue_purge.job.stack import create_listings_table

    def make(rows: list[dict]) -> tuple[object, str]:
        client = boto3.client("dynamodb")
        table = f"listings-{uuid.uuid4().hex[:8]}"
        create_listings_table(client, table)
        put_listings(
            client,
            table,
            [LiveListing.from_row(r | {"status": Status.ACTIVE}, LIVE_VERSION) for r in rows],
        )
        return client, table

    return make


def sweep_with_cli(tmp_path: Path, rows: list[dict]) -> Path:
    """Write the rows as a snapshot and sweep it with the shipped policy through the CLI, as of
    the delisting date: the folder with findings.parquet and sweep.json."""
    from catalogue_purge.cli import main

    snapshot = write_listings(tmp_path / "snap.parquet", rows)
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "--snapshot",
        str(snapshot),
        "--policy",
        str(SHIPPED_POLICY),
        "--as-of",
        "2021-10-08",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    return out


def delist_args(findings: Path, table: str, run_id: str = "run-1") -> list[str]:
    """`catalogue-purge delist` of a sweep's findings with the shipped policy."""
    return [
        "delist",
        "--findings",
        str(findings),
        "--table",
        table,
        "--run-id",
        run_id,
        "--policy",
        str(SHIPPED_POLICY),
    ]


def cli(
    *args: str, cwd: Path, expect: int | None = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`catalogue-purge ARGS` in a subprocess, as a user runs it; never a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "catalogue_purge.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    said = done.stdout + done.stderr
    assert "Traceback" not in said, said
    if expect is not None:
        assert done.returncode == expect, said
    return done


def _policy_with_second_reviews(share: float):
    from dataclasses import replace

    from catalogue_purge.detect.policy import load_policy

    policy = load_policy(SHIPPED_POLICY)
    review = policy.document.review.model_copy(update={"second_review_share": share})
    return replace(policy, document=policy.document.model_copy(update={"review": review}))


@pytest.fixture
def queue(aws):
    """A review queue table of its own on moto's server: queue(share) with that share of
    decisions going to a second reviewer (none by default)."""
    import uuid

    import boto3

    from catalogue_purge.job.stack import Stack, create_table, load_template
    from catalogue_purge.review.queue import ReviewQueue

    def make(share: float = 0.0) -> ReviewQueue:
        client = boto3.client("dynamodb")
        name = create_table(
            client,
            Stack("t", load_template()),
            "ReviewQueueTable",
            name=f"queue-{uuid.uuid4().hex[:8]}",
        )
        return ReviewQueue(name, client, _policy_with_second_reviews(share))

    return make
