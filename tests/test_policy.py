from __future__ import annotations

from pathlib import Path

import pytest

from catalogue_purge.detect.policy import exemptions_path, load_policy
from catalogue_purge.errors import PolicyError

from .conftest import SHIPPED_POLICY

MINIMAL = """\
id: test-policy
version: 1
title: Test
milestones: {delisting_from: 2021-10-08, penalties_from: 2021-10-15, time_zone: Asia/Shanghai}
prohibited_categories: [{path: A > B}]
rules:
  - id: miners
    description: miners
    action: delist
    terms: {en: [antminer]}
penalties: {ladder: [{id: warning, description: a warning}]}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    return str(caught.value)


def test_shipped_policy_covers_every_kind_of_the_ban(policy):
    doc = policy.document
    assert doc.id == "crypto-mining-2021"
    assert {c.path for c in doc.prohibited_categories} == {
        "Computer & Office > Blockchain Miners",
        "Consumer Electronics > Cryptocurrency Mining",
        "Digital Goods > Cryptocurrency",
    }
    languages = {lang for r in doc.rules for lang in r.terms}
    assert {"en", "zh-Hans", "zh-Hant", "ru", "es", "pt"} <= languages
    all_terms = {t for r in doc.rules for t in r.all_terms()}
    for term in (
        "antminer",
        "whatsminer",
        "apw12",
        "hashboard",
        "nicehash",
        "mining rig",
        "mining tutorial",
        "quark coin",
        "矿机",
        "礦機",
        "майнинг*",
    ):
        assert term in all_terms, term
    assert str(doc.milestones.delisting_from) == "2021-10-08"
    assert str(doc.milestones.penalties_from) == "2021-10-15"
    assert len(policy.sha256) == 64


def test_content_hash_identifies_the_exact_version(tmp_path):
    first = load_policy(write(tmp_path, MINIMAL, "a.yaml"))
    second = load_policy(write(tmp_path, MINIMAL.replace("title: Test", "title: Test 2"), "b.yaml"))
    assert first.sha256 != second.sha256
    assert load_policy(write(tmp_path, MINIMAL, "c.yaml")).sha256 == first.sha256


def test_unknown_key_names_file_key_and_valid_keys(tmp_path):
    message = problems(
        tmp_path, MINIMAL.replace("    action: delist", "    action: delist\n    severity: high")
    )
    assert "p.yaml" in message
    assert "rules[0] (id miners)" in message
    assert "unknown key 'severity'" in message
    assert "valid keys:" in message and "exclusions" in message


def test_empty_term_list(tmp_path):
    message = problems(tmp_path, MINIMAL.replace("terms: {en: [antminer]}", "terms: {en: []}"))
    assert "rules[0] (id miners).terms" in message
    assert "empty term list for language en" in message


def test_bad_date(tmp_path):
    message = problems(
        tmp_path, MINIMAL.replace("delisting_from: 2021-10-08", "delisting_from: 2021-13-08")
    )
    assert "milestones.delisting_from" in message


def test_invalid_regex(tmp_path):
    text = MINIMAL.replace("terms: {en: [antminer]}", "regexes: ['(unclosed']")
    message = problems(tmp_path, text)
    assert "invalid regex '(unclosed'" in message


def test_duplicate_rule_id(tmp_path):
    rule = MINIMAL.split("rules:\n")[1].split("penalties:", maxsplit=1)[0]
    message = problems(tmp_path, MINIMAL.replace(rule, rule + rule))
    assert "duplicate rule id 'miners'" in message


def test_duplicate_yaml_key_is_refused(tmp_path):
    message = problems(tmp_path, MINIMAL.replace("title: Test", "title: Test\ntitle: Other"))
    assert "duplicate key 'title'" in message


def test_unknown_rule_in_country_override(tmp_path):
    text = MINIMAL.replace(
        "prohibited_categories",
        "scope: {overrides: {CN: {add_rules: [nope]}}}\nprohibited_categories",
    )
    message = problems(tmp_path, text)
    assert "unknown rule 'nope'" in message and "miners" in message


def test_unknown_time_zone_and_order_of_milestones(tmp_path):
    assert "unknown time zone" in problems(
        tmp_path, MINIMAL.replace("Asia/Shanghai", "Mars/Olympus")
    )
    reversed_dates = MINIMAL.replace("penalties_from: 2021-10-15", "penalties_from: 2021-10-01")
    assert "penalties_from must not be before delisting_from" in problems(tmp_path, reversed_dates)


def test_not_yaml(tmp_path):
    assert "not valid YAML" in problems(tmp_path, "id: [unclosed")


def test_country_overrides_add_and_drop_rules(policy):
    assert "crypto-trading-services" not in {r.id for r in policy.rules_for("US")}
    assert "crypto-trading-services" in {r.id for r in policy.rules_for("CN")}


def test_exemptions_are_validated_against_the_policy(tmp_path):
    policy_path = write(tmp_path, MINIMAL)
    exemptions_path(policy_path).write_text(
        "policy: test-policy\nexemptions:\n"
        "  - {id: EX-1, listing_id: L-1, rules: [nope], reason: r, granted_by: a, granted_at: 2021-10-01, expires: 2021-12-01}\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_path)
    assert "unknown rule 'nope'" in str(caught.value)
    assert "p.exemptions.yaml" in str(caught.value)


def test_exemption_needs_exactly_one_subject(tmp_path):
    policy_path = write(tmp_path, MINIMAL)
    exemptions_path(policy_path).write_text(
        "policy: test-policy\nexemptions:\n"
        "  - {id: EX-1, rules: ['*'], reason: r, granted_by: a, granted_at: 2021-10-01, expires: 2021-12-01}\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError, match="exactly one of listing_id, seller_id"):
        load_policy(policy_path)


def test_shipped_policy_file_is_the_one_in_the_repository():
    assert SHIPPED_POLICY.is_file()
