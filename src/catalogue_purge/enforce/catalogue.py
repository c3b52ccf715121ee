"""The live catalogue: the listings' current status, behind a small interface.

The platform's catalogue service is the source of truth for a listing's status; the sweep only
saw a snapshot hours old. Every delisting is therefore conditional: it changes a listing only
if it is still ACTIVE and unchanged since the version the decision was made on.

`DynamoCatalogue` is the implementation over a DynamoDB table keyed by listing_id;
`InMemoryCatalogue` is a fake with state, for tests, that can throttle or crash.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from catalogue_purge.errors import PurgeError


class Status(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    DELISTED = "DELISTED"


@dataclass(frozen=True)
class LiveListing:
    listing_id: str
    seller_id: str
    status: Status
    category_path: str
    title: str
    description: str | None
    country_of_sale: str
    updated_at: str  # ISO-8601 UTC, as the catalogue stores it: compared for equality only
    delisted_by_run: str | None = None
    delisted_as: str | None = None  # the outcome the delisting run recorded for it

    @classmethod
    def from_row(cls, row: dict, updated_at: str | None = None) -> LiveListing:
        """A snapshot row (the Snapshot contract) as the live catalogue holds it."""
        return cls(
            row["listing_id"],
            row["seller_id"],
            Status(row["status"]),
            row["category_path"],
            row["title"],
            row["description"],
            row["country_of_sale"],
            # the platform's record always has a version; a snapshot row may lack it
            updated_at or format_version(row["updated_at"] or datetime(1970, 1, 1, tzinfo=UTC)),
        )


@dataclass(frozen=True)
class Enforcement:
    """What a delisting writes beside the status: who, under which policy, why, when."""

    run_id: str
    policy_id: str
    policy_sha256: str
    rule_ids: tuple[str, ...]
    at: datetime
    outcome: str  # written with the status, so a resumed run knows what its own write was


class Changed(Exception):
    """The conditional write found the listing not as expected; `current` is what it is now."""

    def __init__(self, current: LiveListing | None) -> None:
        super().__init__("listing changed since the expected version")
        self.current = current


class Transient(Exception):
    """Throttling or a transient service error: the same call may succeed later."""


class Catalogue(Protocol):
    def get(self, listing_id: str) -> LiveListing | None: ...

    def delist(self, listing_id: str, expected_updated_at: str, enforcement: Enforcement) -> None:
        """Delist if ACTIVE and updated_at == expected; else raise Changed."""

    def reinstate(self, listing_id: str, run_id: str, reason: str) -> None: ...


def format_version(moment: datetime) -> str:
    """A listing version as the catalogue stores it: UTC, microseconds, 'Z'."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return format_version(datetime.now(UTC))


# DynamoDB ------------------------------------------------------------------------------------

_THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


