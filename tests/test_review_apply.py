"""Applying reviewers' decisions: a review run with the automated run's guarantees and its
own signed manifest in the policy's chain (moto's server; an in-memory live catalogue)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import boto3
import pyarrow.parquet as pq
import pytest

from catalogue_purge.detect.policy import load_policy
from catalogue_purge.enforce.catalogue import InMemoryCatalogue, LiveListing, Status
from catalogue_purge.enforce.penalties import DynamoAccounts, Ledger
from catalogue_purge.job.stack import Stack, create_table, load_template
from catalogue_purge.record.audit import download_run, verify_runs
from catalogue_purge.record.manifest import KmsSigner
from catalogue_purge.review.apply import apply_decisions
from catalogue_purge.review.queue import Candidate, ReviewQueue, State

from .conftest import LIVE_VERSION, SHIPPED_POLICY

POLICY = load_policy(SHIPPED_POLICY)


class Killed(BaseException):
    """The function's process stopped mid-write (not an error the delist code records)."""


@pytest.fixture
def world(aws, tmp_path):
    """A queue, ledger and accounts tables, a manifests bucket and a signing key."""
    client = boto3.client("dynamodb")
    stack = Stack("t", load_template())
    suffix = uuid.uuid4().hex[:8]
    names = {
        logical: create_table(client, stack, logical, name=f"{logical}-{suffix}")
        for logical in ("ReviewQueueTable", "SellerLedgerTable", "SellerAccountsTable")
    }
    s3 = boto3.client("s3")
    bucket = f"data-{suffix}"
    s3.create_bucket(Bucket=bucket)
    kms = boto3.client("kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    share = POLICY.document.review.model_copy(update={"second_review_share": 0.0})
    policy = replace(POLICY, document=POLICY.document.model_copy(update={"review": share}))
    queue = ReviewQueue(names["ReviewQueueTable"], client, policy)
    listings = {
        f"L-{n}": LiveListing(
            f"L-{n}",
            f"S-{n % 2}",
            Status.ACTIVE,
            "Computer & Office > Graphics Cards",
            f"RTX 3080 ex-mining {n}",
            "used in a rig",
            "DE",
            LIVE_VERSION,
        )
        for n in range(1, 5)
    }
    catalogue = InMemoryCatalogue(dict(listings))
    queue.enqueue(
        [
            Candidate(
                listing.listing_id,
                listing.seller_id,
                listing.country_of_sale,
                listing.category_path,
                listing.title,
                LIVE_VERSION,
                ("used-mining-gpus",),
                (),
                ("ex-mining",),
                ({"rule_id": "used-mining-gpus", "term": "ex-mining", "field": "title"},),
                False,
                5.0,
            )
            for listing in listings.values()
        ],
        "purge-20211008T000000Z",
    )
    return {
        "queue": queue,
        "catalogue": catalogue,
        "ledger": Ledger(names["SellerLedgerTable"], client),
        "accounts": DynamoAccounts(names["SellerAccountsTable"], client),
        "bucket": bucket,
        "signer": KmsSigner(kms, key),
        "public_key": KmsSigner(kms, key).public_key_pem(),
        "tmp": tmp_path,
    }


def decide_all(queue: ReviewQueue, decisions: dict[str, str]) -> None:
    for item in queue.claim("rv-anna", count=len(decisions)):
        decision = decisions[item.listing_id]
        queue.decide(
            item.listing_id,
            reviewer="rv-anna",
            version=item.version,
            decision=decision,
            reason="seen the photos",
            rules=["used-mining-gpus"] if decision == "delist" else [],
            evasion=item.listing_id == "L-1",
        )


def apply(world: dict, **options) -> object:
    root = f"s3://{world['bucket']}"
    return apply_decisions(
        world["queue"],
        catalogue=world["catalogue"],
        runs_uri=f"{root}/runs",
        data_root=root,
        manifests_root=f"{root}/manifests",
        signer=world["signer"],
        ledger=world["ledger"],
        accounts=world["accounts"],
        **options,
    )


def test_decisions_are_applied_once_and_the_manifest_verifies_in_the_chain(world):
    queue, catalogue = world["queue"], world["catalogue"]
    decide_all(queue, {"L-1": "delist", "L-2": "keep", "L-3": "delist", "L-4": "delist"})
    # L-4 was edited by its seller after the decision: not delisted, back to the queue.
    catalogue.listings["L-4"] = replace(
        catalogue.listings["L-4"], updated_at="2021-10-21T00:00:00.000000Z"
    )

    dry = apply(world, dry_run=True, as_of=datetime(2021, 10, 20, tzinfo=UTC))
    assert dry.outcomes == {"CHANGED_SINCE_DECISION": 1, "DELISTED": 2, "KEPT": 1}
    assert catalogue.listings["L-1"].status is Status.ACTIVE  # nothing changed
    assert {i.state for i in queue.decided()} == {State.DECIDED}

    done = apply(world, as_of=datetime(2021, 10, 20, tzinfo=UTC))
    assert done.outcomes == {"CHANGED_SINCE_DECISION": 1, "DELISTED": 2, "KEPT": 1}
    assert done.sent_back == 1
    assert catalogue.listings["L-1"].status is Status.DELISTED
    assert catalogue.listings["L-1"].delisted_by_run == done.run_id
    assert catalogue.listings["L-2"].status is Status.ACTIVE
    assert (queue.get("L-2").state, queue.get("L-4").state) == (State.APPLIED, State.WAITING)
    # After the penalty date: the seller of L-1 and L-3 (S-1) has one offence for the run.
    assert done.penalties == {"applied": 1}
    assert world["ledger"].offence("S-1", POLICY.id, done.run_id) is not None
    assert world["ledger"].offence("S-0", POLICY.id, done.run_id) is None

    again = apply(world, as_of=datetime(2021, 10, 20, tzinfo=UTC))
    assert again.run_id is None  # nothing decided since: nothing done twice
    assert sum(catalogue.delist_calls.values()) == 2

    folder = download_run(done.manifest, world["tmp"] / "download")
    [verification] = verify_runs([folder], world["public_key"], from_first=False)
    assert verification.ok, verification.problems
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "review"
    assert manifest["counts"]["by_review_decision"] == {"delist": 3, "keep": 1}
    rows = pq.read_table(folder / "decisions-00000.parquet").to_pylist()
    first = next(r for r in rows if r["listing_id"] == "L-1")
    assert first["automated_detection"] is True and first["automated_decision"] == "partially"
    assert first["reviewer"] == "rv-anna" and first["reason"] == "seen the photos"
    assert first["evasion"] is True and first["decided_at"] <= first["acted_at"]
    report = (folder / "report.html").read_text()
    assert "Decisions per reviewer" in report and "rv-anna" in report

    # A count changed in the manifest no longer verifies.
    manifest["counts"]["by_reviewer"] = {"rv-anna": 3}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    [broken] = verify_runs([folder], world["public_key"], from_first=False)
    assert not broken.ok


def test_a_crash_mid_apply_resumes_with_nothing_done_twice(world):
    queue, catalogue = world["queue"], world["catalogue"]
    decide_all(queue, {"L-1": "delist", "L-2": "delist", "L-3": "delist", "L-4": "keep"})

    def crash(write: int, listing: str) -> None:
        if write == 2:
            raise Killed

    catalogue.fault = crash
    with pytest.raises(Killed):
        apply(world, as_of=datetime(2021, 10, 10, tzinfo=UTC))
    assert catalogue.listings["L-1"].status is Status.DELISTED  # the first write landed
    catalogue.fault = None
    done = apply(world, as_of=datetime(2021, 10, 10, tzinfo=UTC))
    # The same batch, found by its marks: L-1 is recognised as its own write, not redone.
    assert done.resumed and done.outcomes == {"DELISTED": 3, "KEPT": 1}
    assert all(n == 1 for n in catalogue.delist_calls.values())
    assert {queue.get(f"L-{n}").state for n in range(1, 5)} == {State.APPLIED}
    # Before the penalty date: no penalty.
    assert done.penalties == {}


def test_only_the_second_tier_decides_an_account_level_penalty(world):
    from catalogue_purge.review.queue import QueueError

    queue = world["queue"]
    [item] = queue.claim("rv-anna")
    with pytest.raises(QueueError, match="only the second tier"):
        queue.decide(
            item.listing_id,
            reviewer="rv-anna",
            version=item.version,
            decision="delist",
            reason="a rig",
            rules=["used-mining-gpus"],
            account_step="account-closed",
        )
    queue.decide(
        item.listing_id,
        reviewer="rv-anna",
        version=item.version,
        decision="escalate",
        reason="the seller hides miners on purpose",
    )
    [up] = queue.claim("rv-lead", tier=2)
    with pytest.raises(QueueError, match="not a step of the ladder"):
        queue.decide(
            up.listing_id,
            reviewer="rv-lead",
            tier=2,
            version=up.version,
            decision="delist",
            reason="r",
            rules=["used-mining-gpus"],
            account_step="banished",
        )
    queue.decide(
        up.listing_id,
        reviewer="rv-lead",
        tier=2,
        version=up.version,
        decision="delist",
        reason="deliberate evasion across categories",
        rules=["used-mining-gpus"],
        account_step="account-closed",
    )
    done = apply(world, as_of=datetime(2021, 10, 20, tzinfo=UTC))
    # A first offence, yet the account is closed: the second tier decided it (its approval).
    assert done.penalties == {"applied": 1}
    step, offences, _ = world["ledger"].state(up.seller_id, POLICY.id)
    ladder = [s.id for s in POLICY.document.penalties.ladder]
    assert (ladder[step], offences) == ("account-closed", 1)


class Bus:
    """An EventBridge client that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def put_events(self, Entries: list[dict]) -> dict:
        self.sent += Entries
        return {"Entries": [{"EventId": f"e-{len(self.sent)}-{n}"} for n in range(len(Entries))]}


def test_the_sellers_notices_say_a_person_decided(world):
    decide_all(world["queue"], {"L-1": "delist", "L-2": "keep", "L-3": "keep", "L-4": "delist"})
    bus = Bus()
    done = apply(world, as_of=datetime(2021, 10, 10, tzinfo=UTC), events=bus, bus="notices")
    details = [json.loads(e["Detail"]) for e in bus.sent]
    assert sorted(d["seller_id"] for d in details) == ["S-0", "S-1"]  # L-4 and L-1
    for detail in details:
        assert detail["run_id"] == done.run_id and detail["manifest"] == done.manifest
        assert [x["automated_decision"] for x in detail["delistings"]] == ["partially"]
    again = apply(world, as_of=datetime(2021, 10, 10, tzinfo=UTC), events=bus, bus="notices")
    assert again.run_id is None and len(bus.sent) == 2  # nothing sent twice
