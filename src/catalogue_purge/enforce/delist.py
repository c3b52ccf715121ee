"""Delisting: the sweep's delist findings applied to the live catalogue, each with one outcome.

Functional core, imperative shell: `plan_delistings` turns findings into a plan (data, with a
content hash); `apply_plan` records the plan as the run's intents before any write, applies it
with bounded concurrency, and records every outcome as it happens. Running it again with the
same run id resumes: listings with a recorded outcome are skipped, and a listing this run
already delisted (the write landed, its outcome record did not) is recognised by the
enforcement fields on it, so nothing is delisted twice and the outcomes are those of an
uninterrupted run. A dry run is the same code with no write.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property

import pyarrow as pa
import pyarrow.compute as pc

from catalogue_purge.detect.policy import SafetyLimits
from catalogue_purge.enforce.catalogue import (
    Catalogue,
    Changed,
    Enforcement,
    LiveListing,
    Status,
    Transient,
    format_version,
)
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PlanMismatch, SafetyLimitExceeded


class Outcome(StrEnum):
    DELISTED = "DELISTED"
    ALREADY_INACTIVE = "ALREADY_INACTIVE"
    CHANGED_SINCE_SNAPSHOT_DELISTED = "CHANGED_SINCE_SNAPSHOT_DELISTED"
    CHANGED_SINCE_SNAPSHOT_CLEARED = "CHANGED_SINCE_SNAPSHOT_CLEARED"
    NOT_FOUND = "NOT_FOUND"
    FAILED = "FAILED"


OUTCOME_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("outcome", pa.string()),
        ("rule_ids", pa.list_(pa.string())),
        ("error", pa.string()),
        ("attempts", pa.int32()),
        ("dry_run", pa.bool_()),
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)
INTENT_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("expected_updated_at", pa.string()),
        ("rule_ids", pa.list_(pa.string())),
    ]
)


@dataclass(frozen=True)
class Intent:
    listing_id: str
    seller_id: str
    expected_updated_at: str  # the snapshot's version of the listing
    rule_ids: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    run_id: str
    policy_id: str
    policy_sha256: str
    intents: tuple[Intent, ...]

    @cached_property
    def sha256(self) -> str:
        """The plan's content hash: what `--approve` names (computed once: a plan can hold
        millions of intents)."""
        canonical = json.dumps(
            {
                "policy_id": self.policy_id,
                "policy_sha256": self.policy_sha256,
                "intents": [
                    [i.listing_id, i.seller_id, i.expected_updated_at, list(i.rule_ids)]
                    for i in self.intents
                ],
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def recorded(
        cls, run_id: str, policy_id: str, policy_sha256: str, intents: pa.Table, sha256: str
    ) -> Plan:
        """A slice of a plan already recorded (one delist batch), known by the recorded hash
        of the whole plan: what an approval names and what the run's record must match."""
        plan = cls(
            run_id,
            policy_id,
            policy_sha256,
            tuple(
                Intent(
                    r["listing_id"], r["seller_id"], r["expected_updated_at"], tuple(r["rule_ids"])
                )
                for r in intents.to_pylist()
            ),
        )
        plan.__dict__["sha256"] = sha256  # the cached property's value: the whole plan's hash
        return plan

    def table(self) -> pa.Table:
        return pa.table(
            {
                "listing_id": [i.listing_id for i in self.intents],
                "seller_id": [i.seller_id for i in self.intents],
                "expected_updated_at": [i.expected_updated_at for i in self.intents],
                "rule_ids": [list(i.rule_ids) for i in self.intents],
            },
            schema=INTENT_SCHEMA,
        )


UNKNOWN = ""  # the version of a listing whose snapshot row has no updated_at


def plan_delistings(findings: pa.Table, run_id: str, policy_id: str, policy_sha256: str) -> Plan:
    """The delist findings as a plan, in listing order. Review and exempted findings are never
    part of it."""
    rows = findings.select(["listing_id", "seller_id", "decision", "updated_at", "rule_ids"])
    intents = sorted(
        (
            Intent(
                listing_id=r["listing_id"],
                seller_id=r["seller_id"],
                # No version in the snapshot: the conditional write cannot match, so the
                # listing is re-checked from its live fields, as one changed since the snapshot.
                expected_updated_at=(
                    format_version(r["updated_at"]) if r["updated_at"] is not None else UNKNOWN
                ),
                rule_ids=tuple(r["rule_ids"]),
            )
            for r in rows.to_pylist()
            if r["decision"] == "delist"
        ),
        key=lambda i: i.listing_id,
    )
    return Plan(run_id, policy_id, policy_sha256, tuple(intents))


Recheck = Callable[[LiveListing], tuple[bool, tuple[str, ...]]]
"""Whether a listing's live fields still call for delisting, and under which rules."""


@dataclass(frozen=True)
class Result:
    intent: Intent
    outcome: Outcome
    attempts: int
    rule_ids: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class Report:
    run_id: str
    plan_sha256: str
    planned: int
    outcomes: dict[str, int]
    failed: list[dict]
    dry_run: bool
    seconds: float
    applied: int = 0  # intents acted on by this call (0: the run was complete already)

    @property
    def balanced(self) -> bool:
        """findings = sum of outcomes."""
        return sum(self.outcomes.values()) == self.planned


