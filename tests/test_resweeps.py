"""Re-sweeps after the penalty date, against moto's server, through the state machine: a
sequence of runs over a catalogue that changes, the seller ledger and the manifests after each,
a repeated run, and an appeal that reinstates a listing and reverses its penalty."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue_purge.detect.policy import POLICIES_ENV, load_policy
from catalogue_purge.detect.sweep import read_sweep
from catalogue_purge.enforce.catalogue import (
    DynamoCatalogue,
    LiveListing,
    put_listings,
)
from catalogue_purge.enforce.penalties import DynamoAccounts, Ledger
from catalogue_purge.job.events import StartRun
from catalogue_purge.job.local import run_job
from catalogue_purge.job.reinstate import Selection, reinstate
from catalogue_purge.job.stack import Stack, create_local, load_template
from catalogue_purge.record.audit import download_run, list_runs, verify_runs
from catalogue_purge.record.manifest import KmsSigner

from .conftest import SHIPPED_POLICY, listing, write_listings

MINERS = "Computer & Office > Blockchain Miners"
OLD = datetime(2021, 10, 1, tzinfo=UTC)
DELISTED_AT = datetime(2021, 10, 8, 1, tzinfo=UTC)


class World:
    """A stack on moto, its catalogue snapshots, and what its runs left behind."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.stack = Stack(f"resweep-{uuid.uuid4().hex[:6]}", load_template())
        self.s3, self.dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        create_local(self.stack)
        self.bucket = self.stack.physical["DataBucket"]
        # The shipped policy, but for its share limit: a catalogue of a few listings where
        # most are miners would be held back by it (tests/test_statemachine.py covers that).
        self.policies = tmp / "policies"
        self.policies.mkdir()
        text = SHIPPED_POLICY.read_text().replace("max_share: 0.02", "max_share: 1.0")
        (self.policies / SHIPPED_POLICY.name).write_text(text)
        self.policy = load_policy(self.policies / SHIPPED_POLICY.name)
        self.ledger = Ledger(self.stack.physical["SellerLedgerTable"], self.dynamodb)
        self.accounts = DynamoAccounts(self.stack.physical["SellerAccountsTable"], self.dynamodb)

    def snapshot(self, name: str, files: dict[str, list[dict]]) -> str:
        for file, rows in files.items():
            path = write_listings(self.tmp / name / f"{file}.parquet", rows)
            self.s3.upload_file(str(path), self.bucket, f"snapshots/{name}/{file}.parquet")
        return f"s3://{self.bucket}/snapshots/{name}/"

    def live(self, rows: list[dict]) -> None:
        put_listings(
            self.dynamodb,
            self.stack.physical["ListingsTable"],
            [LiveListing.from_row(r) for r in rows],
        )

    def run(self, snapshot: str, as_of: str, kind: str, run_id: str) -> dict:
        start = StartRun(
            policy_id=self.policy.id, snapshot_uri=snapshot, as_of=as_of, kind=kind, run_id=run_id
        )
        return run_job(self.stack, start, workers=1, environment={POLICIES_ENV: str(self.policies)})

    def status(self, listing_id: str) -> str:
        item = self.dynamodb.get_item(
            TableName=self.stack.physical["ListingsTable"],
            Key={"listing_id": {"S": listing_id}},
        )["Item"]
        return str(item["status"]["S"])

    def step(self, seller: str) -> str | None:
        index = self.ledger.state(seller, self.policy.id)[0]
        return self.policy.document.penalties.ladder[index].id if index >= 0 else None

    def account(self, seller: str) -> str | None:
        item = self.dynamodb.get_item(
            TableName=self.stack.physical["SellerAccountsTable"],
            Key={"seller_id": {"S": seller}},
        )["Item"]
        step = item["penalties"]["M"][self.policy.id]["M"]["step"]
        return step.get("S")

    def manifest(self, run_id: str) -> dict:
        key = f"runs/{self.policy.id}/{run_id}/manifest.json"
        body = self.s3.get_object(Bucket=self.stack.physical["ManifestsBucket"], Key=key)["Body"]
        return dict(json.loads(body.read()))

    def table(self, run_id: str, name: str, key: str) -> dict[str, dict]:
        """A table of a run's manifest, by `key` column."""
        rows: dict[str, dict] = {}
        for part in self.manifest(run_id)["parts"]:
            if part["table"] == name and part["format"] == "parquet":
                body = self.s3.get_object(
                    Bucket=self.stack.physical["ManifestsBucket"],
                    Key=f"runs/{self.policy.id}/{run_id}/{part['key']}",
                )["Body"].read()
                for row in pq.read_table(pa.BufferReader(body)).to_pylist():
                    rows[row[key]] = row
        return rows

    def penalties(self, run_id: str) -> dict[str, dict]:
        return self.table(run_id, "penalties", "seller_id")

    def reinstate(self, run: dict, selection: Selection, why: str):
        return reinstate(
            run["plan"]["run_id"],
            selection,
            why,
            policy=self.policy,
            sweep_uri=run["plan"]["sweep_uri"],
            runs_uri=run["plan"]["runs_uri"],
            data_root=f"s3://{self.bucket}",
            manifests_root=f"s3://{self.stack.physical['ManifestsBucket']}",
            catalogue=DynamoCatalogue(self.stack.physical["ListingsTable"], self.dynamodb),
            ledger=self.ledger,
            accounts=self.accounts,
            signer=KmsSigner(boto3.client("kms"), self.stack.physical["SigningKey"]),
        )


