"""The review queue on moto's server: queueing, claims, decisions and the lanes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from catalogue_purge.detect.policy import load_policy
from catalogue_purge.review.queue import (
    Candidate,
    Conflict,
    Lane,
    Order,
    QueueError,
    State,
    reviewer_id,
)

from .conftest import SHIPPED_POLICY

POLICY = load_policy(SHIPPED_POLICY)

# An exemption runs from the day it is granted: its expiry lies ahead.
NEXT_YEAR = f"{datetime.now(UTC).year + 1}-06-30"


def candidate(listing: str, version: str = "2021-10-01T00:00:00.000000Z", **extra) -> Candidate:
    values = {
        "listing_id": listing,
        "seller_id": "S-1",
        "country_of_sale": "DE",
        "category_path": "Computer & Office > Graphics Cards",
        "title": f"RTX 3080 ex-mining {listing}",
        "updated_at": version,
        "rule_ids": ("used-mining-gpus",),
        "clauses": ("2.3 used mining hardware",),
        "matched_terms": ("ex-mining",),
        "evidence": ({"rule_id": "used-mining-gpus", "term": "ex-mining", "field": "title"},),
        "evasion": False,
        "score": 5.0,
    }
    return Candidate(**(values | extra))


def test_a_run_queues_each_listing_once_and_rechecks_a_changed_one(queue):
    q = queue()
    first = q.enqueue([candidate("L-1"), candidate("L-2")], "run-1")
    assert (first.queued, first.already) == (2, 0)
    again = q.enqueue([candidate("L-1"), candidate("L-2")], "run-2")  # a re-sweep
    assert (again.queued, again.already, again.rechecked) == (0, 2, 0)
    assert [i.listing_id for i in q.lane(Lane.FIRST)] == ["L-1", "L-2"]

    [claimed] = q.claim("rv-anna")
    q.decide("L-1", reviewer="rv-anna", version=claimed.version, decision="keep", reason="a GPU")
    changed = q.enqueue(
        [candidate("L-1", "2021-10-20T00:00:00.000000Z", title="RTX 3080 mining rig part")],
        "run-3",
    )
    assert changed.rechecked == 1
    item = q.get("L-1")
    assert item is not None
    assert (item.state, item.lane, item.title) == (
        State.WAITING,
        Lane.FIRST,
        "RTX 3080 mining rig part",
    )
    assert item.decisions == [] and item.history[0]["decisions"][0]["decision"] == "keep"


def test_a_listing_that_left_the_catalogue_leaves_the_queue(queue):
    q = queue()
    q.enqueue([candidate("L-1"), candidate("L-2"), candidate("L-3")], "run-1")
    done = q.enqueue([], "run-2", gone={"L-1": "not in the catalogue"}, cleared=["L-2"])
    assert done.left == {"GONE": 1, "CLEARED": 1}
    assert [i.listing_id for i in q.waiting()] == ["L-3"]
    gone = q.get("L-1")
    assert gone is not None and gone.state is State.GONE and gone.outcome == "not in the catalogue"


def test_two_reviewers_claiming_at_once_never_share_an_item(queue):
    q = queue()
    q.enqueue([candidate(f"L-{n:02d}") for n in range(12)], "run-1")
    got: dict[str, list[str]] = {}
    start = threading.Barrier(3)

    def take(reviewer: str) -> None:
        start.wait()
        got[reviewer] = [i.listing_id for i in q.claim(reviewer, count=4)]

    threads = [threading.Thread(target=take, args=(f"rv-{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [listing for items in got.values() for listing in items]
    assert len(claimed) == 12 and len(set(claimed)) == 12
    assert q.claim("rv-late") == []


def test_a_reload_shows_the_same_claim_and_an_expired_claim_returns(queue):
    q = queue()
    q.enqueue([candidate("L-1"), candidate("L-2")], "run-1")
    [first] = q.claim("rv-anna")
    [again] = q.claim("rv-anna")
    assert again.listing_id == first.listing_id == "L-1"
    [other] = q.claim("rv-ben")
    assert other.listing_id == "L-2"
    # The claim's time runs out: it returns to the queue, and the next claim takes it over.
    item = q.get("L-1")
    assert item is not None
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    q._update(item, {"claim_expires": past})
    [taken] = q.claim("rv-carl")
    assert taken.listing_id == "L-1" and taken.claimed_by == "rv-carl"
    with pytest.raises(Conflict, match="at version 4 in the queue, not 2"):
        q.decide("L-1", reviewer="rv-anna", version=first.version, decision="keep", reason="x")


def test_priority_order_puts_a_prohibited_category_and_a_high_score_first(queue):
    q = queue()
    q.enqueue(
        [
            candidate("L-1", score=5.0),
            candidate("L-2", score=9.0),
            candidate("L-3", rule_ids=("category:Computer & Office > Blockchain Miners",)),
            candidate("L-4", score=5.0, past_offences=2),
        ],
        "run-1",
    )
    assert [i.listing_id for i in q.lane(Lane.FIRST, Order.PRIORITY)] == [
        "L-3",
        "L-4",
        "L-2",
        "L-1",
    ]
    assert [i.listing_id for i in q.claim("rv-anna", count=2, order=Order.PRIORITY)] == [
        "L-3",
        "L-4",
    ]


def test_every_decision_needs_its_reason_and_a_delisting_its_rules(queue):
    q = queue()
    q.enqueue([candidate("L-1")], "run-1")
    [item] = q.claim("rv-anna")
    decide = {"reviewer": "rv-anna", "version": item.version}
    with pytest.raises(QueueError, match="needs its reason"):
        q.decide("L-1", decision="keep", reason="  ", **decide)
    with pytest.raises(QueueError, match="cites the rules"):
        q.decide("L-1", decision="delist", reason="a rig", **decide)
    with pytest.raises(QueueError, match="not a rule"):
        q.decide("L-1", decision="delist", reason="a rig", rules=["made-up"], **decide)
    with pytest.raises(QueueError, match="not one of"):
        q.decide("L-1", decision="ban", reason="a rig", **decide)
    with pytest.raises(QueueError, match="only a keep"):
        q.decide(
            "L-1",
            decision="delist",
            reason="r",
            rules=["used-mining-gpus"],
            exemption_expires="2022-01-01",
            **decide,
        )
    with pytest.raises(QueueError, match="in the past"):
        q.decide("L-1", decision="keep", reason="r", exemption_expires="2021-12-31", **decide)
    with pytest.raises(QueueError, match="pseudonymous"):
        q.decide("L-1", decision="keep", reason="r", reviewer="anna@example.com", version=1)
    done = q.decide("L-1", decision="delist", reason="a rig", rules=["used-mining-gpus"], **decide)
    assert (done.state, done.lane) == (State.DECIDED, Lane.DECIDED)
    assert done.final is not None and done.final["clauses"]  # the clause of the rule cited


def test_skip_is_recorded_and_the_item_goes_to_someone_else(queue):
    q = queue()
    q.enqueue([candidate("L-1")], "run-1")
    [item] = q.claim("rv-anna")
    skipped = q.decide(
        "L-1", reviewer="rv-anna", version=item.version, decision="skip", reason="unsure"
    )
    assert skipped.state is State.WAITING and skipped.decisions[0]["decision"] == "skip"
    assert q.claim("rv-anna") == []
    assert [i.listing_id for i in q.claim("rv-ben")] == ["L-1"]


def test_escalation_goes_to_the_second_tier_alone(queue):
    q = queue()
    q.enqueue([candidate("L-1")], "run-1")
    [item] = q.claim("rv-anna")
    up = q.decide("L-1", reviewer="rv-anna", version=item.version, decision="escalate", reason="?")
    assert up.lane is Lane.ESCALATED
    assert q.claim("rv-ben", tier=1) == []
    [taken] = q.claim("rv-lead", tier=2)
    with pytest.raises(QueueError, match="does not escalate"):
        q.decide(
            "L-1",
            reviewer="rv-lead",
            tier=2,
            version=taken.version,
            decision="escalate",
            reason="?",
        )
    done = q.decide(
        "L-1",
        reviewer="rv-lead",
        tier=2,
        version=taken.version,
        decision="keep",
        reason="a GPU",
        exemption_expires=NEXT_YEAR,
    )
    assert done.state is State.DECIDED and done.final is not None and done.final["escalated"]


def test_a_sampled_second_review_agrees_or_goes_to_the_second_tier(queue):
    q = queue(share=1.0)  # every decision is checked
    q.enqueue([candidate("L-1"), candidate("L-2")], "run-1")
    for listing in ("L-1", "L-2"):
        [item] = q.claim("rv-anna")
        moved = q.decide(
            listing, reviewer="rv-anna", version=item.version, decision="keep", reason="GPU"
        )
        assert moved.lane is Lane.SECOND
    assert q.claim("rv-anna") == []  # never the second review of one's own decision
    [one] = q.claim("rv-ben")
    agreed = q.decide(
        one.listing_id, reviewer="rv-ben", version=one.version, decision="keep", reason="ok"
    )
    assert agreed.state is State.DECIDED and agreed.final is not None
    assert agreed.final["second_review"] and agreed.final["first_reviewer"] == "rv-anna"
    [two] = q.claim("rv-ben")
    disputed = q.decide(
        two.listing_id,
        reviewer="rv-ben",
        version=two.version,
        decision="delist",
        reason="a rig",
        rules=["used-mining-gpus"],
    )
    assert disputed.lane is Lane.ESCALATED and disputed.disputed


def test_reviewer_ids_are_pseudonyms():
    assert reviewer_id("rv-1a2b3c") == "rv-1a2b3c"
    for bad in ("Anna Smith", "anna@example.com", "x"):
        with pytest.raises(QueueError):
            reviewer_id(bad)
