"""The queue in a spreadsheet (export, import) and as labelled listings for `policy evaluate`."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from catalogue_purge.detect.evaluation import load_labelled
from catalogue_purge.review.exchange import ImportError_, export_claimed, import_decisions
from catalogue_purge.review.queue import State

from .test_review_queue import candidate

# An exemption runs from the day it is granted: its expiry lies ahead.
NEXT_YEAR = f"{datetime.now(UTC).year + 1}-06-30"


def rows_of(path) -> list[dict]:
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # a byte-order mark: spreadsheets read UTF-8
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def write(path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_spreadsheet_round_trip_decides_and_labels(queue, tmp_path):
    q = queue()
    q.enqueue(
        [candidate("L-1"), candidate("L-2", title="=cmd|' /C calc'!A0 майнинг"), candidate("L-3")],
        "run-1",
    )
    sheet = tmp_path / "review.csv"
    assert export_claimed(q, sheet, reviewer="rv-anna", count=3) == 3
    rows = rows_of(sheet)
    assert [r["listing_id"] for r in rows] == ["L-1", "L-2", "L-3"]
    assert rows[1]["title"].startswith("'=")  # no cell starts a formula
    rows[0] |= {"decision": "delist", "reason": "a rig part", "rules": "used-mining-gpus"}
    rows[1] |= {"decision": "keep", "reason": "a book", "exemption_expires": NEXT_YEAR}
    write(sheet, rows)  # L-3 left undecided: given back
    done = import_decisions(sheet, q, reviewer="rv-anna")
    assert done.decided == {"delist": 1, "keep": 1} and done.released == 1
    assert q.get("L-1").final["source"] == "spreadsheet"
    assert q.get("L-3").state is State.WAITING

    labels = tmp_path / "labels.jsonl"
    from catalogue_purge.review.exchange import write_labels

    assert write_labels(q, labels) == 2
    labelled = {r["listing_id"]: r for r in load_labelled(labels)}
    assert labelled["L-1"]["label"] == "prohibited" and labelled["L-2"]["label"] == "allowed"
    assert json.loads(labels.read_text().splitlines()[0])["decided_by"] == "rv-anna"


def test_a_bad_spreadsheet_is_refused_whole_naming_each_row(queue, tmp_path):
    q = queue()
    q.enqueue([candidate("L-1"), candidate("L-2"), candidate("L-3")], "run-1")
    sheet = tmp_path / "review.csv"
    export_claimed(q, sheet, reviewer="rv-anna", count=3)
    rows = rows_of(sheet)
    rows[0] |= {"decision": "delist", "reason": "rig"}  # no rules
    rows[1] |= {"decision": "ban", "reason": "x"}
    rows[2] |= {"decision": "keep", "reason": "", "version": "two"}
    write(sheet, rows)
    with pytest.raises(ImportError_) as refused:
        import_decisions(sheet, q, reviewer="rv-anna")
    message = str(refused.value)
    assert "row 2 (L-1): a delisting cites its rules" in message
    assert "row 3 (L-2): decision 'ban' is not one of" in message
    assert "row 4 (L-3): version 'two' is not a number" in message
    assert "row 4 (L-3): a keep decision needs its reason" in message
    assert all(i.state is State.CLAIMED for i in q.waiting())  # nothing was decided

    (tmp_path / "other.csv").write_text("id,verdict\n1,ok\n", encoding="utf-8")
    with pytest.raises(ImportError_, match="no column listing_id, version, decision"):
        import_decisions(tmp_path / "other.csv", q, reviewer="rv-anna")


def test_keep_decisions_with_an_expiry_become_exemptions_of_the_policy(queue, tmp_path):
    from catalogue_purge.detect.policy import load_policy
    from catalogue_purge.review.exchange import write_exemptions

    q = queue()
    q.enqueue([candidate("L-1"), candidate("L-2")], "run-1")
    for item in q.claim("rv-anna", count=2):
        q.decide(
            item.listing_id,
            reviewer="rv-anna",
            version=item.version,
            decision="keep",
            reason="a graphics card sold alone",
            exemption_expires=NEXT_YEAR if item.listing_id == "L-1" else None,
        )
    current = tmp_path / "crypto-mining-2021.exemptions.yaml"
    current.write_text(
        "policy: crypto-mining-2021\nexemptions:\n"
        "  - {id: EX-1, seller_id: S-9, rules: ['*'], reason: museum, granted_by: compliance,"
        " granted_at: 2021-10-01, expires: 2021-12-31}\n",
        encoding="utf-8",
    )
    out = tmp_path / "proposed.yaml"
    assert write_exemptions(q, current, out) == (1, 1)
    policy = load_policy(q.policy.path, exemptions=out)
    by_id = {e.id: e for e in policy.exemptions}
    assert set(by_id) == {"EX-1", "review-L-1"}
    granted = by_id["review-L-1"]
    assert (granted.listing_id, granted.rules, granted.granted_by) == (
        "L-1",
        ["used-mining-gpus"],
        "rv-anna",
    )
    assert str(granted.expires) == NEXT_YEAR
    assert write_exemptions(q, out, tmp_path / "again.yaml") == (0, 2)  # nothing added twice