@dataclass(frozen=True)
class Retry:
    """Backoff with full jitter (AWS's recommendation for throttling), capped."""

    attempts: int = 8
    base: float = 0.05
    cap: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap, self.base * 2**attempt))


class _Applier:
    def __init__(
        self,
        *,
        plan: Plan,
        catalogue: Catalogue,
        recheck: Recheck,
        dry_run: bool,
        retry: Retry,
        sleep: Callable[[float], None],
    ) -> None:
        self.plan, self.catalogue, self.recheck = plan, catalogue, recheck
        self.dry_run, self.retry, self.sleep = dry_run, retry, sleep
        self.at = datetime.now(UTC)
        self._rng = random.Random()  # noqa: S311 - jitter, not security

    def enforcement(
        self, intent: Intent, outcome: Outcome, rule_ids: tuple[str, ...]
    ) -> Enforcement:
        return Enforcement(
            run_id=self.plan.run_id,
            policy_id=self.plan.policy_id,
            policy_sha256=self.plan.policy_sha256,
            rule_ids=rule_ids,
            at=self.at,
            outcome=outcome.value,
        )

    def __call__(self, intent: Intent) -> Result:
        error = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                outcome, rules = self._once(intent)
                return Result(intent, outcome, attempt, rules)
            except Transient as exc:
                error = f"throttled: {exc}"
                if attempt < self.retry.attempts:
                    self.sleep(self.retry.delay(attempt, self._rng))
            except Exception as exc:  # recorded as FAILED with its error, never lost
                return Result(
                    intent, Outcome.FAILED, attempt, intent.rule_ids, f"{type(exc).__name__}: {exc}"
                )
        return Result(
            intent,
            Outcome.FAILED,
            self.retry.attempts,
            intent.rule_ids,
            f"gave up after {self.retry.attempts} attempts; last error {error}",
        )

    def _once(self, intent: Intent) -> tuple[Outcome, tuple[str, ...]]:
        if self.dry_run:
            return self._predict(intent)
        try:
            self.catalogue.delist(
                intent.listing_id,
                intent.expected_updated_at,
                self.enforcement(intent, Outcome.DELISTED, intent.rule_ids),
            )
            return Outcome.DELISTED, intent.rule_ids
        except Changed as changed:
            return self._changed(intent, changed.current)

    def _changed(
        self, intent: Intent, current: LiveListing | None
    ) -> tuple[Outcome, tuple[str, ...]]:
        if current is None:
            return Outcome.NOT_FOUND, intent.rule_ids
        if current.delisted_by_run == self.plan.run_id:
            # This run's own write, whose outcome record was lost when the run stopped.
            return Outcome(current.delisted_as or Outcome.DELISTED), intent.rule_ids
        if current.status is not Status.ACTIVE:
            return Outcome.ALREADY_INACTIVE, intent.rule_ids
        still, rules = self.recheck(current)
        if not still:
            return Outcome.CHANGED_SINCE_SNAPSHOT_CLEARED, rules
        if not self.dry_run:
            # Conditioned on the version just checked: a seller editing again in between
            # makes this raise Changed, and the retry starts over from the snapshot version.
            try:
                self.catalogue.delist(
                    intent.listing_id,
                    current.updated_at,
                    self.enforcement(intent, Outcome.CHANGED_SINCE_SNAPSHOT_DELISTED, rules),
                )
            except Changed as again:
                raise Transient("changed again during the re-check") from again
        return Outcome.CHANGED_SINCE_SNAPSHOT_DELISTED, rules

    def _predict(self, intent: Intent) -> tuple[Outcome, tuple[str, ...]]:
        current = self.catalogue.get(intent.listing_id)
        if (
            current is not None
            and current.status is Status.ACTIVE
            and current.updated_at == intent.expected_updated_at
        ):
            return Outcome.DELISTED, intent.rule_ids
        return self._changed(intent, current)


def limit_breaches(plan: Plan, limits: SafetyLimits, swept: int) -> list[str]:
    """The policy's safety limits this plan breaks, each with by how much."""
    breaches = []
    planned = len(plan.intents)
    if limits.max_listings is not None and planned > limits.max_listings:
        breaches.append(
            f"max_listings: {planned:,} to delist, limit {limits.max_listings:,} "
            f"(over by {planned - limits.max_listings:,})"
        )
    if limits.max_share is not None and swept and planned / swept > limits.max_share:
        breaches.append(
            f"max_share: {planned / swept:.2%} of {swept:,} swept listings, "
            f"limit {limits.max_share:.2%}"
        )
    if limits.max_per_seller is not None:
        per_seller = Counter(i.seller_id for i in plan.intents)
        over = {s: n for s, n in per_seller.items() if n > limits.max_per_seller}
        if over:
            worst = max(over, key=lambda s: over[s])
            breaches.append(
                f"max_per_seller: {len(over)} seller(s) over {limits.max_per_seller:,}, "
                f"the most {worst} with {over[worst]:,}"
            )
    return breaches


