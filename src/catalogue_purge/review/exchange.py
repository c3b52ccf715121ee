"""The queue outside the page: a spreadsheet's round trip (export, import) and the decided
items as a labelled file that `policy evaluate` reads.

Export claims the items it writes for the reviewer (a spreadsheet takes longer than the page:
the claim lasts the hours asked for), as CSV with a UTF-8 byte-order mark, no cell starting a
formula. Import checks every row first and refuses the whole file, naming each bad row, before
deciding anything; a row left without a decision is given back to the queue.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from catalogue_purge.errors import PurgeError
from catalogue_purge.record.manifest import csv_bytes
from catalogue_purge.review.queue import (
    Conflict,
    Decision,
    Item,
    Lane,
    Order,
    QueueError,
    ReviewQueue,
    State,
)

EXPORT_COLUMNS = (
    "listing_id",
    "version",
    "lane",
    "seller_id",
    "country_of_sale",
    "category_path",
    "title",
    "description",
    "score",
    "found_under",
    "matched_terms",
    "clauses",
    "earlier_decision",
    "decision",
    "reason",
    "rules",
    "evasion",
    "exemption_expires",
    "account_step",
)
_DECIDED_BY_PEOPLE = (
    "decision",
    "reason",
    "rules",
    "evasion",
    "exemption_expires",
    "account_step",
)
DESCRIPTION_CELL = 2_000


class ImportError_(PurgeError):
    """A spreadsheet that cannot be imported: every bad row is named (exit code 2)."""

    exit_code = 2


def export_rows(items: Sequence[Item]) -> pa.Table:
    rows = []
    for item in items:
        earlier = "; ".join(
            f"{d['reviewer']}: {d['decision']} ({d['reason']})"
            for d in item.decisions
            if d["decision"] != Decision.SKIP
        )
        rows.append(
            {
                "listing_id": item.listing_id,
                "version": str(item.version),
                "lane": item.lane.value if item.lane else "",
                "seller_id": item.seller_id,
                "country_of_sale": item.country_of_sale,
                "category_path": item.category_path,
                "title": item.title,
                "description": (item.description or "")[:DESCRIPTION_CELL],
                "score": "" if item.score is None else f"{item.score:g}",
                "found_under": "; ".join(item.rule_ids),
                "matched_terms": "; ".join(item.matched_terms),
                "clauses": "; ".join(item.clauses),
                "earlier_decision": earlier,
            }
            | dict.fromkeys(_DECIDED_BY_PEOPLE, "")
        )
    schema = pa.schema([(c, pa.string()) for c in EXPORT_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


def export_claimed(
    queue: ReviewQueue,
    out: Path,
    *,
    reviewer: str,
    tier: int = 1,
    count: int = 100,
    order: Order = Order.OLDEST,
    hours: int = 8,
) -> int:
    """Claim up to `count` items for the reviewer and write them to `out`; how many."""
    items = queue.claim(reviewer, tier=tier, count=count, order=order, minutes=hours * 60)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(csv_bytes(export_rows(items)))
    return len(items)


@dataclass(frozen=True)
class Row:
    number: int  # the spreadsheet's row, the header being row 1
    listing_id: str
    version: int
    decision: str | None
    reason: str
    rules: tuple[str, ...]
    evasion: bool | None
    exemption_expires: str | None
    account_step: str | None = None


@dataclass
class Imported:
    decided: dict[str, int] = field(default_factory=dict)
    released: int = 0
    conflicts: list[str] = field(default_factory=list)


def _cell(row: dict, name: str) -> str:
    value = (row.get(name) or "").strip()
    return value[1:] if value.startswith("'") else value  # the export's formula guard


def _check_row(
    number: int, raw: dict, rules: set[str], policy_id: str
) -> tuple[Row | None, list[str]]:
    """One spreadsheet row as a decision, and what is wrong with it."""
    errors = []
    listing = _cell(raw, "listing_id")
    if not listing:
        errors.append("no listing_id")
    version = _cell(raw, "version")
    if not version.isdigit():
        errors.append(f"version {version!r} is not a number (keep the exported one)")
    decision = _cell(raw, "decision").lower() or None
    reason = _cell(raw, "reason")
    cited = tuple(r.strip() for r in _cell(raw, "rules").replace(",", ";").split(";") if r.strip())
    choices = {d.value for d in Decision}
    if decision is not None and decision not in choices:
        errors.append(f"decision {decision!r} is not one of {', '.join(sorted(choices))}")
    if decision and not reason:
        errors.append(f"a {decision} decision needs its reason")
    if decision == Decision.DELIST and not cited:
        errors.append("a delisting cites its rules (the rules column)")
    unknown = [r for r in cited if r not in rules and not r.startswith("category:")]
    if unknown:
        errors.append(f"{', '.join(unknown)} is not a rule of {policy_id}")
    evasion = _cell(raw, "evasion").lower()
    if evasion not in ("", "true", "false", "yes", "no"):
        errors.append(f"evasion {evasion!r} is not true or false")
    expires = _cell(raw, "exemption_expires") or None
    if expires and decision != Decision.KEEP:
        errors.append("only a keep decision grants an exemption")
    if errors:
        return None, errors
    return (
        Row(
            number,
            listing,
            int(version),
            decision,
            reason,
            cited,
            None if not evasion else evasion in ("true", "yes"),
            expires,
            _cell(raw, "account_step") or None,
        ),
        [],
    )


def read_rows(path: Path, queue: ReviewQueue) -> list[Row]:
    """The rows of a spreadsheet, every one checked (ImportError_ names each bad row)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportError_(f"{path}: cannot read it as UTF-8 CSV: {exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [
        c
        for c in ("listing_id", "version", *_DECIDED_BY_PEOPLE[:3])
        if c not in (reader.fieldnames or [])
    ]
    if missing:
        raise ImportError_(
            f"{path}: no column {', '.join(missing)} (export a file with `review export` and "
            "fill in its decision and reason columns)"
        )
    rules = {r.id for r in queue.policy.document.rules}
    rows, problems, seen = [], [], set()
    for number, raw in enumerate(reader, start=2):
        listing = _cell(raw, "listing_id")
        where = f"row {number}" + (f" ({listing})" if listing else "")
        row, errors = _check_row(number, raw, rules, queue.policy.id)
        if listing and listing in seen:
            errors.append("the listing is on an earlier row too")
        seen.add(listing)
        problems += [f"{where}: {e}" for e in errors]
        if row is not None and not errors:
            rows.append(row)
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:30])
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise ImportError_(
            f"{path}: {len(problems)} problem(s), nothing was imported:\n{shown}{more}"
        )
    return rows


