"""Appeals: reinstate listings a run delisted, reverse the penalties they caused, and record
both in a manifest of their own, chained with the policy's runs, so the audit trail shows the
action and its reversal.

What can be reinstated: listings, a whole seller, or a whole rule of a run (for a rule found
wrong). A listing the run delisted on other grounds as well stays delisted under a rule's
reinstatement, reported as KEPT_OTHER_GROUNDS. The reinstatement is recorded (intents) before
anything is changed, and resumes like a run: an item already reinstated is not touched again.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from catalogue_purge.detect.history import record_reinstated
from catalogue_purge.detect.policy import Policy
from catalogue_purge.detect.sweep import findings_dataset, read_sweep_record
from catalogue_purge.enforce.catalogue import Catalogue, Changed, Status
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA
from catalogue_purge.enforce.penalties import (
    AccountService,
    Ledger,
    Penalty,
    penalty_table,
    reverse,
)
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PurgeError
from catalogue_purge.record.manifest import ManifestExists, Signer, write_manifest

REINSTATED_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("seller_id", pa.string()),
        ("title", pa.string()),
        ("delisted_by", pa.string()),
        ("rule_ids", pa.list_(pa.string())),
        # REINSTATED | ALREADY_REINSTATED | KEPT_OTHER_GROUNDS | NOT_DELISTED_BY_RUN | NOT_FOUND
        ("outcome", pa.string()),
        ("reason", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class Selection:
    listings: tuple[str, ...] = ()
    sellers: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()

    def describe(self) -> dict:
        return {
            "listings": list(self.listings),
            "sellers": list(self.sellers),
            "rules": list(self.rules),
        }


@dataclass(frozen=True)
class Reinstatement:
    reinstatement_id: str
    outcomes: dict[str, int]
    penalties: list[Penalty]
    manifest: dict


def reinstatement_id(run_id: str, selection: Selection, reason: str) -> str:
    """The same request names the same reinstatement (so repeating it acts once)."""
    digest = hashlib.sha256(
        json.dumps([run_id, selection.describe(), reason], sort_keys=True).encode()
    ).hexdigest()
    return f"reinstate-{run_id}-{digest[:10]}"


def _chosen(run_id: str, selection: Selection, delisted: dict[str, dict]) -> list[str]:
    unknown = [listing for listing in selection.listings if listing not in delisted]
    if unknown:
        raise PurgeError(f"run {run_id} did not delist {', '.join(unknown[:5])}; nothing was done")
    chosen = [
        listing
        for listing, outcome in sorted(delisted.items())
        if listing in selection.listings
        or outcome["seller_id"] in selection.sellers
        or set(outcome["rule_ids"] or []) & set(selection.rules)
    ]
    if not chosen:
        raise PurgeError(f"run {run_id} delisted nothing that matches {selection.describe()}")
    return chosen


def _give_back(
    catalogue: Catalogue,
    run_id: str,
    listing: str,
    grounds: set[str],
    *,
    selection: Selection,
    reason: str,
) -> str:
    if not selection.listings and not selection.sellers and grounds - set(selection.rules):
        return "KEPT_OTHER_GROUNDS"  # the rule found wrong was not its only ground
    try:
        catalogue.reinstate(listing, run_id, reason)
    except Changed as changed:
        if changed.current is None:
            return "NOT_FOUND"
        if changed.current.status == Status.ACTIVE:
            return "ALREADY_REINSTATED"
        return "NOT_DELISTED_BY_RUN"  # delisted again since, by another run
    return "REINSTATED"


def _reverse_offences(
    run_id: str,
    reason: str,
    ident: str,
    *,
    policy: Policy,
    delisted: dict[str, dict],
    given_back: list[dict],
    ledger: Ledger,
    accounts: AccountService,
) -> list[Penalty]:
    """A seller's offence in the run is reversed when none of its listings stays delisted."""
    back = {r["listing_id"] for r in given_back}
    still_delisted = {o["seller_id"] for listing, o in delisted.items() if listing not in back}
    reversed_penalties = []
    for seller in sorted({r["seller_id"] for r in given_back} - still_delisted):
        undone = reverse(
            seller,
            policy.id,
            run_id,
            reason,
            penalties=policy.document.penalties,
            ledger=ledger,
            accounts=accounts,
            reinstatement_id=ident,
        )
        if undone is not None:
            reversed_penalties.append(undone)
    return reversed_penalties


