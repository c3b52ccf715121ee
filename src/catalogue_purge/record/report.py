"""The one-page HTML report beside a run's manifest: counts, bars by rule, category and
country, top sellers, and a link to each part. Self-contained (no script, no remote asset), so
an auditor can open it from the download; every value from the data is escaped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from html import escape
from typing import Any

import pyarrow as pa

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:980px;
color:#1d2733;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}
h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #dde3ea}
.muted{color:#5b6b7d}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #dde3ea;border-radius:8px;padding:.7rem 1rem;min-width:140px}
.card b{display:block;font-size:1.6rem}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eef1f5;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#3d6fb6;height:12px;border-radius:2px}.bar.review{background:#e0a030}
code{font-size:.9em}summary{cursor:pointer;color:#3d6fb6;margin:.3rem 0}
"""


@dataclass
class RunSummary:
    """Counts kept as the parts go by, for manifest.json and the report."""

    outcomes: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    countries: Counter[str] = field(default_factory=Counter)
    sellers: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)
    penalties: Counter[str] = field(default_factory=Counter)  # "<status>:<step after>"
    exempted: set[str] = field(default_factory=set)  # listings an exemption kept
    quarantined: Counter[str] = field(default_factory=Counter)  # rows set aside, by reason
    evasions: int = 0  # delisted evasions (a review item is not judged an evasion yet)
    # A review run's decisions (people's): by decision, by reviewer, second reviews and
    # their agreement, time in the queue.
    review_decisions: Counter[str] = field(default_factory=Counter)
    reviewers: Counter[str] = field(default_factory=Counter)
    second_reviews: Counter[str] = field(default_factory=Counter)  # agreed | disputed
    queue_seconds: list[float] = field(default_factory=list)
    # Rules in shadow: the listings each matched, and the decisions they would have changed
    # ("review->delist"), never acted on.
    shadow_rules: Counter[str] = field(default_factory=Counter)
    shadow_changes: Counter[str] = field(default_factory=Counter)
    # For the report's bars, delist and review apart: {"delist"|"review": Counter}.
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)
    by_category: dict[str, Counter[str]] = field(default_factory=dict)
    by_country: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, table_name: str, part: pa.Table) -> None:
        self.rows[table_name] += part.num_rows
        if table_name == "penalties":
            for row in part.select(["status", "step_after"]).to_pylist():
                self.penalties[f"{row['status']}:{row['step_after'] or 'none'}"] += 1
            return
        if table_name == "exempted":
            self.exempted.update(part.column("listing_id").to_pylist())
            return
        if table_name == "quarantined":
            self.quarantined.update(part.column("reason").to_pylist())
            return
        if table_name == "reinstated":
            self.outcomes.update(part.column("outcome").to_pylist())
            return
        if table_name == "decisions":
            self._add_decisions(part)
            return
        if table_name == "shadow":
            self._add_shadow(part)
            return
        for row in part.select(
            [
                c
                for c in (
                    "outcome",
                    "rule_ids",
                    "category_path",
                    "country_of_sale",
                    "seller_id",
                    "evasion",
                )
                if c in part.column_names
            ]
        ).to_pylist():
            decision = "delist" if table_name == "delisted" else "review"
            self.rules.update(row["rule_ids"] or [])
            self.categories[row["category_path"] or ""] += 1
            self.countries[row["country_of_sale"] or ""] += 1
            self.by_rule.setdefault(decision, Counter()).update(row["rule_ids"] or [])
            self.by_category.setdefault(decision, Counter())[row["category_path"] or ""] += 1
            self.by_country.setdefault(decision, Counter())[row["country_of_sale"] or ""] += 1
            if table_name == "delisted":
                self.evasions += bool(row["evasion"])
                self.outcomes[row["outcome"]] += 1
                self.sellers[row["seller_id"]] += 1

    def _add_shadow(self, part: pa.Table) -> None:
        for row in part.select(["shadow_rule_ids", "decision", "shadow_decision"]).to_pylist():
            self.shadow_rules.update(row["shadow_rule_ids"] or [])
            if row["decision"] != row["shadow_decision"]:
                self.shadow_changes[f"{row['decision']}->{row['shadow_decision']}"] += 1

    def _add_decisions(self, part: pa.Table) -> None:
        columns = ["outcome", "decision", "reviewer", "second_review", "disputed"]
        for row in part.select([*columns, "seconds_in_queue", "seller_id"]).to_pylist():
            self.outcomes[row["outcome"]] += 1
            self.review_decisions[row["decision"]] += 1
            self.reviewers[row["reviewer"]] += 1
            if row["second_review"]:
                self.second_reviews["agreed"] += 1
            if row["disputed"]:
                self.second_reviews["disputed"] += 1
            if row["seconds_in_queue"] is not None:
                self.queue_seconds.append(row["seconds_in_queue"])
            if row["outcome"] == "DELISTED":
                self.sellers[row["seller_id"]] += 1

    def counts(self) -> dict:
        counts: dict[str, Any] = {
            "by_outcome": dict(sorted(self.outcomes.items())),
            "by_decision": {"delist": self.rows["delisted"], "review": self.rows["review"]},
            "by_rule": dict(sorted(self.rules.items())),
            "by_country": dict(sorted(self.countries.items())),
        }
        if "penalties" in self.rows:
            counts["by_penalty"] = dict(sorted(self.penalties.items()))
        if "reinstated" in self.rows:
            counts["reinstated"] = self.rows["reinstated"]
        if "exempted" in self.rows:
            counts["exempted"] = len(self.exempted)
        if "quarantined" in self.rows:
            counts["quarantined"] = dict(sorted(self.quarantined.items()))
        if "shadow" in self.rows:
            counts["shadow"] = {
                "rows": self.rows["shadow"],
                "by_rule": dict(sorted(self.shadow_rules.items())),
                "by_change": dict(sorted(self.shadow_changes.items())),
            }
        if "decisions" in self.rows:
            counts["by_review_decision"] = dict(sorted(self.review_decisions.items()))
            counts["by_reviewer"] = dict(sorted(self.reviewers.items()))
            counts["second_reviews"] = dict(sorted(self.second_reviews.items()))
        return counts


