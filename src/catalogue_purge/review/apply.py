"""Applying people's decisions: each batch is a run of kind `review`, with the automated run's
guarantees and its own signed manifest, chained after the policy's other runs.

    1. reserve: the decided items are marked with the batch's run id (a conditional write
       each), and the batch's members recorded under runs/<run>/members.json before anything
       acts. A batch that stopped is found again by its marks and resumed first.
    2. delist: the delist decisions as a plan (enforce/delist.py, the same code as a sweep's):
       recorded before any write, conditional on the listing's version when it was decided,
       one outcome per decision, resumable. A listing changed since it was decided is not
       delisted: it goes back to the queue for a person to look at again
       (CHANGED_SINCE_DECISION). Keep decisions change nothing in the catalogue (KEPT).
    3. penalties: from the penalty date, each seller with a listing a person delisted has an
       offence (evasion as the reviewer said), at most once per review run.
    4. the manifest: one statement of reasons per decision, `automated_decision: partially`
       (a person decided on what detection found), the reviewer's pseudonymous id, the reason,
       the decision's and the action's times, and the penalties. Written once.
    5. notices: each seller's, naming the decision as human.
    6. the queue: each item applied, sent back, or (its write FAILED) left for the next batch.

A dry run predicts the outcomes and changes nothing, in the queue or the catalogue.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from catalogue_purge.detect.history import record_delisted
from catalogue_purge.detect.policy import Policy
from catalogue_purge.enforce.catalogue import Catalogue
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA, Intent, Outcome, Plan, apply_plan
from catalogue_purge.enforce.notices import NOTICE_SCHEMA, build_notices, publish
from catalogue_purge.enforce.penalties import (
    PENALTY_SCHEMA,
    AccountService,
    Ledger,
    offences_of,
    penalise_recorded,
)
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PurgeError
from catalogue_purge.record.manifest import ManifestExists, Signer, run_folder, write_manifest
from catalogue_purge.review.queue import Item, ReviewQueue
from catalogue_purge.storage import exists, read_bytes, write_bytes

KEPT = "KEPT"
CHANGED_SINCE_DECISION = "CHANGED_SINCE_DECISION"
MEMBERS_FILE = "members.json"
AUTOMATED_DECISION = "partially"  # DSA: detection automated, a person decided

DECISION_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("country_of_sale", pa.string()),
        ("category_path", pa.string()),
        ("title", pa.string()),
        ("policy_id", pa.string()),
        ("policy_version", pa.string()),
        ("decision", pa.string()),  # delist | keep
        ("rule_ids", pa.list_(pa.string())),
        ("clauses", pa.list_(pa.string())),
        ("found_under", pa.list_(pa.string())),  # the rules detection found it under
        ("matched_terms", pa.list_(pa.string())),
        ("score", pa.float64()),
        ("reason", pa.string()),
        ("reviewer", pa.string()),  # a pseudonymous id
        ("tier", pa.int32()),
        ("first_reviewer", pa.string()),  # with a second review: whose decision it checked
        ("second_review", pa.bool_()),
        ("disputed", pa.bool_()),
        ("escalated", pa.bool_()),
        ("evasion", pa.bool_()),
        ("exemption_expires", pa.string()),
        ("account_step", pa.string()),  # the second tier's account-level penalty
        ("automated_detection", pa.bool_()),
        ("automated_decision", pa.string()),
        ("queued_by_run", pa.string()),
        ("queued_at", pa.timestamp("us", tz="UTC")),
        ("decided_at", pa.timestamp("us", tz="UTC")),
        ("acted_at", pa.timestamp("us", tz="UTC")),
        ("seconds_in_queue", pa.float64()),
        ("outcome", pa.string()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class ReviewRun:
    run_id: str | None  # None: nothing was decided
    outcomes: dict[str, int] = field(default_factory=dict)
    penalties: dict[str, int] = field(default_factory=dict)
    manifest: str | None = None
    dry_run: bool = False
    resumed: bool = False
    sent_back: int = 0


def _time(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text.replace("Z", "+00:00"))


def review_run_id(members: list[Item], now: datetime) -> str:
    digest = hashlib.sha256(
        "\n".join(f"{i.listing_id}:{i.version}" for i in members).encode()
    ).hexdigest()
    return f"review-{now:%Y%m%dT%H%M%SZ}-{digest[:8]}"


def _reserve(
    queue: ReviewQueue, runs_uri: str, now: datetime, limit: int, dry_run: bool
) -> tuple[str | None, list[Item], bool]:
    """The batch to apply: one that stopped (found by its marks), else a new one of at most
    `limit` decided items, reserved and recorded. (run id, members, resumed)."""
    decided = queue.decided()
    open_runs = sorted({i.applying_run for i in decided if i.applying_run})
    if open_runs and not dry_run:
        run_id = open_runs[0]
        members_uri = f"{runs_uri}/{run_id}/{MEMBERS_FILE}"
        if exists(members_uri):
            members = [Item.from_public(m) for m in json.loads(read_bytes(members_uri))]
        else:
            members = [i for i in decided if i.applying_run == run_id]
            _write_members(members_uri, members)
        return run_id, members, True
    fresh = sorted((i for i in decided if not i.applying_run), key=lambda i: i.listing_id)
    fresh = fresh[:limit]
    if not fresh:
        return None, [], False
    run_id = review_run_id(fresh, now) + ("-dry-run" if dry_run else "")
    if dry_run:
        return run_id, fresh, False
    members = [m for m in (queue.mark_applying(i, run_id) for i in fresh) if m is not None]
    if not members:
        return None, [], False
    _write_members(f"{runs_uri}/{run_id}/{MEMBERS_FILE}", members)
    return run_id, members, False


def _write_members(uri: str, members: list[Item]) -> None:
    write_bytes(
        uri, json.dumps([m.public() for m in members], ensure_ascii=False, default=str).encode()
    )


def _plan(run_id: str, policy: Policy, members: list[Item]) -> Plan:
    intents = sorted(
        (
            Intent(m.listing_id, m.seller_id, m.updated_at, tuple(m.final["rules"]))
            for m in members
            if m.final and m.final["decision"] == "delist"
        ),
        key=lambda i: i.listing_id,
    )
    return Plan(run_id, policy.id, policy.sha256, tuple(intents))


def _never_after_a_change(live: Any) -> tuple[bool, tuple[str, ...]]:
    """A person decided on the listing as it was: changed since, it is not delisted on that
    decision (it goes back to the queue)."""
    return False, ()


def _decision_rows(
    policy: Policy, members: list[Item], outcomes: dict[str, dict], now: datetime
) -> list[dict]:
    rows = []
    for m in sorted(members, key=lambda m: m.listing_id):
        final = m.final or {}
        delist = final.get("decision") == "delist"
        outcome = outcomes.get(m.listing_id, {})
        result = outcome.get("outcome") if delist else KEPT
        if result == Outcome.CHANGED_SINCE_SNAPSHOT_CLEARED:
            result = CHANGED_SINCE_DECISION
        queued, decided = _time(m.enqueued_at), _time(final.get("at"))
        rows.append(
            {
                "listing_id": m.listing_id,
                "seller_id": m.seller_id,
                "country_of_sale": m.country_of_sale,
                "category_path": m.category_path,
                "title": m.title,
                "policy_id": policy.id,
                "policy_version": str(policy.version),
                "decision": final.get("decision"),
                "rule_ids": final.get("rules") or [],
                "clauses": final.get("clauses") or [],
                "found_under": m.rule_ids,
                "matched_terms": m.matched_terms,
                "score": m.score,
                "reason": final.get("reason"),
                "reviewer": final.get("reviewer"),
                "tier": final.get("tier"),
                "first_reviewer": final.get("first_reviewer"),
                "second_review": bool(final.get("second_review")),
                "disputed": bool(final.get("disputed")),
                "escalated": bool(final.get("escalated")),
                "evasion": bool(final.get("evasion")),
                "exemption_expires": final.get("exemption_expires"),
                "account_step": final.get("account_step"),
                "automated_detection": True,
                "automated_decision": AUTOMATED_DECISION,
                "queued_by_run": m.run_id,
                "queued_at": queued,
                "decided_at": decided,
                "acted_at": outcome.get("at") or now,
                "seconds_in_queue": (decided - queued).total_seconds()
                if queued and decided
                else None,
                "outcome": result,
                "error": outcome.get("error"),
            }
        )
    return rows


def _penalties(
    run_id: str,
    *,
    policy: Policy,
    rows: list[dict],
    runs_uri: str,
    ledger: Ledger | None,
    accounts: AccountService | None,
    as_of: datetime,
) -> tuple[dict, pa.Table]:
    store = RunStore(f"{runs_uri}/{run_id}/penalties", PENALTY_SCHEMA)
    if not policy.penalties_active(as_of):
        marker = {
            "applied": False,
            "reason": f"as of {as_of.isoformat()}, before the penalty date "
            f"{policy.document.milestones.penalties_from}: delisting only",
        }
        store.write_marker(marker)
        return marker, PENALTY_SCHEMA.empty_table()
    if ledger is None or accounts is None:
        raise PurgeError("penalties are due: the ledger and the account service are needed")
    findings = [
        {
            "listing_id": r["listing_id"],
            "seller_id": r["seller_id"],
            "rule_ids": r["rule_ids"],
            "evasion": r["evasion"],
            "relist": False,
        }
        for r in rows
    ]
    outcomes = [{"listing_id": r["listing_id"], "outcome": r["outcome"]} for r in rows]
    # The second tier's account-level decisions: each seller at least at the step it decided.
    steps = [s.id for s in policy.document.penalties.ladder]
    decided: dict[str, int] = {}
    for r in rows:
        if r.get("account_step") in steps and r["outcome"] == "DELISTED":
            index = steps.index(r["account_step"])
            decided[r["seller_id"]] = max(decided.get(r["seller_id"], index), index)
    offences = [
        replace(o, decided_step=decided.get(o.seller_id, o.decided_step))
        for o in offences_of(run_id, policy.id, findings, outcomes)
    ]
    penalised = penalise_recorded(
        offences, policy.document.penalties, ledger, accounts, store=store
    )
    marker = {
        "applied": True,
        "reason": f"{len(offences)} seller(s) with listings a person delisted",
        "sellers": len(offences),
    }
    store.write_marker(marker)
    return marker, penalised.sort_by("seller_id")


def apply_decisions(
    queue: ReviewQueue,
    *,
    catalogue: Catalogue,
    runs_uri: str,
    data_root: str,
    manifests_root: str,
    signer: Signer,
    ledger: Ledger | None = None,
    accounts: AccountService | None = None,
    events: Any = None,
    bus: str | None = None,
    as_of: datetime | None = None,
    dry_run: bool = False,
    limit: int = 10_000,
) -> ReviewRun:
    """Apply the decided items of the queue as one review run (see the module)."""
    policy = queue.policy
    now = datetime.now(UTC)
    as_of = as_of or now
    runs_uri = runs_uri.rstrip("/")
    run_id, members, resumed = _reserve(queue, runs_uri, now, limit, dry_run)
    if run_id is None:
        return ReviewRun(None, dry_run=dry_run)
    plan = _plan(run_id, policy, members)
    store = RunStore(f"{runs_uri}/{run_id}", OUTCOME_SCHEMA)
    report = apply_plan(plan, catalogue, store, _never_after_a_change, dry_run=dry_run)
    recorded = (store.dry() if dry_run else store).read_outcomes()
    outcomes = {o["listing_id"]: o for o in recorded.to_pylist()}
    rows = _decision_rows(policy, members, outcomes, now)
    by_outcome = dict(sorted(Counter(r["outcome"] for r in rows).items()))
    if dry_run:
        return ReviewRun(run_id, by_outcome, dry_run=True)
    penalties_marker, penalties = _penalties(
        run_id,
        policy=policy,
        rows=rows,
        runs_uri=runs_uri,
        ledger=ledger,
        accounts=accounts,
        as_of=as_of,
    )
    table = pa.Table.from_pylist(rows, schema=DECISION_SCHEMA)
    folder = f"{manifests_root.rstrip('/')}/{run_folder(policy.id, run_id)}"
    run = {
        "run_id": run_id,
        "kind": "review",
        "as_of": as_of.isoformat(),
        "policy": {
            "id": policy.id,
            "version": policy.version,
            "sha256": policy.sha256,
            "exemptions_sha256": policy.exemptions_sha256,
        },
        "plan_sha256": report.plan_sha256,
        "review": {
            "decisions": len(rows),
            "reviewers": len({r["reviewer"] for r in rows}),
            "queued_by_runs": sorted({r["queued_by_run"] for r in rows}),
        },
        "penalties": penalties_marker,
        "started_at": store.read_plan()["recorded_at"],
        "finalized_at": now.isoformat(),
    }
    with contextlib.suppress(ManifestExists):  # resumed after it was written: it stands
        write_manifest(manifests_root, run, {"decisions": table, "penalties": penalties}, signer)
    delisted = recorded.filter(pc.equal(recorded.column("outcome"), "DELISTED"))
    record_delisted(
        data_root,
        policy.id,
        run_id,
        table.select(["listing_id", "seller_id", "title"]),
        delisted,
    )
    if events is not None and bus:
        # A person's decision on what detection found: no relist test was made by people.
        rows_for_notices = [r | {"relist": False} for r in rows]
        notices = build_notices(run, rows_for_notices, penalties.to_pylist(), folder)
        publish(notices, events, bus, RunStore(f"{runs_uri}/{run_id}/notices", NOTICE_SCHEMA))
    sent_back = _settle(queue, run_id, members, rows, catalogue)
    return ReviewRun(
        run_id,
        by_outcome,
        dict(Counter(penalties.column("status").to_pylist())),
        manifest=folder,
        resumed=resumed,
        sent_back=sent_back,
    )


def _settle(
    queue: ReviewQueue, run_id: str, members: list[Item], rows: list[dict], catalogue: Catalogue
) -> int:
    """Each member's item: applied, sent back to the queue, or left decided for the next
    batch (a FAILED write). An item settled before (a resumed batch) is left as it is."""
    outcome_of = {r["listing_id"]: r["outcome"] for r in rows}
    sent_back = 0
    for member in members:
        item = queue.get(member.listing_id)
        if item is None or item.applying_run != run_id:
            continue
        outcome = outcome_of[member.listing_id]
        if outcome == CHANGED_SINCE_DECISION:
            live = catalogue.get(member.listing_id)
            queue.send_back(
                item,
                run_id=run_id,
                why="the listing changed after it was decided",
                updated_at=live.updated_at if live else None,
                title=live.title if live else None,
                description=live.description if live else None,
            )
            sent_back += 1
        elif outcome == Outcome.FAILED:
            queue.release_applying(item)
        else:
            queue.mark_applied(item, run_id, outcome)
    return sent_back