def reinstate(
    run_id: str,
    selection: Selection,
    reason: str,
    *,
    policy: Policy,
    sweep_uri: str,
    runs_uri: str,
    data_root: str,
    manifests_root: str,
    catalogue: Catalogue,
    ledger: Ledger,
    accounts: AccountService,
    signer: Signer,
) -> Reinstatement:
    if not (selection.listings or selection.sellers or selection.rules):
        raise PurgeError("name what to reinstate: --listing, --seller or --rule")
    if not reason.strip():
        raise PurgeError("a reinstatement needs its reason (--reason)")
    record = read_sweep_record(sweep_uri)
    if record["policy"]["id"] != policy.id:
        raise PurgeError(f"run {run_id} applied {record['policy']['id']}, not {policy.id}")
    outcomes = RunStore(f"{runs_uri.rstrip('/')}/{run_id}", OUTCOME_SCHEMA).read_outcomes()
    delisted = {o["listing_id"]: o for o in outcomes.to_pylist() if o["outcome"] == "DELISTED"}
    findings = findings_dataset(sweep_uri).to_table(columns=["listing_id", "title"])
    titles = dict(
        zip(
            findings.column("listing_id").to_pylist(),
            findings.column("title").to_pylist(),
            strict=True,
        )
    )
    chosen = _chosen(run_id, selection, delisted)

    ident = reinstatement_id(run_id, selection, reason)
    store = RunStore(f"{runs_uri.rstrip('/')}/{ident}", REINSTATED_SCHEMA)
    store.record_plan(
        hashlib.sha256("\n".join(chosen).encode()).hexdigest(), pa.table({"listing_id": chosen})
    )
    done = set(store.read_outcomes().column("listing_id").to_pylist())
    rows = [
        {
            "listing_id": listing,
            "seller_id": delisted[listing]["seller_id"],
            "title": titles.get(listing),
            "delisted_by": run_id,
            "rule_ids": sorted(delisted[listing]["rule_ids"] or []),
            "outcome": _give_back(
                catalogue,
                run_id,
                listing,
                set(delisted[listing]["rule_ids"] or []),
                selection=selection,
                reason=reason,
            ),
            "reason": reason,
            "at": datetime.now(UTC),
        }
        for listing in chosen
        if listing not in done
    ]
    store.append_outcomes(pa.Table.from_pylist(rows, schema=REINSTATED_SCHEMA))
    results = store.read_outcomes()
    given_back = [
        r for r in results.to_pylist() if r["outcome"] in {"REINSTATED", "ALREADY_REINSTATED"}
    ]
    record_reinstated(data_root, policy.id, ident, [(r["listing_id"], run_id) for r in given_back])
    reversed_penalties = _reverse_offences(
        run_id,
        reason,
        ident,
        policy=policy,
        delisted=delisted,
        given_back=given_back,
        ledger=ledger,
        accounts=accounts,
    )
    counts = dict(sorted(Counter(results.column("outcome").to_pylist()).items()))
    run = {
        "run_id": ident,
        "kind": "reinstatement",
        "as_of": datetime.now(UTC).isoformat(),
        "reinstates": {"run_id": run_id, **selection.describe(), "reason": reason},
        "policy": {
            "id": policy.id,
            "version": policy.version,
            "sha256": policy.sha256,
            "exemptions_sha256": policy.exemptions_sha256,
        },
        "snapshot": record["snapshot"],
        "plan_sha256": store.read_plan()["sha256"],
        "penalties": {
            "applied": bool(reversed_penalties),
            "reason": f"{len(reversed_penalties)} offence(s) reversed",
        },
    }
    try:
        manifest = write_manifest(
            manifests_root,
            run,
            {
                "reinstated": results.sort_by("listing_id"),
                "penalties": penalty_table(reversed_penalties),
            },
            signer,
        )
    except ManifestExists:
        manifest = {"run_id": ident, "counts": {"by_outcome": counts}, "existing": True}
    return Reinstatement(ident, counts, reversed_penalties, manifest)
