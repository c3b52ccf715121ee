"""Policy regexes: run on an engine that cannot backtrack, with `^` and `$` at each field's ends
wherever the listing stands in a batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from catalogue_purge.detect.matcher import Matcher
from catalogue_purge.detect.policy import load_policy
from catalogue_purge.detect.sweep import match_listings
from catalogue_purge.errors import PolicyError

POLICY = """\
id: regex-policy
version: 1
title: t
milestones: {{delisting_from: 2021-10-08, penalties_from: 2021-10-15}}
rules:
  - id: pattern
    description: a policy regex
    action: delist
    regexes: [{regexes}]
penalties: {{ladder: [{{id: warning, description: w}}]}}
"""


def policy_file(tmp_path: Path, *regexes: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.format(regexes=", ".join(f"'{r}'" for r in regexes)), "utf-8")
    return path


def fired(matcher: Matcher, titles: list[str], descriptions: list[str] | None = None) -> list[bool]:
    """For each listing in one batch, whether the rule fired."""
    n = len(titles)
    listings = pa.table(
        {
            "listing_id": [f"L-{i}" for i in range(n)],
            "country_of_sale": ["US"] * n,
            "title": titles,
            "description": descriptions or [None] * n,
        },
        schema=pa.schema(
            [(name, pa.string()) for name in ("listing_id", "country_of_sale", "title")]
            + [("description", pa.string())]
        ),
    )
    found = set(match_listings(matcher, listings).column("listing_id").to_pylist())
    return [f"L-{i}" in found for i in range(n)]


def test_a_backtracking_regex_does_not_hang_the_sweep(tmp_path):
    # With Python's re, searching "(a+)+b" from the start of sixty a's and a "c" tries every
    # split of the a's (2^60) before it gets to the "ab" further on: the sweep never ends.
    path = policy_file(tmp_path, "(a+)+b")
    script = f"""
import pyarrow as pa
from catalogue_purge.detect.matcher import Matcher
from catalogue_purge.detect.policy import load_policy
matcher = Matcher(load_policy({str(path)!r}))
hits = matcher.match_hits(pa.array(["L-1"]), pa.array(["{"a" * 60}c ab"]), pa.array([None]))
print(hits.column("text").to_pylist())
"""
    # A hang is the failure: RE2 answers in well under a second on any machine.
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['ab']"


def test_anchors_are_the_ends_of_each_field_wherever_the_listing_is_in_the_batch(tmp_path):
    matcher = Matcher(load_policy(policy_file(tmp_path, "^asic miner", "s19 pro$")))
    titles = [
        "used power supply",
        "ASIC miner, used",  # starts with it: second in the batch
        "cheap asic miner",  # neither at the start nor at the end
        "hashboard for Antminer S19 Pro",  # ends with it
        "S19 Pro hashboard",
    ]
    assert fired(matcher, titles) == [False, True, False, True, False]
    # The description is a field of its own: its start is a start.
    both = fired(matcher, ["for sale", "for sale"], ["asic miner, never used", "an asic miner"])
    assert both == [True, False]


def test_a_nested_quantifier_before_the_end_fires(tmp_path):
    matcher = Matcher(load_policy(policy_file(tmp_path, "(?:hash ?)+$")))
    titles = ["board", "sha256 hash hash", "hash board", "hash"]
    assert fired(matcher, titles) == [False, True, False, True]


@pytest.mark.parametrize(
    ("regex", "says"),
    [
        (r"(miner)\1", "backreferences and lookaround are not available"),
        (r"(?<!toy )miner", "backreferences and lookaround are not available"),
        ("(?:miner)?", "it matches an empty text, so it would fire on every listing"),
        ("(unclosed", "missing )"),
        # Normalised text holds no accent, capital or "й": such a regex could never match.
        ("(?:bán|prodám) usdt", "it spells 'á', which the normalised text it runs on never holds"),
        ("майнинг", "write 'и'"),
        ("Bitcoin", "write 'b'"),
        # a virama or a tone mark is stripped with the accents; a vowel sign stays
        ("बिक्री", "it spells '\u094d'"),
    ],
)
def test_a_regex_the_engine_cannot_run_is_refused_with_its_reason(tmp_path, regex, says):
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_file(tmp_path, regex))
    message = str(caught.value)
    assert "rules[0]" in message and "invalid regex" in message
    assert says in message


def test_escapes_and_classes_are_not_read_as_letters(tmp_path):
    """An escape ("\\B", "\\D", "\\p{Lu}") and a group's name are not letters of the text."""
    matcher = Matcher(load_policy(policy_file(tmp_path, r"\bminer\B|\d\D\p{Lu}|(?P<Coin>btc)")))
    assert fired(matcher, ["a btc coin", "a coin"]) == [True, False]


def test_a_regex_too_large_for_hyperscan_to_compile_exactly_still_matches_exactly(tmp_path):
    """A long list of words after a gap is more than Hyperscan compiles exactly: it is compiled
    in prefilter mode (a superset of its matches), and RE2 finds the match itself."""
    import hyperscan

    from catalogue_purge.detect.matcher import _MATCH_FLAGS

    # The words of a rule of the shipped policy once, before it was split to compile exactly.
    words = (
        "units?|boards?|box|boxes|machines?|devices?|equipment|servers?|chips|rigs?|boitiers?|"
        "appareils?|unites?|cajas?|equipos?|maquinas?|unidad|unidades|dispositivos?|"
        "equipamentos?|caixas?|gerat|gerate|geraet|maschinen?|einheit|einheiten|macchin[ae]|"
        "scatola|cihaz|cihazi|makine|makinesi|kutu|kutusu|urzadzeni[ea]|jednostk[ai]|"
        "skrzynk[ai]|maszyn[ay]|perangkat|mesin|thiet bi|apparaat|zarizeni|jednotk[ay]|enhet|"
        "enheter|maskin|maskiner|устроиств[а-я]*|аппарат[а-я]*|блок[а-я]*|машин[а-я]*|плат[аыу]|"
        "пристр[а-я]*|установк[а-я]*"
    )
    power = r"(?:(?:\d \d{3}|\d{4}) ?(?:w|watt|watts|вт|ватт)|\d(?: \d)? ?(?:kw|квт))"
    regex = (
        r"(?:^|[^a-z0-9])(?:\d{1,2} \d{1,2}t|\d{2,3}t|\d{4,5}m)[^a-z0-9](?:.{0,60}?[^a-z0-9а-я])?"
        rf"(?:{power}(?:$|[^a-z0-9])|(?:{words})(?:$|[^a-z0-9а-я]))"
    )
    with pytest.raises(hyperscan.error, match="too large"):
        hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK).compile(
            expressions=[regex.encode()], flags=[_MATCH_FLAGS]
        )
    matcher = Matcher(load_policy(policy_file(tmp_path, regex)))
    titles = ["110T unit", "110T, quiet, 3250W", "unit box 3250W", "110T only", "блок 110T"]
    assert fired(matcher, titles) == [True, True, False, False, False]
