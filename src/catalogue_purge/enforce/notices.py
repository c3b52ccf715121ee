"""Seller notices: after a run, one event per seller (EventBridge) with the statement of
reasons for every delisting and the penalty, for the platform's notification service.

Notices go out in groups of 100 from a few threads, 10 per PutEvents call; each group is
recorded per seller under the run (runs/<run>/notices/) as soon as it is sent, so a run that
repeats or resumes sends only what is not recorded. An entry PutEvents refuses is retried with
backoff; one still refused fails the step with nothing lost (the recorded ones stay recorded,
the rest go on the next attempt). Between a successful PutEvents and its record a crash could
send a notice twice: every notice carries notice_id (run and seller) for the consumer to drop
a duplicate.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PurgeError

SOURCE = "catalogue-purge"
DETAIL_TYPE = "SellerNotice"
LISTINGS_PER_NOTICE = 200  # an event is at most 256 KB; the manifest holds them all
NOTICE_SCHEMA = pa.schema(
    [
        ("seller_id", pa.string()),
        ("notice_id", pa.string()),
        ("event_id", pa.string()),
        ("delistings", pa.int64()),
        ("penalty", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)


def build_notices(
    run: dict, delisted: Sequence[dict], penalties: Sequence[dict], manifest: str | None
) -> dict[str, dict]:
    """seller -> the notice's detail: each delisting with its grounds, and the penalty."""
    by_seller: dict[str, list[dict]] = {}
    for row in delisted:
        if row["outcome"] == "DELISTED":
            by_seller.setdefault(row["seller_id"], []).append(row)
    penalty_of = {p["seller_id"]: p for p in penalties}
    notices = {}
    for seller in sorted(set(by_seller) | set(penalty_of)):
        rows = sorted(by_seller.get(seller, []), key=lambda r: r["listing_id"])
        penalty = penalty_of.get(seller)
        notices[seller] = {
            "notice_id": f"{run['run_id']}:{seller}",
            "run_id": run["run_id"],
            "policy": {"id": run["policy"]["id"], "version": run["policy"]["version"]},
            "seller_id": seller,
            "decided_at": run["as_of"],
            "delistings_total": len(rows),
            "delistings": [
                {
                    "listing_id": r["listing_id"],
                    "title": r["title"],
                    "rules": r["rule_ids"],
                    "clauses": r["clauses"],
                    "matched_terms": r["matched_terms"],
                    "evasion": r["evasion"],
                    "relist": r["relist"],
                    "automated_decision": r["automated_decision"],
                }
                for r in rows[:LISTINGS_PER_NOTICE]
            ],
            "penalty": None
            if penalty is None
            else {
                k: penalty[k]
                for k in ("step_before", "step_after", "status", "proposed", "reason", "offences")
            },
            "manifest": manifest,
            "redress": "The seller may appeal; a reinstatement reverses the delisting and the "
            "penalty it caused.",
        }
    return notices


def _send(
    notices: dict[str, dict],
    sellers: list[str],
    events: Any,
    bus: str,
    *,
    attempts: int,
    sleep: Callable[[float], None],
) -> tuple[list[tuple[str, str]], list[str]]:
    """One group of notices, 10 per PutEvents call, each entry retried until the bus takes it:
    (sent with their event ids, refused)."""
    done: list[tuple[str, str]] = []
    refused: list[str] = []
    for start in range(0, len(sellers), 10):  # PutEvents takes 10 entries at a time
        pending = sellers[start : start + 10]
        for attempt in range(attempts):
            entries = [
                {
                    "Source": SOURCE,
                    "DetailType": DETAIL_TYPE,
                    "Detail": json.dumps(notices[s], ensure_ascii=False, default=str),
                    "EventBusName": bus,
                }
                for s in pending
            ]
            answer = events.put_events(Entries=entries)["Entries"]
            done += [
                (s, a["EventId"]) for s, a in zip(pending, answer, strict=True) if "EventId" in a
            ]
            pending = [s for s, a in zip(pending, answer, strict=True) if "EventId" not in a]
            if not pending:
                break
            sleep(min(5.0, 0.1 * 2**attempt) * random.random())  # noqa: S311 (jitter)
        refused += pending
    return done, refused


def publish(
    notices: dict[str, dict],
    events: Any,
    bus: str,
    store: RunStore,
    *,
    attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    concurrency: int = 8,
    group: int = 100,
) -> tuple[int, int]:
    """Send the notices not yet recorded, `group` at a time from `concurrency` threads, each
    group recorded as soon as it is sent; (sent now, sent before)."""
    recorded = set(store.read_outcomes().column("seller_id").to_pylist())
    todo = [s for s in notices if s not in recorded]
    groups = [todo[i : i + group] for i in range(0, len(todo), group)]
    sent = 0
    refused: list[str] = []

    def send_and_record(sellers: list[str]) -> tuple[int, list[str]]:
        done, left = _send(notices, sellers, events, bus, attempts=attempts, sleep=sleep)
        _record(store, notices, done)
        return len(done), left

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="notices") as pool:
        for count, left in pool.map(send_and_record, groups):
            sent += count
            refused += left
    if refused:
        raise PurgeError(
            f"{len(refused)} notice(s) refused by the event bus after {attempts} attempts "
            f"(sellers {', '.join(refused[:5])}); the others are sent and recorded, and running "
            "the step again sends the rest"
        )
    return sent, len(recorded & set(notices))


def _record(store: RunStore, notices: dict[str, dict], done: list[tuple[str, str]]) -> None:
    now = datetime.now(UTC)
    store.append_outcomes(
        pa.Table.from_pylist(
            [
                {
                    "seller_id": seller,
                    "notice_id": notices[seller]["notice_id"],
                    "event_id": event_id,
                    "delistings": notices[seller]["delistings_total"],
                    "penalty": (notices[seller]["penalty"] or {}).get("step_after"),
                    "at": now,
                }
                for seller, event_id in done
            ],
            schema=NOTICE_SCHEMA,
        )
    )