def _expandable(rows: list[str], limit: int, head: str = "") -> str:
    """The first `limit` rows, the rest behind a <details> (no script: the page stays
    self-contained and opens from a download)."""
    shown = f"<table>{head}{''.join(rows[:limit])}</table>"
    if len(rows) <= limit:
        return shown
    rest = f"<table>{head}{''.join(rows[limit:])}</table>"
    return f"{shown}<details><summary>and {len(rows) - limit:,} more</summary>{rest}</details>"


def _bars(title: str, counts: Counter[str], limit: int = 15) -> str:
    if not counts:
        return f"<h2>{escape(title)}</h2><p class='muted'>none</p>"
    ranked = counts.most_common()
    peak = ranked[0][1] or 1
    rows = [
        f"<tr><td>{escape(name or '(none)')}</td><td class='n'>{count:,}</td>"
        f"<td style='width:45%'>"
        f"<div class='bar' style='width:{100 * count / peak:.1f}%'></div></td></tr>"
        for name, count in ranked
    ]
    return f"<h2>{escape(title)}</h2>{_expandable(rows, limit)}"


def _split_bars(title: str, by: dict[str, Counter[str]], limit: int = 15) -> str:
    """Delisted and sent to review apart, one row per name, the bar split in two."""
    delist, review = by.get("delist", Counter()), by.get("review", Counter())
    total = delist + review
    if not total:
        return f"<h2>{escape(title)}</h2><p class='muted'>none</p>"
    ranked = total.most_common()
    peak = ranked[0][1] or 1
    rows = [
        f"<tr><td>{escape(name or '(none)')}</td><td class='n'>{delist[name]:,}</td>"
        f"<td class='n'>{review[name]:,}</td><td style='width:40%'>"
        f"<div class='bar' style='display:inline-block;width:{100 * delist[name] / peak:.1f}%'>"
        f"</div><div class='bar review' style='display:inline-block;"
        f"width:{100 * review[name] / peak:.1f}%'></div></td></tr>"
        for name, _ in ranked
    ]
    head = "<tr><th></th><th>delisted</th><th>review</th><th></th></tr>"
    return f"<h2>{escape(title)}</h2>{_expandable(rows, limit, head)}"


def _penalty_words(key: str) -> str:
    """ "applied:store-blocked" as people read it: "store blocked (applied)"."""
    status, _, step = key.partition(":")
    step_words = "no penalty step" if step in ("", "none") else step.replace("-", " ")
    return f"{step_words} ({status})"


def _scope(run: dict) -> str:
    """What the run swept, whether penalties applied, what a reinstatement reverses."""
    lines = []
    sweep = run.get("sweep")
    if sweep:
        what = (
            f"listings updated after {sweep.get('since')} (run {sweep.get('previous_run')})"
            if sweep.get("kind") == "changed"
            else "the whole snapshot"
        )
        if sweep.get("reason"):
            what += f"; {sweep['reason']}"
        lines.append(f"Swept: {what}.")
    if run.get("penalties"):
        lines.append(f"Penalties: {run['penalties'].get('reason', '')}.")
    if run.get("reinstates"):
        r = run["reinstates"]
        lines.append(f"Reinstates what run {r['run_id']} delisted: {r.get('reason', '')}.")
    return "".join(f"<p>{escape(line)}</p>" for line in lines)


