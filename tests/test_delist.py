from __future__ import annotations

import zlib
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from catalogue_purge.detect.matcher import Matcher
from catalogue_purge.detect.sweep import FINDINGS_SCHEMA, live_recheck
from catalogue_purge.enforce.catalogue import InMemoryCatalogue, LiveListing, Status, Transient
from catalogue_purge.enforce.delist import (
    OUTCOME_SCHEMA,
    Outcome,
    Retry,
    apply_plan,
    outcomes_by_listing,
    plan_delistings,
)
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PlanMismatch

SNAPSHOT_VERSION = datetime(2021, 10, 1, tzinfo=UTC)
V = "2021-10-01T00:00:00.000000Z"
LATER = "2021-10-07T10:00:00.000000Z"
HEATER = "Home Appliances > Heaters"


class Killed(BaseException):
    """The process dying half way: not an error a run records, it just stops."""


def finding(listing_id: str, decision: str = "delist", seller: str = "S-1") -> dict:
    return {
        "listing_id": listing_id,
        "seller_id": seller,
        "country_of_sale": "US",
        "category_path": HEATER,
        "decision": decision,
        "rule_ids": ["asic-miner-brands"],
        "matched_terms": ["antminer"],
        "evasion": True,
        "title": "Antminer S19 heater",
        "updated_at": SNAPSHOT_VERSION,
        "prohibited_category": None,
        "evidence": [],
        "exemption_ids": [],
    }


def live(
    listing_id: str,
    title: str = "Antminer S19 heater",
    status: Status = Status.ACTIVE,
    updated_at: str = V,
    category: str = HEATER,
) -> LiveListing:
    return LiveListing(listing_id, "S-1", status, category, title, None, "US", updated_at)


@pytest.fixture
def recheck(policy):
    return live_recheck(policy, Matcher(policy))


def plan_of(findings: list[dict], run_id: str = "run-1"):
    return plan_delistings(
        pa.Table.from_pylist(findings, schema=FINDINGS_SCHEMA), run_id, "crypto-mining-2021", "abc"
    )


def store(tmp_path, run_id: str = "run-1") -> RunStore:
    return RunStore(str(tmp_path / "runs" / run_id), OUTCOME_SCHEMA)


def test_every_delist_finding_ends_in_exactly_one_outcome(tmp_path, recheck):
    catalogue = InMemoryCatalogue(
        {
            "L-1": live("L-1"),
            "L-2": live("L-2", status=Status.INACTIVE),
            "L-4": live("L-4", title="Antminer S19j Pro heater, new photos", updated_at=LATER),
            "L-5": live("L-5", title="Oil filled radiator heater 2000W", updated_at=LATER),
            "L-6": live("L-6"),
        }
    )
    findings = [
        finding("L-1"),
        finding("L-2"),
        finding("L-3"),
        finding("L-4"),
        finding("L-5"),
        finding("L-6", decision="review"),
    ]
    plan = plan_of(findings)
    report = apply_plan(plan, catalogue, store(tmp_path), recheck, sleep=lambda _: None)
    assert outcomes_by_listing(store(tmp_path).read_outcomes()) == {
        "L-1": Outcome.DELISTED,
        "L-2": Outcome.ALREADY_INACTIVE,
        "L-3": Outcome.NOT_FOUND,
        "L-4": Outcome.CHANGED_SINCE_SNAPSHOT_DELISTED,
        "L-5": Outcome.CHANGED_SINCE_SNAPSHOT_CLEARED,
    }
    assert report.balanced and report.planned == 5
    assert catalogue.get("L-6").status is Status.ACTIVE  # review findings are never delisted
    assert catalogue.get("L-5").status is Status.ACTIVE  # cleaned up by the seller
    assert catalogue.get("L-4").status is Status.DELISTED
    assert catalogue.get("L-1").delisted_by_run == "run-1"


def test_a_run_killed_half_way_resumes_to_the_same_outcomes(tmp_path, recheck):
    listings = {f"L-{i:03d}": live(f"L-{i:03d}") for i in range(60)}
    listings["L-007"] = live("L-007", title="Oil radiator", updated_at=LATER)  # cleaned up
    listings["L-013"] = live("L-013", title="Antminer S9 again", updated_at=LATER)
    findings = [finding(k) for k in listings] + [finding("L-999")]

    reference = InMemoryCatalogue(dict(listings))
    apply_plan(plan_of(findings), reference, store(tmp_path / "ref"), recheck, chunk=10)
    expected = outcomes_by_listing(store(tmp_path / "ref").read_outcomes())

    def kill_after_25(write: int, _listing: str) -> None:
        if write > 25:
            raise Killed

    catalogue = InMemoryCatalogue(dict(listings), fault=kill_after_25)
    with pytest.raises(Killed):
        apply_plan(plan_of(findings), catalogue, store(tmp_path), recheck, chunk=10, concurrency=4)
    partial = store(tmp_path).read_outcomes().num_rows
    assert 0 < partial < len(findings)

    catalogue.fault = None
    report = apply_plan(
        plan_of(findings), catalogue, store(tmp_path), recheck, chunk=10, concurrency=4
    )
    assert outcomes_by_listing(store(tmp_path).read_outcomes()) == expected
    assert report.balanced
    assert store(tmp_path).read_outcomes().num_rows == len(findings)
    assert max(catalogue.delist_calls.values()) == 1  # nothing delisted twice


