"""Evidence with weights, decisions by bands: a listing's score is the sum of the weights of the
rules that fire for it; the policy's thresholds decide; counter-evidence weighs less than zero;
rules in shadow are reported and never change a decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalogue_purge.cli import parse_as_of
from catalogue_purge.detect.policy import load_policy
from catalogue_purge.detect.snapshot import open_snapshot
from catalogue_purge.detect.sweep import sweep
from catalogue_purge.errors import PolicyError

from .conftest import listing, write_listings

POLICY = """\
id: scored
version: 1
title: t
milestones: {delisting_from: 2021-10-08, penalties_from: 2021-10-15}
prohibited_categories: [{path: Computer & Office > Blockchain Miners}]
thresholds: {delist: 10, review: 5}
rules:
  - {id: brand, description: a miner brand, weight: 10, terms: {en: [antminer]}}
  - {id: hashrate, description: a hashrate, weight: 4, terms: {en: [terahash]}}
  - {id: algorithm, description: an algorithm, weight: 3, terms: {en: [sha256]}}
  - {id: novelty, description: not a working miner, weight: -8,
     terms: {en: [non functional, desk model]}}
  - {id: old-style, description: the action form still works, action: review,
     terms: {en: [hashboard]}}
  - {id: trial, description: a rule being tried, weight: 10, mode: shadow,
     terms: {en: [hashbox]}}
  - {id: used-gpu, description: a used card that may have been in a rig, weight: 5,
     at_most: review, terms: {en: [ex mining]}}
