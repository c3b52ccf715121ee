"""Seller notices: one per seller, retried when the bus refuses, never sent twice."""

from __future__ import annotations

import json

import pytest

from catalogue_purge.enforce.notices import NOTICE_SCHEMA, build_notices, publish
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PurgeError

RUN = {
    "run_id": "resweep-1",
    "policy": {"id": "crypto-mining-2021", "version": "1"},
    "as_of": "2021-10-16T00:00:00+08:00",
}


def delisted(listing: str, seller: str, outcome: str = "DELISTED") -> dict:
    return {
        "listing_id": listing,
        "seller_id": seller,
        "title": f"miner {listing}",
        "rule_ids": ["asic-miner-brands"],
        "clauses": ["1.2 ASIC miners"],
        "matched_terms": ["antminer"],
        "evasion": False,
        "relist": False,
        "automated_decision": True,
        "outcome": outcome,
    }


class FlakyBus:
    """Refuses the entries of chosen sellers on their first `refusals` attempts."""

    def __init__(self, refuse: dict[str, int]):
        self.refuse = dict(refuse)
        self.delivered: list[dict] = []

    def put_events(self, Entries):
        answer = []
        for entry in Entries:
            detail = json.loads(entry["Detail"])
            seller = detail["seller_id"]
            if self.refuse.get(seller, 0) > 0:
                self.refuse[seller] -= 1
                answer.append({"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"})
            else:
                self.delivered.append(detail)
                answer.append({"EventId": f"event-{len(self.delivered)}"})
        return {"Entries": answer, "FailedEntryCount": sum("ErrorCode" in a for a in answer)}


def notices():
    rows = [delisted(f"L-{i}", f"S-{i % 12}") for i in range(30)] + [
        delisted("L-99", "S-99", outcome="NOT_FOUND")
    ]
    penalties = [
        {
            "seller_id": "S-1",
            "step_before": None,
            "step_after": "warning",
            "status": "applied",
            "proposed": None,
            "reason": "offence 1",
            "offences": 1,
        }
    ]
    return build_notices(RUN, rows, penalties, "s3://manifests/runs/crypto-mining-2021/resweep-1")


def test_one_notice_per_seller_with_its_reasons():
    built = notices()
    assert sorted(built) == sorted(f"S-{i}" for i in range(12))  # not S-99: nothing delisted
    assert built["S-1"]["penalty"]["step_after"] == "warning"
    assert built["S-1"]["notice_id"] == "resweep-1:S-1"
    assert {d["listing_id"] for d in built["S-0"]["delistings"]} == {"L-0", "L-12", "L-24"}
    assert built["S-0"]["delistings"][0]["clauses"] == ["1.2 ASIC miners"]


def test_refused_notices_are_retried_and_none_is_sent_twice(tmp_path):
    store = RunStore(str(tmp_path / "notices"), NOTICE_SCHEMA)
    bus = FlakyBus({"S-3": 2, "S-7": 1})
    sent, before = publish(notices(), bus, "bus", store, sleep=lambda s: None, group=5)
    assert (sent, before) == (12, 0)
    assert len(list((tmp_path / "notices" / "outcomes").iterdir())) == 3  # a record per group
    assert sorted(d["seller_id"] for d in bus.delivered) == sorted(f"S-{i}" for i in range(12))

    # The bus keeps refusing one seller: the step fails, the others stay recorded as sent.
    store = RunStore(str(tmp_path / "again"), NOTICE_SCHEMA)
    stubborn = FlakyBus({"S-5": 99})
    with pytest.raises(PurgeError, match="S-5"):
        publish(notices(), stubborn, "bus", store, attempts=3, sleep=lambda s: None)
    assert len(stubborn.delivered) == 11
    # Tried again once the bus takes it: only the missing notice goes out.
    stubborn.refuse["S-5"] = 0
    sent, before = publish(notices(), stubborn, "bus", store, sleep=lambda s: None)
    assert (sent, before) == (1, 11)
    assert len(stubborn.delivered) == 12
    assert len({d["seller_id"] for d in stubborn.delivered}) == 12
