"""`catalogue-purge policy evaluate`: a policy's decisions against labelled listings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalogue_purge.cli import main

from .conftest import SHIPPED_POLICY

# One rule and one suspended category: every figure below follows by hand.
POLICY = """\
id: eval-policy
version: 1
title: t
milestones: {delisting_from: 2021-10-08, penalties_from: 2021-10-15}
prohibited_categories: [{path: Computer & Office > Blockchain Miners}]
rules:
  - {id: miners, description: miners, action: delist, terms: {en: [antminer]}}
penalties: {ladder: [{id: warning, description: w}]}
"""

ROWS = [
    # prohibited, caught by its text in a prohibited category
    (
        "P-1",
        "prohibited",
        False,
        "Antminer S19 Pro 110TH/s",
        "Computer & Office > Blockchain Miners",
    ),
    # prohibited evasion: a miner outside the suspended categories
    ("P-2", "prohibited", True, "Antminer S19j Pro 100TH/s", "Home & Garden > Heaters"),
    # prohibited, missed: nothing says mining
    ("P-3", "prohibited", False, "Blue box 3250W, 110T", "Home & Garden > Storage"),
    # doubtful: a person decides
    ("R-1", "review", False, "Bitcoin miner model, non-functional", "Toys > Models"),
    # allowed, left alone; allowed and touched (delisted)
    ("A-1", "allowed", False, "Blue ceramic vase", "Home & Garden > Vases"),
    ("A-2", "allowed", False, "Antminer S9 desk lamp", "Home & Garden > Lamps"),
]


def labels_file(tmp_path: Path, rows=ROWS) -> Path:
    path = tmp_path / "labels.jsonl"
    lines = [
        json.dumps(
            {
                "listing_id": lid,
                "seller_id": "S-1",
                "title": title,
                "description": None,
                "category_path": category,
                "country_of_sale": "US",
                "label": label,
                "evasion": evasion,
                "kind": "k",
            }
        )
        for lid, label, evasion, title, category in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def evaluate(
    tmp_path, capsys, *extra: str, labels: Path | None = None, policy: Path | None = None
) -> tuple[int, str]:
    if policy is None:
        policy = tmp_path / "eval-policy.yaml"
        policy.write_text(POLICY, encoding="utf-8")
    code = main(
        [
            "policy",
            "evaluate",
            "--policy",
            str(policy),
            "--labels",
            str(labels or labels_file(tmp_path)),
            *extra,
        ]
    )
    return code, capsys.readouterr().out


def test_the_figures_follow_from_each_decision_and_its_label(tmp_path, capsys):
    code, out = evaluate(tmp_path, capsys, "--json")
    assert code == 0  # no target given
    (ev,) = json.loads(out)["evaluations"]
    assert ev["rows"] == len(ROWS)
    assert ev["matrix"] == {
        "prohibited": {"delist": 2, "none": 1},
        "review": {"none": 1},
        "allowed": {"delist": 1, "none": 1},
    }
    assert ev["figures"] == {
        "delist_precision": pytest.approx(2 / 3),
        "prohibited_caught": pytest.approx(2 / 3),
        "evasions_flagged": 1.0,  # P-2, caught outside the categories
        "allowed_touched": 0.5,
        "allowed_touched_elsewhere": 0.5,  # no allowed listing is in the suspended category
        "review_delisted": 0.0,
        "review_surfaced": 0.0,
    }
    # Each wrong decision is listed with the rules and evidence that made it.
    wrong = {w["listing_id"]: w for w in ev["wrong"]}
    assert set(wrong) == {"P-3", "R-1", "A-2"}
    assert wrong["A-2"]["rule_ids"] == ["miners"]
    assert wrong["A-2"]["evidence"] == [{"rule_id": "miners", "term": "antminer", "field": "title"}]
    rules = {r["rule_id"]: r for r in ev["rules"]}
    assert rules["miners"]["hits"] == {"prohibited": 2, "allowed": 1}
    assert rules["miners"]["precision"] == pytest.approx(2 / 3)
    # P-2 and A-2 were delisted by the rule alone; P-1 by the rule and the category.
    assert rules["miners"]["alone"] == {"delist": 2}


def test_allowed_touched_elsewhere_leaves_out_the_suspended_categories(tmp_path, capsys):
    """A vase filed under the suspended category is delisted by the category: it counts as
    touched, but not as touched elsewhere; the lamp outside it does."""
    rows = [
        *ROWS,
        ("A-3", "allowed", False, "Blue ceramic vase", "Computer & Office > Blockchain Miners > X"),
        ("A-4", "allowed", False, "Green vase", "Computer & Office > Blockchain Minerals"),
    ]
    code, out = evaluate(tmp_path, capsys, "--json", labels=labels_file(tmp_path, rows))
    figures = json.loads(out)["evaluations"][0]["figures"]
    assert figures["allowed_touched"] == pytest.approx(2 / 4)
    assert figures["allowed_touched_elsewhere"] == pytest.approx(1 / 3)  # A-2 of
    code, out = evaluate(tmp_path, capsys, "--target", "allowed_touched_elsewhere=0.3",
                         labels=labels_file(tmp_path, rows))  # fmt: skip
    assert code == 9 and "allowed_touched_elsewhere 0.333, target <= 0.3" in out


def test_the_shipped_policy_evaluates(tmp_path, capsys):
    code, out = evaluate(tmp_path, capsys, "--json", policy=SHIPPED_POLICY)
    (ev,) = json.loads(out)["evaluations"]
    assert code == 0 and ev["policy"]["id"] == "crypto-mining-2021"


def test_targets_gate_the_exit_code_and_are_named_when_missed(tmp_path, capsys):
    code, out = evaluate(tmp_path, capsys, "--target", "prohibited_caught=0.6")
    assert code == 0 and "TARGET NOT MET" not in out
    code, out = evaluate(tmp_path, capsys, "--target", "prohibited_caught=0.99")
    assert code == 9
    assert "TARGET NOT MET: prohibited_caught 0.667, target >= 0.99" in out
    # A ceiling: allowed listings touched at most half, then at most none.
    assert evaluate(tmp_path, capsys, "--target", "allowed_touched=0.5")[0] == 0
    code, out = evaluate(tmp_path, capsys, "--target", "allowed_touched=0")
    assert code == 9 and "TARGET NOT MET: allowed_touched 0.500, target <= 0.0" in out
    code, out = evaluate(tmp_path, capsys, "--target", "default")
    assert code == 9 and "target >= 0.97" in out


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("precision=0.9", "NAME one of delist_precision"),
        ("delist_precision", "give NAME=VALUE"),
        ("delist_precision=high", "'high' is not a number"),
        ("delist_precision=1.5", "a share between 0 and 1"),
    ],
)
def test_a_bad_target_is_refused(tmp_path, capsys, target, said):
    code = main(
        [
            "policy",
            "evaluate",
            "--policy",
            str(SHIPPED_POLICY),
            "--labels",
            str(labels_file(tmp_path)),
            "--target",
            target,
        ]
    )
    assert code == 1
    assert said in capsys.readouterr().err


def test_html_show_and_text_output(tmp_path, capsys):
    page = tmp_path / "eval.html"
    code, out = evaluate(
        tmp_path, capsys, "--html", str(page), "--show", "1", "--target", "default"
    )
    assert code == 9
    html = page.read_text(encoding="utf-8")
    assert "<svg" in html and "Label × decision" in html and "P-3" in html
    assert "http" not in html  # nothing loaded from outside
    assert "prohibited_caught" in out and "label x decision" in out
    shown = [
        line
        for line in out.splitlines()
        if line.startswith("    P-") or line.startswith("    A-") or line.startswith("    R-")
    ]
    assert len(shown) == 1 and "more (--show N" in out
    _, none_shown = evaluate(tmp_path, capsys, "--show", "0")
    assert "wrong decisions:" in none_shown and "    P-3" not in none_shown


def test_several_labelled_files_are_evaluated_apart(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    second = labels_file(other, ROWS[:2])
    code, out = evaluate(tmp_path, capsys, "--labels", str(second), "--json")
    files = [ev["rows"] for ev in json.loads(out)["evaluations"]]
    assert code == 0 and files == [len(ROWS), 2]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (
            '{"listing_id": "X", "title": "t", "label": "spam"}\n',
            "line 1: label 'spam' is not one of",
        ),
        ('{"listing_id": "X", "title": "t"}\n', "line 1: no label"),
        ("not json\n", "line 1: not JSON"),
        ("[1]\n", "line 1: not a JSON object"),
        (
            '{"listing_id": "X", "title": "t", "label": "allowed"}\n' * 2,
            "line 2: listing_id 'X' is used twice",
        ),
        ("\n", "no labelled listings"),
    ],
)
def test_a_bad_labelled_file_is_refused_by_line(tmp_path, capsys, content, said):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    command = ["policy", "evaluate", "--policy", str(SHIPPED_POLICY), "--labels", str(path)]
    assert main(command) == 2
    assert said in capsys.readouterr().err


def test_each_rule_counts_the_listings_it_pushed_over_a_threshold(tmp_path, capsys):
    """A rule pushed a listing over its decision's threshold when the listing's score without
    the rule's weight falls below it: 10 + 4 = 14 delists and only the brand pushed it over;
    4 + 3 = 7 goes to review and both pushed it there."""
    policy = tmp_path / "scored.yaml"
    policy.write_text(
        POLICY.replace(
            "  - {id: miners, description: miners, action: delist, terms: {en: [antminer]}}",
            "  - {id: miners, description: miners, weight: 10, terms: {en: [antminer]}}\n"
            "  - {id: hashrate, description: h, weight: 4, terms: {en: [terahash]}}\n"
            "  - {id: algorithm, description: a, weight: 3, terms: {en: [sha256]}}\n"
            "thresholds: {delist: 10, review: 5}",
        ),
        encoding="utf-8",
    )
    rows = [
        ("P-1", "prohibited", True, "Antminer terahash box", "Home & Garden > Heaters"),
        ("P-2", "prohibited", True, "terahash sha256 box", "Home & Garden > Heaters"),
        ("P-3", "prohibited", False, "terahash sha256", "Computer & Office > Blockchain Miners"),
    ]
    code, out = evaluate(
        tmp_path, capsys, "--json", labels=labels_file(tmp_path, rows), policy=policy
    )
    (ev,) = json.loads(out)["evaluations"]
    pushed = {r["rule_id"]: r["pushed"] for r in ev["rules"] if r["pushed"]}
    # P-3 is delisted by its suspended category, whatever its score: no rule pushed it.
    assert pushed == {
        "miners": {"delist": 1},
        "hashrate": {"review": 1},
        "algorithm": {"review": 1},
    }
    code, out = evaluate(tmp_path, capsys, labels=labels_file(tmp_path, rows), policy=policy)
    assert code == 0 and "pushed over delist/review" in out
    assert [
        line.split()[-2:] for line in out.splitlines() if line.strip().startswith("miners")
    ] == [["1/", "0"]]