def test_throttling_is_retried_until_every_outcome_is_right(tmp_path, recheck):
    listings = {f"L-{i:03d}": live(f"L-{i:03d}") for i in range(80)}

    def throttle_a_third(write: int, listing: str) -> None:
        if (zlib.crc32(f"{listing}:{write}".encode()) % 3) == 0:
            raise Transient("ProvisionedThroughputExceededException")

    catalogue = InMemoryCatalogue(dict(listings), fault=throttle_a_third)
    slept: list[float] = []
    report = apply_plan(
        plan_of([finding(k) for k in listings]),
        catalogue,
        store(tmp_path),
        recheck,
        retry=Retry(attempts=10),
        sleep=slept.append,
    )
    assert report.outcomes == {Outcome.DELISTED: 80}
    assert slept  # it did back off
    assert all(c.status is Status.DELISTED for c in catalogue.listings.values())


def test_throttled_past_the_limit_is_failed_not_lost(tmp_path, recheck):
    def always(_write: int, _listing: str) -> None:
        raise Transient("ThrottlingException")

    catalogue = InMemoryCatalogue({"L-1": live("L-1")}, fault=always)
    report = apply_plan(
        plan_of([finding("L-1")]),
        catalogue,
        store(tmp_path),
        recheck,
        retry=Retry(attempts=3),
        sleep=lambda _: None,
    )
    assert report.outcomes == {Outcome.FAILED: 1}
    assert "gave up after 3 attempts" in report.failed[0]["error"]


def test_dry_run_writes_nothing_and_predicts(tmp_path, recheck):
    catalogue = InMemoryCatalogue({"L-1": live("L-1"), "L-2": live("L-2", status=Status.DELISTED)})
    plan = plan_of([finding("L-1"), finding("L-2")])
    report = apply_plan(plan, catalogue, store(tmp_path), recheck, dry_run=True)
    assert report.outcomes == {Outcome.DELISTED: 1, Outcome.ALREADY_INACTIVE: 1}
    assert catalogue.writes == 0
    assert store(tmp_path).read_outcomes().num_rows == 0  # the real run's records are untouched
    assert apply_plan(plan, catalogue, store(tmp_path), recheck).outcomes[Outcome.DELISTED] == 1


def test_a_run_refuses_a_different_plan_and_an_unapproved_one(tmp_path, recheck):
    catalogue = InMemoryCatalogue({"L-1": live("L-1"), "L-2": live("L-2")})
    apply_plan(plan_of([finding("L-1")]), catalogue, store(tmp_path), recheck)
    with pytest.raises(PlanMismatch, match="already recorded plan"):
        apply_plan(plan_of([finding("L-1"), finding("L-2")]), catalogue, store(tmp_path), recheck)
    other = plan_of([finding("L-2")], run_id="run-2")
    with pytest.raises(PlanMismatch, match="not the approved plan"):
        apply_plan(other, catalogue, store(tmp_path, "run-2"), recheck, approve="0" * 64)
    assert catalogue.get("L-2").status is Status.ACTIVE
    assert apply_plan(
        other, catalogue, store(tmp_path, "run-2"), recheck, approve=other.sha256
    ).balanced


def test_safety_limits_hold_an_unapproved_run(tmp_path, recheck):
    from catalogue_purge.detect.policy import SafetyLimits
    from catalogue_purge.errors import SafetyLimitExceeded

    listings = {f"L-{i}": live(f"L-{i}") for i in range(5)}
    catalogue = InMemoryCatalogue(dict(listings))
    plan = plan_of([finding(k) for k in listings])
    limits = SafetyLimits(max_listings=3, max_share=0.5, max_per_seller=4)
    with pytest.raises(SafetyLimitExceeded) as held:
        apply_plan(plan, catalogue, store(tmp_path), recheck, limits=limits, swept=8)
    message = str(held.value)
    assert "max_listings: 5 to delist, limit 3 (over by 2)" in message
    assert "max_share: 62.50% of 8 swept listings" in message
    assert "the most S-1 with 5" in message
    assert plan.sha256 in message
    assert catalogue.writes == 0
    report = apply_plan(
        plan, catalogue, store(tmp_path), recheck, limits=limits, swept=8, approve=plan.sha256
    )
    assert report.outcomes == {Outcome.DELISTED: 5}


def test_recheck_honours_exemptions_in_force(tmp_path):
    from catalogue_purge.detect.policy import exemptions_path, load_policy

    from .conftest import SHIPPED_POLICY

    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(SHIPPED_POLICY.read_text(encoding="utf-8"), encoding="utf-8")
    exemptions_path(policy_path).write_text(
        "policy: crypto-mining-2021\nexemptions:\n"
        "  - {id: EX-9, listing_id: L-1, rules: ['*'], reason: museum piece, granted_by: c,"
        " granted_at: 2021-10-01, expires: 2021-12-31}\n",
        encoding="utf-8",
    )
    policy = load_policy(policy_path)
    changed = live("L-1", title="Antminer S19j Pro heater, new photos", updated_at=LATER)
    inside = live_recheck(policy, Matcher(policy), on=datetime(2021, 11, 1).date())
    after = live_recheck(policy, Matcher(policy), on=datetime(2022, 1, 1).date())
    assert inside(changed)[0] is False
    assert after(changed) == (
        True,
        ("asic-miner-brands", "asic-model-numbers", "distinctive-miner-models"),
    )