def _from_item(item: dict[str, Any]) -> LiveListing:
    def text(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else value.get("S")

    return LiveListing(
        listing_id=text("listing_id") or "",
        seller_id=text("seller_id") or "",
        status=Status(text("status") or Status.INACTIVE),
        category_path=text("category_path") or "",
        title=text("title") or "",
        description=text("description"),
        country_of_sale=text("country_of_sale") or "",
        updated_at=text("updated_at") or "",
        delisted_by_run=text("enforcement_run_id"),
        delisted_as=text("enforcement_outcome"),
    )


@dataclass
class DynamoCatalogue:
    """The listings table: key listing_id; status, category_path, title, description,
    seller_id, country_of_sale, updated_at; and the enforcement fields a delisting writes."""

    table: str
    client: Any  # a boto3 DynamoDB client (botocore's own retries are on top of ours)

    def check(self) -> None:
        """Refuse a table that is not there, before anything is planned: every write would
        fail, and the run would record every listing FAILED."""
        try:
            self.client.describe_table(TableName=self.table)
        except self.client.exceptions.ResourceNotFoundException:
            raise PurgeError(
                f"listings table {self.table!r} does not exist in "
                f"{self.client.meta.region_name} ({self.client.meta.endpoint_url}): check --table "
                "and the AWS region and endpoint; nothing was planned or delisted"
            ) from None

    def get(self, listing_id: str) -> LiveListing | None:
        try:
            response = self.client.get_item(
                TableName=self.table, Key={"listing_id": {"S": listing_id}}, ConsistentRead=True
            )
        except self.client.exceptions.ClientError as exc:
            raise _translate(exc) from exc
        item = response.get("Item")
        return None if item is None else _from_item(item)

    def delist(self, listing_id: str, expected_updated_at: str, enforcement: Enforcement) -> None:
        self._update(
            listing_id,
            update=(
                "SET #status = :delisted, updated_at = :now, enforcement_run_id = :run, "
                "enforcement_policy_id = :policy, enforcement_policy_sha256 = :sha, "
                "enforcement_rule_ids = :rules, enforcement_at = :at, "
                "enforcement_outcome = :outcome"
            ),
            condition="#status = :active AND updated_at = :expected",
            values={
                ":expected": {"S": expected_updated_at},
                ":run": {"S": enforcement.run_id},
                ":policy": {"S": enforcement.policy_id},
                ":sha": {"S": enforcement.policy_sha256},
                ":rules": {"L": [{"S": r} for r in enforcement.rule_ids]},
                ":at": {"S": format_version(enforcement.at)},
                ":outcome": {"S": enforcement.outcome},
            },
        )

    def reinstate(self, listing_id: str, run_id: str, reason: str) -> None:
        self._update(
            listing_id,
            update=(
                "SET #status = :active, updated_at = :now, reinstated_reason = :reason "
                "REMOVE enforcement_run_id, enforcement_outcome"
            ),
            condition="#status = :delisted AND enforcement_run_id = :run",
            values={":run": {"S": run_id}, ":reason": {"S": reason}},
        )

    def _update(self, listing_id: str, update: str, condition: str, values: dict) -> None:
        """A conditional UpdateItem; a failed condition raises Changed with the item as it is."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"listing_id": {"S": listing_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":active": {"S": Status.ACTIVE},
                    ":delisted": {"S": Status.DELISTED},
                    ":now": {"S": _now()},
                    **values,
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            item = exc.response.get("Item")
            raise Changed(None if item is None else _from_item(item)) from None
        except self.client.exceptions.ClientError as exc:
            raise _translate(exc) from exc


def _translate(exc: Any) -> Exception:
    code = exc.response.get("Error", {}).get("Code", "")
    return Transient(code) if code in _THROTTLING else exc


# The in-memory fake --------------------------------------------------------------------------


@dataclass
class InMemoryCatalogue:
    """A catalogue with state, for tests. `fault` is called before each write with the write's
    number (1-based) and may raise (Transient to throttle, anything else to crash)."""

    listings: dict[str, LiveListing] = field(default_factory=dict)
    fault: Callable[[int, str], None] | None = None
    writes: int = 0
    delist_calls: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, listing_id: str) -> LiveListing | None:
        with self._lock:
            return self.listings.get(listing_id)

    def delist(self, listing_id: str, expected_updated_at: str, enforcement: Enforcement) -> None:
        with self._lock:
            self.writes += 1
            if self.fault is not None:
                self.fault(self.writes, listing_id)
            current = self.listings.get(listing_id)
            if (
                current is None
                or current.status is not Status.ACTIVE
                or current.updated_at != expected_updated_at
            ):
                raise Changed(current)
            self.delist_calls[listing_id] = self.delist_calls.get(listing_id, 0) + 1
            self.listings[listing_id] = replace(
                current,
                status=Status.DELISTED,
                updated_at=_now(),
                delisted_by_run=enforcement.run_id,
                delisted_as=enforcement.outcome,
            )

    def reinstate(self, listing_id: str, run_id: str, reason: str) -> None:
        with self._lock:
            current = self.listings.get(listing_id)
            if current is None or current.delisted_by_run != run_id:
                raise Changed(current)
            self.listings[listing_id] = replace(
                current,
                status=Status.ACTIVE,
                updated_at=_now(),
                delisted_by_run=None,
                delisted_as=None,
            )


# DynamoDB refuses an item over 400 KB. The listings table is the status store, not the
# catalogue's full text: a description keeps its first 300,000 bytes (the live re-check reads
# it), which leaves room for the other fields and the enforcement fields a delisting adds.
DESCRIPTION_BYTES = 300_000


def _within(text: str | None, limit: int) -> str | None:
    """The text cut to `limit` UTF-8 bytes, on a character boundary."""
    if text is None or len(text) * 4 <= limit:
        return text
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _listing_item(item: LiveListing) -> dict:
    attributes = {
        "listing_id": item.listing_id,
        "seller_id": item.seller_id,
        "status": item.status.value,
        "category_path": item.category_path,
        "title": item.title,
        "description": _within(item.description, DESCRIPTION_BYTES),
        "country_of_sale": item.country_of_sale,
        "updated_at": item.updated_at,
    }
    return {k: {"S": v} for k, v in attributes.items() if v is not None}


def put_listings(client: Any, table: str, listings: list[LiveListing]) -> None:
    """Load listings into the table (a local run's live catalogue, or a test's)."""
    for start in range(0, len(listings), 25):  # BatchWriteItem takes 25 items at a time
        requests = [
            {"PutRequest": {"Item": _listing_item(i)}} for i in listings[start : start + 25]
        ]
        pending = {table: requests}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def merge_listings(client: Any, table: str, listings: list[LiveListing]) -> int:
    """Load listings into a catalogue that lasts across runs (the local sandbox's): a listing
    not there yet is added, one there is replaced only by a newer version of it (a seller's
    edit since), so that what earlier runs did to it (delisted, reinstated) stands. The
    number written."""
    written = 0
    for item in listings:
        try:
            client.put_item(
                TableName=table,
                Item=_listing_item(item),
                ConditionExpression="attribute_not_exists(listing_id) OR updated_at < :u",
                ExpressionAttributeValues={":u": {"S": item.updated_at}},
            )
            written += 1
        except client.exceptions.ConditionalCheckFailedException:
            pass  # the catalogue holds this version or a newer one
    return written