penalties: {ladder: [{id: warning, description: w}]}
"""
MINERS = "Computer & Office > Blockchain Miners"


def write_policy(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "scored.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def found(tmp_path) -> dict[str, dict]:
    policy = load_policy(write_policy(tmp_path))
    rows = [
        listing("brand", "Antminer S19, used"),
        listing("model", "Antminer desk model, non functional"),
        listing("model-in-category", "Antminer desk model, non functional", MINERS),
        listing("two-signals", "terahash sha256 box"),
        listing("one-signal", "terahash box"),
        listing("old-style", "hashboard for sale"),
        listing("shadow-only", "hashbox 3000"),
        listing("shadow-agrees", "Antminer hashbox"),
        listing("shadow-raises", "terahash hashbox"),
        listing("vase", "Blue vase"),
        listing("capped", "Antminer S9 ex mining fans"),
        listing("capped-in-category", "Antminer S9 ex mining fans", MINERS),
    ]
    snapshot = open_snapshot(str(write_listings(tmp_path / "s.parquet", rows)))
    result = sweep(snapshot, policy, parse_as_of("2021-10-08", policy))
    return {f["listing_id"]: f for f in result.findings.to_pylist()}


def test_the_bands_decide_on_the_sum_of_the_weights(found):
    assert (found["brand"]["decision"], found["brand"]["score"]) == ("delist", 10)
    assert (found["two-signals"]["decision"], found["two-signals"]["score"]) == ("review", 7)
    assert found["two-signals"]["rule_ids"] == ["algorithm", "hashrate"]
    assert "one-signal" not in found  # 4, below the review threshold
    assert (found["old-style"]["decision"], found["old-style"]["score"]) == ("review", 5)
    assert "vase" not in found


def test_a_rule_at_most_review_keeps_any_score_from_delisting(found):
    capped = found["capped"]
    assert (capped["decision"], capped["score"]) == ("review", 15)
    assert capped["rule_ids"] == ["brand", "used-gpu"]
    assert found["capped-in-category"]["decision"] == "delist"  # the category is suspended


def test_counter_evidence_weighs_against_and_is_shown(found):
    assert "model" not in found  # 10 - 8 = 2: a desk model stays listed
    # In a suspended category it is delisted all the same; the score says the text disagrees.
    model = found["model-in-category"]
    assert (model["decision"], model["score"]) == ("delist", 2)
    weights = {e["rule_id"]: e["weight"] for e in model["evidence"]}
    assert weights["novelty"] == -8 and weights["brand"] == 10
    # Counter-evidence is evidence, not a ground: the grounds are the category and the brand.
    assert model["rule_ids"] == ["brand", "category:" + MINERS]
    assert "non functional" not in model["matched_terms"]


def test_rules_in_shadow_are_reported_and_never_decide(found):
    only = found["shadow-only"]
    assert (only["decision"], only["shadow_decision"], only["score"]) == ("shadow", "delist", 0)
    assert only["rule_ids"] == [] and only["evasion"] is False
    assert [(e["rule_id"], e["shadow"]) for e in only["evidence"]] == [("trial", True)]
    agrees = found["shadow-agrees"]
    assert (agrees["decision"], agrees["shadow_decision"]) == ("delist", None)
    assert agrees["rule_ids"] == ["brand"]
    raises = found["shadow-raises"]  # 4 live, 14 with the rule in shadow
    assert (raises["decision"], raises["shadow_decision"]) == ("shadow", "delist")


def test_a_suspended_category_can_leave_a_listing_its_text_disagrees_with_to_a_person(
    tmp_path, capsys
):
    """`when_text_disagrees: review`: in that category, a listing whose counter-evidence
    outweighs its evidence, or which a rule `at_most: review` caps, goes to a person; one the
    text agrees with, or says nothing about, is delisted as before. The other category keeps the
    default and delists whatever the text says."""
    other = "Digital Goods > Cryptocurrency"
    text = POLICY.replace(
        "prohibited_categories: [{path: Computer & Office > Blockchain Miners}]",
        "prohibited_categories:\n"
        "  - {path: Computer & Office > Blockchain Miners, when_text_disagrees: review}\n"
        f"  - {{path: {other}}}",
    )
    policy = load_policy(write_policy(tmp_path, text))
    rows = [
        listing("model", "Antminer desk model, non functional", MINERS),
        listing("desk-toy", "Blinking desk model, non functional", MINERS),
        listing("capped", "Antminer S9 ex mining fans", MINERS),
        listing("agrees", "Antminer S19", MINERS),
        listing("silent", "Blue vase", MINERS),
        listing("default", "Blinking desk model, non functional", other),
    ]
    snapshot = open_snapshot(str(write_listings(tmp_path / "s.parquet", rows)))
    found = {
        f["listing_id"]: f
        for f in sweep(snapshot, policy, parse_as_of("2021-10-08", policy)).findings.to_pylist()
    }
    decided = {k: (f["decision"], f["score"]) for k, f in found.items()}
    assert decided == {
        "model": ("delist", 2),  # 10 - 8: the text still leans to a miner
        "desk-toy": ("review", -8),
        "capped": ("review", 15),
        "agrees": ("delist", 10),
        "silent": ("delist", 0),
        "default": ("delist", -8),
    }
    assert found["desk-toy"]["evasion"] is False  # filed where it said it was
    assert "category:" + MINERS in found["desk-toy"]["rule_ids"]

    from catalogue_purge.cli import main

    path = write_policy(tmp_path, text)
    args = ["explain", "--policy", str(path), "--title", "desk model non functional"]
    assert main([*args, "--category", MINERS]) == 0
    said = capsys.readouterr().out
    assert said.startswith("decision: review  score -8")
    assert "is suspended, but the text disagrees" in said and "a person decides" in said


def test_a_suspended_category_can_leave_a_listing_its_text_says_too_little_about_to_a_person(
    tmp_path, capsys
):
    """`when_text_silent: review`: in that category, a listing whose text alone would not act
    (a score below the review threshold, counter-evidence aside) goes to a person; one the text
    agrees with is delisted. Without it, the same listing is delisted."""
    text = POLICY.replace(
        "prohibited_categories: [{path: Computer & Office > Blockchain Miners}]",
        "prohibited_categories:\n"
        "  - {path: Computer & Office > Blockchain Miners, when_text_disagrees: review,\n"
        "     when_text_silent: review}",
    )
    rows = [
        listing("silent", "Blue vase", MINERS),
        listing("model", "Antminer desk model, non functional", MINERS),  # 10 - 8
        listing("agrees", "Antminer S19", MINERS),
        listing("desk-toy", "Blinking desk model, non functional", MINERS),
    ]
    snapshot = open_snapshot(str(write_listings(tmp_path / "s.parquet", rows)))

    def decided(policy_text: str) -> dict:
        policy = load_policy(write_policy(tmp_path, policy_text))
        result = sweep(snapshot, policy, parse_as_of("2021-10-08", policy))
        return {f["listing_id"]: (f["decision"], f["score"]) for f in result.findings.to_pylist()}

    assert decided(text) == {
        "silent": ("review", 0),
        "model": ("review", 2),
        "agrees": ("delist", 10),
        "desk-toy": ("review", -8),
    }
    assert decided(POLICY)["silent"] == ("delist", 0)

    from catalogue_purge.cli import main

    path = write_policy(tmp_path, text)
    args = ["explain", "--policy", str(path), "--category", MINERS, "--title"]
    assert main([*args, "Blue vase"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("decision: review  score 0")
    assert "says too little to act on" in said and "when_text_silent: review" in said
    assert main([*args, "desk model non functional"]) == 0
    assert "the text disagrees" in capsys.readouterr().out


@pytest.mark.parametrize("key", ["when_text_disagrees", "when_text_silent"])
def test_when_text_disagrees_or_is_silent_takes_delist_or_review_only(tmp_path, key):
    text = POLICY.replace(
        "[{path: Computer & Office > Blockchain Miners}]",
        f"[{{path: Computer & Office > Blockchain Miners, {key}: keep}}]",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(write_policy(tmp_path, text))
    assert f"prohibited_categories[0].{key}" in str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (
            "weight: 10, terms: {en: [antminer]}",
            "action: delist, weight: 10, terms: {en: [antminer]}",
            "give either action",
        ),
        ("weight: 10, terms: {en: [antminer]}", "terms: {en: [antminer]}", "give either action"),
        (
            "weight: 10, terms: {en: [antminer]}",
            "weight: 0, terms: {en: [antminer]}",
            "a weight of 0 never changes",
        ),
        (
            "thresholds: {delist: 10, review: 5}",
            "thresholds: {delist: 4, review: 5}",
            "review threshold (5.0) is above",
        ),
        (
            "thresholds: {delist: 10, review: 5}",
            "thresholds: {delist: 10, review: 0}",
            "thresholds.review",
        ),
        ("mode: shadow", "mode: dark", "rules[5] (id trial).mode"),
        ("at_most: review", "at_most: delist", "rules[6] (id used-gpu).at_most"),
        (
            "mode: shadow,",
            "mode: shadow, screen_on: context,",
            "screen_on context needs requires_any",
        ),
    ],
)
def test_a_bad_weight_threshold_or_mode_is_refused(tmp_path, old, new, said):
    assert old in POLICY
    with pytest.raises(PolicyError) as caught:
        load_policy(write_policy(tmp_path, POLICY.replace(old, new, 1)))
    assert said in str(caught.value)


def explain(tmp_path, capsys, *args: str) -> str:
    from catalogue_purge.cli import main

    assert main(["explain", "--policy", str(write_policy(tmp_path)), *args]) == 0
    return capsys.readouterr().out


def test_explain_shows_the_decision_the_score_and_each_weight(tmp_path, capsys):
    said = explain(tmp_path, capsys, "--title", "terahash sha256 box")
    assert said.startswith("decision: review  score 7 (delist at 10, review at 5)")
    assert "+4 hashrate: 'terahash' in title" in said and "+3 algorithm: 'sha256'" in said
    # Below every threshold: the evidence is still shown, so an author sees what is missing.
    said = explain(
        tmp_path, capsys, "--title", "Antminer desk model", "--description", "non functional"
    )
    assert said.startswith("decision: none  score 2")
    assert "-8 novelty: 'non functional' in description" in said
    said = explain(tmp_path, capsys, "--title", "Antminer desk model", "--category", MINERS)
    assert "is suspended: delisted whatever the score (the text does not agree)" in said
    said = explain(tmp_path, capsys, "--title", "Antminer S19", "--category", MINERS)
    assert "(the text agrees)" in said
    assert (
        explain(tmp_path, capsys, "--title", "hashbox").count(
            "rules in shadow would make it: delist"
        )
        == 1
    )


def test_explain_options(tmp_path, capsys):
    import json

    document = json.loads(explain(tmp_path, capsys, "--title", "Antminer S19", "--json"))
    assert (document["decision"], document["score"]) == ("delist", 10)
    assert document["evidence"][0] | {"text": "antminer"} == document["evidence"][0]
    # A country outside the policy's scope: nothing applies.
    scoped = POLICY.replace(
        "prohibited_categories:", "scope: {countries: [DE]}\nprohibited_categories:"
    )
    (tmp_path / "scoped").mkdir()
    path = write_policy(tmp_path / "scoped", scoped)
    from catalogue_purge.cli import main

    assert main(["explain", "--policy", str(path), "--title", "Antminer", "--country", "fr"]) == 0
    assert "does not apply in FR" in capsys.readouterr().out
    # Exemptions by listing and by seller, counted on --as-of.
    path.with_name("scored.exemptions.yaml").write_text(
        "policy: scored\nexemptions:\n"
        "  - {id: EX-1, seller_id: S-9, rules: ['*'], reason: museum, granted_by: c-1,"
        " granted_at: 2021-10-01, expires: 2021-10-31}\n",
        encoding="utf-8",
    )
    base = ["explain", "--policy", str(path), "--title", "Antminer", "--country", "DE"]
    assert main([*base, "--seller-id", "S-9", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "exempted"
    assert main([*base, "--seller-id", "S-9", "--as-of", "2021-11-02", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "delist"  # expired by then
    assert main([*base, "--seller-id", "S-9", "--exemptions", str(tmp_path / "none.yaml")]) == 2
