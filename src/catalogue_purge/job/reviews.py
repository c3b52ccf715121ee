"""The review loop's steps, as the deployed stack runs them:

QueueReviews   the last state of a purge run: its review findings into the review queue;
               queued listings that left the catalogue, or that the run delisted, leave
               the queue as such
ApplyReviews   a scheduled function: the decided items as one review run (review/apply.py)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from catalogue_purge.detect.policy import load_policy, load_recorded
from catalogue_purge.detect.sweep import findings_dataset
from catalogue_purge.enforce.catalogue import Catalogue, Status, format_version
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA
from catalogue_purge.enforce.penalties import AccountService, Ledger
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.job.events import ApplyReviews, QueueReviews, ReviewsApplied, ReviewsQueued
from catalogue_purge.job.pipeline import RUN_FILE, _read_json
from catalogue_purge.record.manifest import Signer
from catalogue_purge.review.apply import apply_decisions
from catalogue_purge.review.queue import Candidate, ReviewQueue

_FINDING_COLUMNS = [
    "listing_id",
    "seller_id",
    "country_of_sale",
    "category_path",
    "title",
    "decision",
    "updated_at",
    "rule_ids",
    "matched_terms",
    "evidence",
    "evasion",
    "score",
]


def queue_reviews(
    event: QueueReviews,
    policies_dir: Path,
    *,
    queue_table: str,
    client: Any,
    catalogue: Catalogue,
    ledger: Ledger | None = None,
) -> ReviewsQueued:
    """QueueReviews: the run's review findings into the queue (a repeated delivery queues
    nothing twice). Each item carries the live description, the clauses and the seller's
    offences so far (its priority)."""
    run = _read_json(f"{event.sweep_uri}/{RUN_FILE}")
    policy = load_recorded(policies_dir, run["policy"], exemptions=True)
    queue = ReviewQueue(queue_table, client, policy)
    findings = findings_dataset(event.sweep_uri).to_table(columns=_FINDING_COLUMNS).to_pylist()
    review = [f for f in findings if f["decision"] == "review"]
    clauses = policy.clauses()

    offences: dict[str, int] = {}
    if ledger is not None:
        for seller in sorted({f["seller_id"] for f in review}):
            offences[seller] = ledger.state(seller, policy.id)[1]
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="queue") as pool:
        ids = [f["listing_id"] for f in review]
        listings = dict(zip(ids, pool.map(catalogue.get, ids), strict=True))
    candidates = [
        Candidate(
            listing_id=f["listing_id"],
            seller_id=f["seller_id"],
            country_of_sale=f["country_of_sale"] or "",
            category_path=f["category_path"] or "",
            title=f["title"] or "",
            updated_at=format_version(f["updated_at"]) if f["updated_at"] else "",
            rule_ids=tuple(f["rule_ids"] or ()),
            clauses=tuple(sorted({clauses[r] for r in f["rule_ids"] or () if r in clauses})),
            matched_terms=tuple(f["matched_terms"] or ()),
            evidence=tuple(
                {k: e[k] for k in ("rule_id", "term", "field", "text", "weight", "shadow")}
                for e in f["evidence"] or ()
            ),
            evasion=bool(f["evasion"]),
            score=f["score"],
            description=(listing.description if (listing := listings[f["listing_id"]]) else None),
            past_offences=offences.get(f["seller_id"], 0),
        )
        for f in review
    ]
    # Queued listings this run did not send to review: gone from the catalogue, acted on by a
    # run, or changed and no longer doubtful.
    in_review = {c.listing_id for c in candidates}
    delisted = {
        o["listing_id"]
        for o in RunStore(f"{event.runs_uri.rstrip('/')}/{event.run_id}", OUTCOME_SCHEMA)
        .read_outcomes()
        .to_pylist()
        if o["outcome"] in ("DELISTED", "CHANGED_SINCE_SNAPSHOT_DELISTED")
    }
    gone: dict[str, str] = {}
    cleared: list[str] = []
    for item in queue.waiting():
        if item.listing_id in in_review:
            continue
        if item.listing_id in delisted:
            gone[item.listing_id] = f"delisted by run {event.run_id}"
            continue
        current = catalogue.get(item.listing_id)
        if current is None:
            gone[item.listing_id] = "not in the catalogue"
        elif current.status is not Status.ACTIVE:
            gone[item.listing_id] = f"{current.status.value.lower()} in the catalogue"
        elif current.updated_at != item.updated_at and run.get("acting", True):
            cleared.append(item.listing_id)
    done = queue.enqueue(candidates, event.run_id, gone=gone, cleared=cleared)
    return ReviewsQueued(
        run_id=event.run_id,
        queued=done.queued,
        already=done.already,
        rechecked=done.rechecked,
        left=done.left,
        waiting=len(queue.waiting()),
    )


def apply_reviews(
    event: ApplyReviews,
    policies_dir: Path,
    *,
    queue_table: str,
    client: Any,
    catalogue: Catalogue,
    data_bucket: str,
    manifests_bucket: str,
    signer: Signer,
    ledger: Ledger,
    accounts: AccountService,
    events: Any = None,
    bus: str | None = None,
) -> ReviewsApplied:
    """ApplyReviews: the decided items of the policy's queue as one review run."""
    policy = load_policy(policies_dir / f"{event.policy_id}.yaml")
    queue = ReviewQueue(queue_table, client, policy)
    data = f"s3://{data_bucket}"
    done = apply_decisions(
        queue,
        catalogue=catalogue,
        runs_uri=f"{data}/runs",
        data_root=data,
        manifests_root=f"s3://{manifests_bucket}",
        signer=signer,
        ledger=ledger,
        accounts=accounts,
        events=events,
        bus=bus,
        as_of=event.as_of if isinstance(event.as_of, datetime) else None,
        dry_run=event.dry_run,
        limit=event.limit,
    )
    return ReviewsApplied(
        run_id=done.run_id,
        outcomes=done.outcomes,
        penalties=done.penalties,
        manifest=done.manifest,
        dry_run=done.dry_run,
        resumed=done.resumed,
        sent_back=done.sent_back,
    )
