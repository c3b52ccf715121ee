"""The DynamoDB catalogue against moto's server on loopback."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import boto3
import pytest

from catalogue_purge.enforce.catalogue import (
    Changed,
    DynamoCatalogue,
    Enforcement,
    LiveListing,
    Status,
    put_listings,
)
from catalogue_purge.job.stack import create_listings_table

V = "2021-10-01T00:00:00.000000Z"


def enforcement(run_id: str = "run-1") -> Enforcement:
    return Enforcement(
        run_id,
        "crypto-mining-2021",
        "abc",
        ("asic-miner-brands",),
        datetime(2021, 10, 8, tzinfo=UTC),
        "DELISTED",
    )


@pytest.fixture
def catalogue(aws):
    client = boto3.client("dynamodb")
    table = f"listings-{uuid.uuid4().hex[:8]}"
    create_listings_table(client, table)
    put_listings(
        client,
        table,
        [
            LiveListing(
                "L-1",
                "S-1",
                Status.ACTIVE,
                "Home Appliances > Heaters",
                "Antminer S19",
                None,
                "US",
                V,
            ),
            LiveListing(
                "L-2",
                "S-1",
                Status.INACTIVE,
                "Home Appliances > Heaters",
                "Antminer S9",
                "old",
                "US",
                V,
            ),
            LiveListing(
                "L-3",
                "S-2",
                Status.ACTIVE,
                "Home Appliances > Heaters",
                "S19 heater",
                None,
                "US",
                "2021-10-07T00:00:00.000000Z",
            ),
        ],
    )
    return DynamoCatalogue(table, client)


def test_conditional_delist_and_enforcement_fields(catalogue):
    catalogue.delist("L-1", V, enforcement())
    item = catalogue.get("L-1")
    assert item.status is Status.DELISTED
    assert item.delisted_by_run == "run-1"
    assert item.delisted_as == "DELISTED"
    raw = catalogue.client.get_item(TableName=catalogue.table, Key={"listing_id": {"S": "L-1"}})[
        "Item"
    ]
    assert raw["enforcement_policy_id"] == {"S": "crypto-mining-2021"}
    assert raw["enforcement_rule_ids"] == {"L": [{"S": "asic-miner-brands"}]}


def test_inactive_changed_and_missing_listings_are_not_written(catalogue):
    with pytest.raises(Changed) as inactive:
        catalogue.delist("L-2", V, enforcement())
    assert inactive.value.current.status is Status.INACTIVE
    with pytest.raises(Changed) as changed:
        catalogue.delist("L-3", V, enforcement())
    assert changed.value.current.updated_at == "2021-10-07T00:00:00.000000Z"
    assert catalogue.get("L-3").status is Status.ACTIVE
    with pytest.raises(Changed) as missing:
        catalogue.delist("L-404", V, enforcement())
    assert missing.value.current is None
    assert catalogue.get("L-404") is None


def test_reinstate_only_what_the_run_delisted(catalogue):
    catalogue.delist("L-1", V, enforcement("run-1"))
    with pytest.raises(Changed):
        catalogue.reinstate("L-1", "run-2", "appeal upheld")
    catalogue.reinstate("L-1", "run-1", "appeal upheld")
    assert catalogue.get("L-1").status is Status.ACTIVE
    assert catalogue.get("L-1").delisted_by_run is None


def test_a_listing_with_a_huge_description_is_loaded_within_dynamodbs_limit(aws):
    from catalogue_purge.enforce.catalogue import DESCRIPTION_BYTES, merge_listings

    client = boto3.client("dynamodb")
    table = f"listings-{uuid.uuid4().hex[:6]}"
    create_listings_table(client, table)
    huge = "Antminer S19 " + "é" * 1_000_000  # about 2 MB of UTF-8
    listing = LiveListing("L-1", "S-1", Status.ACTIVE, "C > D", "t", huge, "US", V)
    put_listings(client, table, [listing])
    stored = DynamoCatalogue(table, client).get("L-1")
    assert stored is not None and stored.description is not None
    assert len(stored.description.encode()) <= DESCRIPTION_BYTES
    assert huge.startswith(stored.description) and stored.description.startswith("Antminer S19")
    assert merge_listings(client, table, [replace(listing, listing_id="L-2")]) == 1
