"""A run's decisions as statements of reasons for the DSA Transparency Database.

From a downloaded run folder that verifies (the caller checks it first: an export never
speaks for a manifest that does not verify), every decision on a listing sold in the EU or the
EEA becomes one statement in the schema of the database's API (record/dsa-statement.json holds
the schema the tests validate against):

- a delisting (an automated run's DELISTED outcomes, a review run's delist decisions that were
  applied): access to the listing disabled, on the ground of the marketplace's terms (the
  policy's clauses), category "unsafe, non-compliant or prohibited products";
  `automated_decision` is FULLY for an automated run, PARTIALLY for a person's decision;
- an account-level penalty applied by the run, for a step of the ladder that names its
  `dsa_restriction` (`decision_account` or `decision_provision`, with the end date its `days`
  give); a warning restricts nothing and has no statement.

No personal data goes out: no seller or reviewer id, no title, no free-text reason; the facts
are the policy, its rules and the terms they matched. `puid` is the run and the listing (or a
hash of the seller, for a penalty): unique and stable per decision, so a statement sent twice
is known by the database as the same. Statements are written in batches of at most 100, one
API request body ({"statements": [...]}) per line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from catalogue_purge.errors import PurgeError

# The API's territorial scope: the EU's member states and the EEA's other three.
EEA = frozenset(
    {
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IS",
        "IT",
        "LI",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "NO",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    }
)
BATCH = 100  # the API's most statements per request
_PUID = re.compile(r"[^A-Za-z0-9_-]+")
_PATTERN = re.compile(r"\\[dswb]|\(\?|[\[\]{}|^$]")
_DELISTED = {"DELISTED", "CHANGED_SINCE_SNAPSHOT_DELISTED"}


def _puid(*parts: str) -> str:
    return _PUID.sub("_", "-".join(parts))[:500]


def _day(moment: object) -> str:
    if isinstance(moment, datetime):
        return moment.date().isoformat()
    if isinstance(moment, date):
        return moment.isoformat()
    return str(moment)[:10]


def _rows(folder: Path, manifest: dict, table: str) -> Iterator[dict]:
    for part in manifest.get("parts", []):
        if part["table"] == table and part["format"] == "parquet":
            yield from pq.read_table(folder / part["key"]).to_pylist()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listing_statement(manifest: dict, row: dict, person: bool) -> dict:
    policy = manifest["policy"]
    clauses = row.get("clauses") or []
    # The words themselves: a regex rule's pattern says nothing to a reader.
    terms = [t for t in row.get("matched_terms") or [] if not _PATTERN.search(t)]
    decided = (
        "A person decided on the evidence the policy's automated detection found"
        if person
        else "Decided by the policy's rules, automatically"
    )
    facts = (
        f"The listing offers a product the marketplace's policy {policy['id']} "
        f"(version {policy['version']}) prohibits. Rules: {', '.join(row['rule_ids'] or [])}. "
        f"Terms found: {', '.join(terms[:20]) or 'none (the listing is in a suspended category)'}. "
        f"{decided}."
    )
    return {
        "puid": _puid(manifest["run_id"], row["listing_id"]),
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_DISABLED"],
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": _clip("; ".join(clauses) or f"policy {policy['id']}", 500),
        "incompatible_content_explanation": _clip(facts, 2000),
        "incompatible_content_illegal": "No",
        "content_type": ["CONTENT_TYPE_PRODUCT"],
        "category": "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS",
        "category_specification": ["KEYWORD_PROHIBITED_PRODUCTS"],
        "territorial_scope": [row["country_of_sale"]],
        "content_date": _day(row["decided_at"]),
        "application_date": _day(row["acted_at"]),
        "decision_facts": _clip(facts, 5000),
        "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": "Yes",
        "automated_decision": "AUTOMATED_DECISION_PARTIALLY"
        if person
        else "AUTOMATED_DECISION_FULLY",
        "account_type": "ACCOUNT_TYPE_BUSINESS",
    }


def _penalty_statement(
    manifest: dict, row: dict, step: dict, countries: list[str], automated: str
) -> dict:
    restriction = step["dsa_restriction"]
    field = (
        "decision_account" if restriction.startswith("DECISION_ACCOUNT") else "decision_provision"
    )
    applied = row["at"]
    end = (
        _day(applied + timedelta(days=step["days"]))
        if step.get("days") and isinstance(applied, datetime)
        else None
    )
    policy = manifest["policy"]
    facts = (
        f"Offence {row['offences']} under the marketplace's policy {policy['id']}: "
        f"{len(row['listings'] or [])} listing(s) of prohibited products delisted "
        f"(rules {', '.join(row['rules'] or [])})"
        + ("; disguised to evade the rules" if row.get("evasion") else "")
        + f". Step {row['step_after']}: {step['description']}."
    )
    return {
        "puid": _puid(
            manifest["run_id"],
            "account",
            hashlib.sha256(row["seller_id"].encode()).hexdigest()[:16],
        ),
        field: restriction,
        f"end_date_{'account' if field == 'decision_account' else 'service'}_restriction": end,
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": _clip(f"policy {policy['id']}: penalties", 500),
        "incompatible_content_explanation": _clip(facts, 2000),
        "incompatible_content_illegal": "No",
        "content_type": ["CONTENT_TYPE_PRODUCT"],
        "category": "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS",
        "category_specification": ["KEYWORD_PROHIBITED_PRODUCTS"],
        "territorial_scope": countries,
        "content_date": _day(applied),
        "application_date": _day(applied),
        "decision_facts": _clip(facts, 5000),
        "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": "Yes",
        "automated_decision": automated,
        "account_type": "ACCOUNT_TYPE_BUSINESS",
    }


def statements(folder: Path, ladder: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """The run's statements (see the module) and what was left out, by why."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    kind = manifest.get("kind", "purge")
    person = kind == "review"
    out: list[dict] = []
    left: dict[str, int] = {}

    def leave(why: str) -> None:
        left[why] = left.get(why, 0) + 1

    table = "decisions" if person else "delisted"
    countries_of: dict[str, set[str]] = {}
    for row in _rows(folder, manifest, table):
        if row["outcome"] not in _DELISTED:
            leave(f"not delisted ({row['outcome']})")
            continue
        countries_of.setdefault(row["seller_id"], set()).add(row["country_of_sale"])
        if row["country_of_sale"] not in EEA:
            leave("sold outside the EU/EEA")
            continue
        out.append(_listing_statement(manifest, row, person))
    steps = {s["id"]: s for s in ladder}
    automated = "AUTOMATED_DECISION_PARTIALLY" if person else "AUTOMATED_DECISION_FULLY"
    for row in _rows(folder, manifest, "penalties"):
        step = steps.get(row["step_after"] or "")
        if row["status"] != "applied" or step is None or not step.get("dsa_restriction"):
            leave(f"penalty {row['status']} {row['step_after'] or 'none'}: no restriction")
            continue
        countries = sorted(countries_of.get(row["seller_id"], set()) & EEA)
        if not countries:
            leave("penalty of a seller selling outside the EU/EEA")
            continue
        out.append(_penalty_statement(manifest, row, step, countries, automated))
    puids = [s["puid"] for s in out]
    if len(set(puids)) != len(puids):
        raise PurgeError(f"{folder.name}: two statements share a puid; nothing was written")
    return out, dict(sorted(left.items()))


def write_batches(statements_: list[dict], to: Path) -> int:
    """One API request body per line, at most BATCH statements each; how many lines."""
    to.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"statements": statements_[i : i + BATCH]}, ensure_ascii=False)
        for i in range(0, len(statements_), BATCH)
    ]
    to.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)