@pytest.fixture
def world(aws, tmp_path):
    return World(tmp_path)


def test_resweeps_relists_penalties_and_an_appeal(world):
    vase = listing("C1", "Blue ceramic vase", seller_id="C")
    s1 = [
        listing("A1", "Antminer S19 Pro 110TH/s", MINERS, seller_id="A"),
        listing("B1", "Whatsminer M30S++ 112TH/s", MINERS, seller_id="B"),
        listing("D1", "Antminer S19 Pro 110TH/s", "Home Appliances > Heaters", seller_id="D"),
        vase,
    ]
    world.live(s1)
    # The platform's notification service, as a queue subscribed to the notices bus.
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue = sqs.create_queue(QueueName=f"notices-{world.stack.name}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    bus = world.stack.physical["NoticesBus"]
    events.put_rule(
        Name="to-queue", EventBusName=bus, EventPattern='{"source": ["catalogue-purge"]}'
    )
    events.put_targets(
        Rule="to-queue", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn["QueueArn"]}]
    )

    # 1. The cutoff purge: delisting only, before the penalty date.
    first = world.run(
        world.snapshot("s1", {"all": s1}), "2021-10-08T00:00:00+08:00", "purge", "purge-1"
    )
    assert {world.status(i) for i in ("A1", "B1", "D1")} == {"DELISTED"}
    assert world.status("C1") == "ACTIVE"
    assert not first["penalties"]["applied"]
    assert world.manifest("purge-1")["sweep"]["kind"] == "full"
    assert world.manifest("purge-1")["penalties"]["applied"] is False
    assert world.step("A") is None

    # 2. After the penalty date: A relists its miner under a new title in another category
    # (an evasion, and a relist of its own), B cleaned up, a new seller E appears.
    new = datetime(2021, 10, 15, 12, tzinfo=UTC)
    gone = [r | {"status": "DELISTED", "updated_at": DELISTED_AT} for r in s1 if r != vase]
    a2 = listing(
        "A2",
        "Bitmain S19 Pro 110T hash server, office heater",
        "Home Appliances > Heaters",
        seller_id="A",
        updated_at=new,
    )
    e1 = listing("E1", "Antminer L7 9.5GH/s scrypt miner", MINERS, seller_id="E", updated_at=new)
    world.live([a2, e1])
    s2 = world.snapshot("s2", {"old": [vase], "new": [*gone, a2, e1]})
    second = world.run(s2, "2021-10-16T00:00:00+08:00", "re-sweep", "resweep-2")
    plan = second["plan"]
    assert plan["scope"]["kind"] == "changed"
    assert plan["scope"]["since"] == OLD.isoformat()  # the watermark of the first snapshot
    assert plan["scope"]["row_groups_swept"] == 1 < plan["scope"]["row_groups"]  # old skipped
    findings = {f["listing_id"]: f for f in read_sweep(plan["sweep_uri"])[0].to_pylist()}
    assert set(findings) == {"A2", "E1"}
    assert findings["A2"]["evasion"] and findings["A2"]["relist"]
    assert findings["A2"]["relist_reason"] == "seller"
    assert not findings["E1"]["relist"]
    assert world.step("A") == "store-blocked"  # an evasion jumps two steps from a clean record
    assert world.step("E") == "warning"
    assert world.step("B") is None  # cleaned up: nothing new, no penalty
    assert world.account("A") == "store-blocked"
    manifest = world.manifest("resweep-2")
    assert manifest["sweep"]["previous_run"] == "purge-1"
    assert manifest["counts"]["by_penalty"] == {"applied:store-blocked": 1, "applied:warning": 1}
    table = world.penalties("resweep-2")
    assert table["A"]["step_before"] is None and table["A"]["listings"] == ["A2"]
    assert "evasion" in table["A"]["reason"]
    assert second["notices"]["sellers"] == 2
    received = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        received += [json.loads(m["Body"])["detail"] for m in batch]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    notice = next(n for n in received if n["notice_id"] == "resweep-2:A")
    assert notice["manifest"] == second["manifest"]["manifest"]
    assert notice["penalty"]["step_after"] == "store-blocked"
    assert [d["listing_id"] for d in notice["delistings"]] == ["A2"]
    delisted = world.table("resweep-2", "delisted", "listing_id")
    assert delisted["A2"]["relist"] and delisted["A2"]["relist_of"] == "A1"

    # 3. A relists again, after its penalty (a relist after a warning jumps two steps, up to
    # closing the account, which is only proposed); F copies E's delisted listing word for word.
    later = datetime(2021, 10, 19, tzinfo=UTC)
    a3 = listing("A3", "Antminer S19 Pro 110TH/s", MINERS, seller_id="A", updated_at=later)
    f1 = listing("F1", "Antminer L7 9.5GH/s scrypt miner", MINERS, seller_id="F", updated_at=later)
    world.live([a3, f1])
    s2_rows = [*gone, a2 | {"status": "DELISTED"}, e1 | {"status": "DELISTED"}]
    s3 = world.snapshot("s3", {"old": [vase], "mid": s2_rows, "new": [a3, f1]})
    third = world.run(s3, "2021-10-21T00:00:00+08:00", "re-sweep", "resweep-3")
    findings = {f["listing_id"]: f for f in read_sweep(third["plan"]["sweep_uri"])[0].to_pylist()}
    assert set(findings) == {"A3", "F1"}
    assert findings["F1"]["relist_reason"] == "title" and findings["F1"]["relist_of"] == "E1"
    assert world.step("A") == "account-frozen"
    assert world.account("A") == "account-frozen"
    table = world.penalties("resweep-3")
    assert table["A"]["status"] == "proposed" and table["A"]["proposed"] == "account-closed"
    assert table["F"]["step_after"] == "warning"  # a first offence, even as a relist

    # 4. The same run again changes nothing: no second penalty, no second notice.
    state = {s: world.ledger.state(s, world.policy.id) for s in "ABEF"}
    again = world.run(s3, "2021-10-21T00:00:00+08:00", "re-sweep", "resweep-3")
    assert {s: world.ledger.state(s, world.policy.id) for s in "ABEF"} == state
    assert again["notices"]["sent"] == 0
    assert again["notices"]["already_sent"] == third["notices"]["sent"]
    assert again["manifest"] == third["manifest"]

    # 5. An appeal: A3 was a display dummy. The listing comes back, the offence of run 3 is
    # reversed, and A is back where run 2 put it; the reinstatement has its own manifest.
    done = world.reinstate(third, Selection(listings=("A3",)), "display dummy, no hardware inside")
    assert done.outcomes == {"REINSTATED": 1}
    assert world.status("A3") == "ACTIVE"
    assert world.step("A") == "store-blocked"
    assert world.account("A") == "store-blocked"
    assert [p.status for p in done.penalties] == ["reversed"]
    assert world.step("F") == "warning"  # untouched

    # A rule found wrong: reinstating run 2's category rule gives back nothing that run 2
    # delisted on other grounds too (E1 names the miner by brand).
    by_rule = world.reinstate(
        second, Selection(rules=(f"category:{MINERS}",)), "category mapping under review"
    )
    assert by_rule.outcomes == {"KEPT_OTHER_GROUNDS": 1}
    assert world.status("E1") == "DELISTED" and world.step("E") == "warning"

    # 6. The policy changes (a new version): the next re-sweep is full, since an unchanged
    # listing may be judged differently now. A3, reinstated on appeal, is caught again and goes
    # to review, not to delisting; F1, already delisted, is no new offence.
    path = world.policies / SHIPPED_POLICY.name
    path.write_text(path.read_text() + "\n# v1.1: clarifications\n")
    world.policy = load_policy(path)
    fourth = world.run(s3, "2021-10-22T00:00:00+08:00", "re-sweep", "resweep-4")
    assert fourth["plan"]["scope"]["kind"] == "full"
    assert "policy or its exemptions changed" in fourth["plan"]["scope"]["reason"]
    findings = {f["listing_id"]: f for f in read_sweep(fourth["plan"]["sweep_uri"])[0].to_pylist()}
    assert findings["A3"]["decision"] == "review"
    assert findings["A3"]["exemption_ids"] == [f"reinstated:{done.reinstatement_id}"]
    assert world.status("A3") == "ACTIVE"
    assert world.step("A") == "store-blocked" and world.step("F") == "warning"
    assert fourth["penalties"]["by_status"] == {}

    # The audit trail: six manifests, chained, each verified, each reversal after its action.
    root = f"s3://{world.stack.physical['ManifestsBucket']}"
    runs = list_runs(root, world.policy.id)
    folders = [download_run(r["location"], world.tmp / "audit") for r in runs]
    results = verify_runs(folders, from_first=True)
    assert all(r.ok for r in results), [r.problems for r in results]
    kinds = [json.loads((f / "manifest.json").read_text())["kind"] for f in folders]
    assert kinds == ["purge", "re-sweep", "re-sweep", "reinstatement", "reinstatement", "re-sweep"]
    reinstatement = json.loads((folders[3] / "manifest.json").read_text())
    assert reinstatement["reinstates"]["run_id"] == "resweep-3"
    assert reinstatement["counts"]["by_outcome"] == {"REINSTATED": 1}
    assert reinstatement["counts"]["by_penalty"] == {"reversed:store-blocked": 1}
    assert "Reinstates what run resweep-3 delisted" in (folders[3] / "report.html").read_text()
    report = (folders[1] / "report.html").read_text()
    assert "Swept: listings updated after 2021-10-01" in report
    assert "store blocked (applied)" in report  # penalties in words