def import_decisions(path: Path, queue: ReviewQueue, *, reviewer: str, tier: int = 1) -> Imported:
    """Decide each row of a checked spreadsheet; a row the queue refuses (its claim expired,
    another reviewer took it) is reported and the rest go on."""
    done = Imported()
    for row in read_rows(path, queue):
        try:
            if row.decision is None:
                queue.release(row.listing_id, reviewer, row.version)
                done.released += 1
                continue
            queue.decide(
                row.listing_id,
                reviewer=reviewer,
                version=row.version,
                decision=row.decision,
                reason=row.reason,
                tier=tier,
                rules=row.rules,
                evasion=row.evasion,
                exemption_expires=row.exemption_expires,
                account_step=row.account_step,
                source="spreadsheet",
            )
            done.decided[row.decision] = done.decided.get(row.decision, 0) + 1
        except (Conflict, QueueError) as exc:
            done.conflicts.append(f"row {row.number} ({row.listing_id}): {exc}")
    return done


def labelled_rows(queue: ReviewQueue) -> list[dict]:
    """The items people decided, as `policy evaluate` reads them: delist -> prohibited, keep
    -> allowed, and the ones the second tier has yet to settle after a dispute -> review."""
    rows = []
    for item in sorted(queue.items(), key=lambda i: i.listing_id):
        final = item.final
        if final and final["decision"] in (Decision.DELIST, Decision.KEEP):
            label = "prohibited" if final["decision"] == Decision.DELIST else "allowed"
            evasion = bool(final.get("evasion")) and label == "prohibited"
        elif item.lane is Lane.ESCALATED and item.state in (State.WAITING, State.CLAIMED):
            label, evasion = "review", False
        else:
            continue
        rows.append(
            {
                "listing_id": item.listing_id,
                "seller_id": item.seller_id,
                "title": item.title,
                "description": item.description,
                "category_path": item.category_path,
                "country_of_sale": item.country_of_sale,
                "label": label,
                "evasion": evasion,
                "escalated": item.lane is Lane.ESCALATED or bool(final and final.get("escalated")),
                "disputed": item.disputed,
                "decided_by": final.get("reviewer") if final else None,
                "reason": final.get("reason") if final else None,
                "source": "review-queue",
            }
        )
    return rows


def write_labels(queue: ReviewQueue, out: Path) -> int:
    rows = labelled_rows(queue)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return len(rows)


def proposed_exemptions(queue: ReviewQueue) -> list[dict]:
    """The keep decisions that grant an exemption, as entries of the policy's exemptions file:
    the listing, exempt from the rules it was found under, until the date the reviewer gave."""
    entries = []
    for item in sorted(queue.items(), key=lambda i: i.listing_id):
        final = item.final or {}
        if final.get("decision") != Decision.KEEP or not final.get("exemption_expires"):
            continue
        entries.append(
            {
                "id": f"review-{item.listing_id}",
                "listing_id": item.listing_id,
                "rules": sorted(item.rule_ids) or ["*"],
                "reason": final["reason"],
                "granted_by": final["reviewer"],
                "granted_at": final["at"][:10],
                "expires": final["exemption_expires"],
            }
        )
    return entries


def write_exemptions(queue: ReviewQueue, current: Path, out: Path) -> tuple[int, int]:
    """The policy's exemptions file (`current`, if there is one) with the reviewers' exemptions
    added, written to `out` for a reviewed change; checked by loading the policy with it.
    (added, kept as they were)."""
    import yaml  # noqa: PLC0415 - only this command writes YAML

    from catalogue_purge.detect.policy import load_policy  # noqa: PLC0415

    existing: dict = {"policy": queue.policy.id, "exemptions": []}
    if current.is_file():
        existing = yaml.safe_load(current.read_text(encoding="utf-8")) or existing
    have = {e["id"] for e in existing.get("exemptions") or []}
    added = [e for e in proposed_exemptions(queue) if e["id"] not in have]
    document = {
        "policy": queue.policy.id,
        "exemptions": [*(existing.get("exemptions") or []), *added],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Exemptions of the policy; entries with ids review-* come from reviewers' keep\n"
        "# decisions (catalogue-purge review exemptions). Review the change, then commit it.\n"
        + yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100)
    )
    out.write_text(text, encoding="utf-8")
    load_policy(queue.policy.path, exemptions=out)  # a bad entry is refused here, named
    return len(added), len(have)