def held_back(
    plan: Plan,
    *,
    approve: str | None,
    limits: SafetyLimits | None,
    swept: int,
    dry_run: bool,
    then: str,
) -> str | None:
    """Why the plan may not be applied: it breaks the policy's safety limits and is not
    approved (`then`, with {sha}, says how to approve it). None when it may; an approval of
    another plan is refused outright."""
    if approve is not None and approve != plan.sha256:
        raise PlanMismatch(
            f"plan {plan.sha256} is not the approved plan {approve}; nothing was delisted"
        )
    # A dry run is held back like the real run: it predicts what the real run will do.
    if approve is not None or limits is None:
        return None
    breaches = limit_breaches(plan, limits, swept)
    if not breaches:
        return None
    return (
        ("dry run: the real run would be held back. " if dry_run else "")
        + "nothing was delisted: the plan breaks the policy's safety limits ("
        + "; ".join(breaches)
        + f"). Review it, then {then.format(sha=plan.sha256)}"
    )


def apply_plan(
    plan: Plan,
    catalogue: Catalogue,
    store: RunStore,
    recheck: Recheck,
    *,
    dry_run: bool = False,
    concurrency: int = 16,
    chunk: int = 1000,
    retry: Retry | None = None,
    sleep: Callable[[float], None] = time.sleep,
    approve: str | None = None,
    limits: SafetyLimits | None = None,
    swept: int = 0,
    batch: tuple[int, int] | None = None,
) -> Report:
    """Apply the plan, resuming whatever this run already recorded. An unapproved run is held
    back by the safety limits; an approved one must name this very plan's hash. `batch`
    (start, end) applies only those intents of the plan (one Map iteration of the state
    machine); the report then counts that batch."""
    started = time.perf_counter()
    reason = held_back(
        plan,
        approve=approve,
        limits=limits,
        swept=swept,
        dry_run=dry_run,
        then="apply it with --approve {sha}",
    )
    if reason:
        where = store.record_held(plan.sha256, plan.table(), reason, dry_run)
        raise SafetyLimitExceeded(f"{reason}. The plan is kept for review under {where}")
    if dry_run:
        store = store.dry()
    store.record_plan(plan.sha256, plan.table(), dry_run=dry_run)
    done = store.read_outcomes()
    # FAILED is not final: a resumed run tries those listings again
    done = done.filter(pc.not_equal(done.column("outcome"), Outcome.FAILED.value))
    recorded = set(done.column("listing_id").to_pylist())
    scope = plan.intents[batch[0] : batch[1]] if batch else plan.intents
    todo = [i for i in scope if i.listing_id not in recorded]
    apply_one = _Applier(
        plan=plan,
        catalogue=catalogue,
        recheck=recheck,
        dry_run=dry_run,
        retry=retry or Retry(),
        sleep=sleep,
    )
    appended = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="delist") as pool:
        for start in range(0, len(todo), chunk):
            results = list(pool.map(apply_one, todo[start : start + chunk]))
            appended.append(_outcome_table(results, dry_run))
            store.append_outcomes(appended[-1])
    outcomes = pa.concat_tables([done, *appended]) if appended else done
    if batch:
        ids = pa.array([i.listing_id for i in scope], pa.string())
        outcomes = outcomes.filter(pc.is_in(outcomes.column("listing_id"), value_set=ids))
    result = report(plan, outcomes, dry_run, time.perf_counter() - started, planned=len(scope))
    return replace(result, applied=len(todo))


def _outcome_table(results: Sequence[Result], dry_run: bool) -> pa.Table:
    now = datetime.now(UTC)
    return pa.table(
        {
            "listing_id": [r.intent.listing_id for r in results],
            "seller_id": [r.intent.seller_id for r in results],
            "outcome": [r.outcome.value for r in results],
            "rule_ids": [list(r.rule_ids) for r in results],
            "error": [r.error for r in results],
            "attempts": [r.attempts for r in results],
            "dry_run": [dry_run] * len(results),
            "at": [now] * len(results),
        },
        schema=OUTCOME_SCHEMA,
    )


def report(
    plan: Plan, outcomes: pa.Table, dry_run: bool, seconds: float, planned: int | None = None
) -> Report:
    rows = outcomes.to_pylist()
    return Report(
        run_id=plan.run_id,
        plan_sha256=plan.sha256,
        planned=len(plan.intents) if planned is None else planned,
        outcomes=dict(Counter(r["outcome"] for r in rows)),
        failed=[
            {"listing_id": r["listing_id"], "error": r["error"]}
            for r in rows
            if r["outcome"] == Outcome.FAILED
        ],
        dry_run=dry_run,
        seconds=seconds,
    )


def outcomes_by_listing(outcomes: pa.Table) -> dict[str, str]:
    return dict(
        zip(
            outcomes.column("listing_id").to_pylist(),
            outcomes.column("outcome").to_pylist(),
            strict=True,
        )
    )