def _review_section(summary: RunSummary) -> str:
    """A review run: decisions per reviewer, agreement on second reviews, time in queue."""
    waits = sorted(summary.queue_seconds)
    checked = summary.second_reviews["agreed"] + summary.second_reviews["disputed"]
    lines = []
    if checked:
        agreed = summary.second_reviews["agreed"] / checked
        lines.append(
            f"Second reviews: {checked:,}, of which {summary.second_reviews['agreed']:,} agreed "
            f"({agreed:.0%}) and {summary.second_reviews['disputed']:,} went to the second tier."
        )
    else:
        lines.append("Second reviews: none in this run.")
    if waits:
        median = waits[len(waits) // 2]
        lines.append(
            f"Time in queue, from queued to decided: median {_duration(median)}, "
            f"longest {_duration(waits[-1])}."
        )
    return (
        _bars("Decisions", summary.review_decisions)
        + _bars("Decisions per reviewer", summary.reviewers, limit=20)
        + "".join(f"<p>{escape(line)}</p>" for line in lines)
    )


def _shadow_section(summary: RunSummary) -> str:
    """Rules in shadow: what each matched and what they would have changed; nothing acted."""
    if not summary.rows["shadow"]:
        return ""
    changed = sum(summary.shadow_changes.values())
    return (
        f"<h2>Rules in shadow</h2><p>{summary.rows['shadow']:,} listing(s) matched by rules in "
        f"shadow; {changed:,} would have been decided otherwise had they counted. Nothing was "
        "done because of them (the shadow table lists each).</p>"
        + _bars("Listings matched, by rule in shadow", summary.shadow_rules)
        + _bars(
            "Decisions they would change (made -> with the rules in shadow)",
            summary.shadow_changes,
        )
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render_report(run: dict, summary: RunSummary, parts: list[dict]) -> bytes:
    policy = run["policy"]
    cards = [
        ("delisting outcomes", summary.rows["delisted"]),
        ("sent to review", summary.rows["review"]),
        ("exempted", len(summary.exempted)),
        ("evasions", summary.evasions),
        ("sellers delisted", len(summary.sellers)),
    ]
    if summary.rows["quarantined"]:
        cards.append(("rows set aside", summary.rows["quarantined"]))
    if "penalties" in summary.rows:
        cards.append(("penalties", summary.rows["penalties"]))
    if "reinstated" in summary.rows:
        cards.append(("reinstatement outcomes", summary.rows["reinstated"]))
    if "decisions" in summary.rows:
        cards[:3] = [
            ("decisions by people", summary.rows["decisions"]),
            ("reviewers", len(summary.reviewers)),
        ]
    card_html = "".join(
        f"<div class='card'><b>{n:,}</b>{escape(label)}</div>" for label, n in cards
    )
    outcome_rows = "".join(
        f"<tr><td>{escape(o)}</td><td class='n'>{n:,}</td></tr>"
        for o, n in sorted(summary.outcomes.items())
    )
    part_rows = _expandable(
        [
            f"<tr><td><a href='{escape(p['key'])}'>{escape(p['key'])}</a></td>"
            f"<td>{escape(p['table'])}</td>"
            f"<td class='n'>{p['rows']:,}</td><td class='n'>{p['size']:,}</td>"
            f"<td><code>{escape(p['sha256'][:16])}…</code></td></tr>"
            for p in parts
        ],
        40,
        "<tr><th>part</th><th>table</th><th>rows</th><th>bytes</th><th>SHA-256</th></tr>",
    )
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Run {escape(run["run_id"])}</title>
<style>{_STYLE}</style></head><body>
<h1>Enforcement run {escape(run["run_id"])}</h1>
<p class="muted">{escape(run.get("kind", "purge"))} run
as of {escape(str(run.get("as_of", "")))} under policy
<b>{escape(policy["id"])}</b> v{escape(str(policy["version"]))}
(sha256 <code>{escape(policy["sha256"][:16])}…</code>). The manifest.json beside this page lists
every part with its SHA-256; digest.json is signed (digest.sig, public-key.pem).</p>
<div class="cards">{card_html}</div>
<h2>Outcomes of the delistings</h2>
<table>{outcome_rows or "<tr><td class='muted'>none</td></tr>"}</table>
{_scope(run)}
{
        _bars("Penalties", Counter({_penalty_words(k): v for k, v in summary.penalties.items()}))
        if "penalties" in summary.rows
        else ""
    }
{_review_section(summary) if "decisions" in summary.rows else ""}
{_shadow_section(summary)}
{_split_bars("By rule", summary.by_rule)}
{_split_bars("By category", summary.by_category)}
{_split_bars("By country of sale", summary.by_country)}
{_bars("Sellers with the most delistings", summary.sellers, limit=10)}
<h2>Parts</h2>
{part_rows}
</body></html>
"""
    return html.encode("utf-8")
