from __future__ import annotations

import pyarrow as pa
import pytest

from catalogue_purge.detect.matcher import Matcher
from catalogue_purge.detect.normalise import normalise, normalise_array
from catalogue_purge.detect.policy import load_policy
from catalogue_purge.detect.sweep import match_listings
from catalogue_purge.errors import PolicyError

from .evaluation.labelled import load_listings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＮＴＭＩＮＥＲ Ｓ１９", "antminer s19"),
        ("Antminer&nbsp;S19&amp;nbsp;Pro", "antminer s19 pro"),
        ("<b>ASIC</b><br>miner", "asic miner"),
        ("Minería de Bitcoin", "mineria de bitcoin"),
        ("A.n.t-miner", "ant miner"),  # single letters in a row are one word
        ("0,3 E.T.H", "0 3 eth"),
        ("P.O. Box", "p o box"),
        ("an\u200btminer", "antminer"),
        ("蚂蚁antminer矿机", "蚂蚁 antminer 矿机"),
        ("라이저 카드 6개 세트", "라이저 카드 6 개 세트"),  # Hangul stays composed
        ("マイニングガイド", "マイニングガイド"),  # kana keep their voicing marks
        ("Ёлка café", "елка cafe"),
        ("мaйнер б/у", "маинер б у"),  # a Latin "a" inside a Russian word: in Cyrillic
        ("мaйнep", "маинер"),  # as many Latin lookalikes as Cyrillic letters
        ("Вitcоin", "bitcoin"),  # Cyrillic lookalikes inside a Latin word: in Latin
        ("دستگاه S۱۹ ۱۱۰T", "دستگاه s19 110t"),  # digits of any script read as ASCII
        ("RTX ३०८० ٣٥٠٠W", "rtx 3080 3500w"),
        ("\u0243itcoin \u018aOGE", "bitcoin doge"),  # a stroke or a hook: the letter it looks like
        ("Łódź máy đào", "łodz may đao"),  # living alphabets keep their letters
        ("\u20bf0.01 fast", "btc 0 01 fast"),  # the Bitcoin sign
        ("बिटकॉइन बि-ट-कॉ-इ-न", "बिटकॉइन बिटकॉइन"),  # vowel signs are part of the word
        ("เครื่องขุด บิตคอยน์", "เครืองขด บิตคอยน์"),  # Thai tone marks go with the accents
        (None, ""),
    ],
)
def test_normalise(raw, expected):
    assert normalise(raw) == expected


def test_normalise_array_equals_normalise_row_by_row():
    # Plain ASCII rows take Arrow's kernels, the others normalise(): both must agree.
    texts = [
        "Antminer S19 Pro -- 110TH/s!!",
        "  GPU_rig (6x RTX 3080) ",
        "ＡＮＴＭＩＮＥＲ Ｓ１９",
        "Antminer&nbsp;S19",
        "<b>ASIC</b> miner",
        "Minería de Bitcoin",
        "蚂蚁antminer矿机",
        "Straße ΣΊΣΥΦΟΣ",
        "an\u200btminer",
        "",
        None,
        "...",
        "tab\tand\nnewline",
    ]
    assert normalise_array(pa.array(texts)).to_pylist() == [normalise(t) for t in texts]


def rules_fired(
    matcher: Matcher, title: str, description: str | None = None, country: str = "US"
) -> set[str]:
    listings = pa.table(
        {
            "listing_id": ["L-1"],
            "country_of_sale": [country],
            "title": [title],
            "description": [description],
        },
        schema=pa.schema(
            [
                ("listing_id", pa.string()),
                ("country_of_sale", pa.string()),
                ("title", pa.string()),
                ("description", pa.string()),
            ]
        ),
    )
    return acting(matcher, set(match_listings(matcher, listings).column("rule_id").to_pylist()))


def acting(matcher: Matcher, rule_ids: set[str]) -> set[str]:
    """The rules that can act on a listing (counter-evidence only weighs against others)."""
    weighs = {
        r.id: r.weight_in(matcher.policy.document.thresholds) for r in matcher.policy.document.rules
    }
    return {r for r in rule_ids if weighs[r] > 0}


@pytest.mark.parametrize(
    "title",
    [
        "A.n.t-miner S19 Pro",
        "Ant miner S 19 Pro 110TH/s",
        "ＡＮＴＭＩＮＥＲ Ｓ１９",
        "a n t m i n e r s19",
        "Antminer&nbsp;S19",
        "Bitmain ANTMINER",
    ],
)
def test_obfuscated_brand_is_caught(matcher, title):
    assert "asic-miner-brands" in rules_fired(matcher, title)


@pytest.mark.parametrize(
    ("title", "description"),
    [
        ("Coal mining drill bit 42mm", "For underground coal mining."),
        ("Minecraft diamond pickaxe foam toy", None),
        ("LED headlamp for miners, rechargeable", None),
        ("Bitcoin souvenir coin, gold plated, commemorative 1 BTC", None),
        ("Mastering Bitcoin 2nd edition (book)", None),
        ("RTX 3080 gaming graphics card, never used for mining", None),
        ("Dell 750W server power supply for PowerEdge R730", None),
        ("14k gold shell earrings", None),
    ],
)
def test_look_alikes_stay_listed(matcher, title, description):
    assert rules_fired(matcher, title, description) == set()


def test_country_override_adds_a_rule(matcher):
    title = "USDT OTC 承兑 代购比特币"
    assert "crypto-trading-services" in rules_fired(matcher, title, country="CN")
    assert "crypto-trading-services" not in rules_fired(matcher, title, country="US")


def test_requires_any_needs_context(matcher):
    assert "asic-model-numbers" not in rules_fired(matcher, "S19 router 4 ports")
    assert "asic-model-numbers" in rules_fired(matcher, "S19 95T SHA256 heater")


def _every_labelled_listing() -> list[dict]:
    from pathlib import Path

    from catalogue_purge.detect.evaluation import load_labelled

    folder = Path(__file__).parent / "evaluation"
    files = sorted(folder.glob("tune/*.jsonl")) + sorted(folder.glob("blind/*.jsonl"))
    return load_listings() + [r for f in files for r in load_labelled(f)]


def test_screen_lets_through_every_listing_the_rules_catch(matcher):
    """The screen must be a superset of what the precise match catches, or listings are missed:
    over every labelled listing (the invariant, not the labels, is checked on the blind split)."""
    rows = _every_labelled_listing()
    titles = [r["title"] for r in rows]
    descriptions = [r["description"] for r in rows]
    screened = matcher.screen_listings(pa.array(titles), pa.array(descriptions))
    listings = pa.table(
        {
            "listing_id": [r["listing_id"] for r in rows],
            "country_of_sale": [r.get("country_of_sale") or "US" for r in rows],
            "title": titles,
            "description": pa.array(descriptions, pa.string()),
        }
    )
    evidence = match_listings(matcher, listings).to_pylist()
    fired = {e["listing_id"] for e in evidence if acting(matcher, {e["rule_id"]})}
    caught = [r["listing_id"] in fired for r in rows]
    assert sum(caught) > 150
    missed = [rows[i]["listing_id"] for i, c in enumerate(caught) if c and not screened[i]]
    assert missed == []


def screen(matcher, texts, descriptions=None):
    titles = pa.array(texts) if not isinstance(texts, pa.Array) else texts
    if descriptions is None:
        descriptions = pa.nulls(len(titles), pa.string())
    return matcher.screen_listings(titles, descriptions).tolist()


def test_screen_on_sliced_and_null_arrays(matcher):
    column = pa.array(["nothing here", None, "Antminer S9", "plain", None])
    assert screen(matcher, column) == [False, False, True, False, False]
    assert screen(matcher, column.slice(2)) == [True, False, False]
    assert screen(matcher, pa.array([None, None], pa.string())) == [False, False]
    assert screen(matcher, ["plain", "plain"], pa.array([None, "antminer"], pa.large_string())) == [
        False,
        True,
    ]
    raw = pa.array(["Antminer\n", "plain\n"], pa.large_string())
    assert matcher.screen(raw).tolist() == [True, False]


def small_policy(policy_id: str, rules: str) -> str:
    """A policy of the given rules (YAML list items) and nothing else it does not need."""
    return (
        f"id: {policy_id}\nversion: 1\ntitle: t\n"
        "milestones: {delisting_from: 2021-10-08, penalties_from: 2021-10-15}\n"
        f"rules:\n{rules}penalties: {{ladder: [{{id: warning, description: w}}]}}\n"
    )


def write_small(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_terms_are_literals_not_code(tmp_path):
    text = small_policy(
        "injection",
        """\
  - id: quoted
    description: a term full of SQL and regex syntax
    action: delist
    terms: {en: ["O'Brien'); DROP TABLE listings;--", "a.b*c"]}
""",
    )
    matcher = Matcher(load_policy(write_small(tmp_path, text)))
    assert rules_fired(matcher, "sale: O'Brien'); DROP TABLE listings;-- today") == {"quoted"}
    assert rules_fired(matcher, "aXbbbc") == set()


def test_a_short_stem_is_screened_open_on_its_right(tmp_path):
    """ "rx6*" matches "rx6600": its screen anchor is a whole word on the left only, so the
    screen stays a superset of the precise match."""
    text = small_policy(
        "stems",
        """\
  - id: cards
    description: a card family by a short stem
    action: review
    terms: {en: ["rx6*", "rtx"]}
""",
    )
    matcher = Matcher(load_policy(write_small(tmp_path, text)))
    texts = ["RX6600 XT 8GB", "rx6 card", "PRX600", "RTX3060", "RTX 3060"]
    assert screen(matcher, texts) == [True, True, False, False, True]
    assert [rules_fired(matcher, t) for t in texts] == [
        {"cards"},
        {"cards"},
        set(),
        set(),
        {"cards"},
    ]


def test_a_digit_glued_to_a_short_term_keeps_it_out_and_an_amount_before_an_anchor_does_not(
    tmp_path,
):
    """A term's precise pattern starts at a word boundary, so "4XLM" in a SKU holds no term
    "xlm" and the screen does not let the row in for it; a policy regex may match right after
    an amount ("500xlm"), so its anchors still count there."""
    text = small_policy(
        "edges",
        """\
  - id: ticker-term
    description: a ticker as a term
    action: delist
    terms: {en: [btc]}
  - id: ticker-amount
    description: a ticker after an amount
    action: delist
    regexes: ['(?:^|[^a-z0-9])\\d+ ?xlm(?:$|[^a-z0-9])']
    anchors: [xlm]
""",
    )
    matcher = Matcher(load_policy(write_small(tmp_path, text)))
    texts = ["SKU IH4BTC-417", "sell 1 btc", "500xlm today", "SKU IH4XLM", "100 xlm"]
    assert screen(matcher, texts) == [False, True, True, True, True]
    assert [rules_fired(matcher, t) for t in texts] == [
        set(),
        {"ticker-term"},
        {"ticker-amount"},
        set(),
        {"ticker-amount"},
    ]


def test_a_regex_screened_by_its_context_matches_in_the_field_without_the_context(tmp_path):
    """A regex that the screens find by its rule's context terms can match in a field that
    holds none of them: that field is matched as well, not only the field the context is in."""
    text = small_policy(
        "context",
        """\
  - id: bare-rate
    description: a bare hashrate beside a coin
    action: delist
    regexes: ['(?:^|[^a-z0-9])\\d+ ?t(?:$|[^a-z0-9])']
    requires_any: [bitcoin]
""",
    )
    matcher = Matcher(load_policy(write_small(tmp_path, text)))
    listings = pa.table(
        {
            "listing_id": ["a", "b", "c"],
            "country_of_sale": ["US"] * 3,
            "title": ["Bitcoin box", "Plain box", "Bitcoin 110T box"],
            "description": ["runs at 110T all day", "runs at 110T", "quiet"],
        }
    )
    evidence = match_listings(matcher, listings)
    fired = set(
        zip(
            evidence.column("listing_id").to_pylist(),
            evidence.column("field").to_pylist(),
            strict=True,
        )
    )
    assert ("a", "description") in fired
    assert not any(listing == "b" for listing, _ in fired)
    assert ("c", "title") in fired


def test_a_rule_can_give_the_screen_its_own_regex(tmp_path):
    """`screen:` raw regexes the screen runs for a rule's regexes instead of deriving them; a
    screen without regexes, or beside anchors, is refused."""
    text = small_policy(
        "screened",
        """\
  - id: hashrate-and-power
    description: a hashrate and a power draw
    action: delist
    regexes: ['(?:^|[^a-z0-9])\\d{2,3}t [^ ]* ?\\d{4}w(?:$|[^a-z0-9])']
    screen: ['[0-9]t[^\\n]*[0-9]w']
""",
    )
    path = write_small(tmp_path, text)
    matcher = Matcher(load_policy(path))
    texts = ["Unit 110T box 3250W", "110T only", "3250W heater", "110T\n3250W"]
    assert screen(matcher, texts) == [True, False, False, False]
    assert rules_fired(matcher, texts[0]) == {"hashrate-and-power"}
    assert matcher._screen_patterns_list.count(b"[0-9]t[^\\n]*[0-9]w") == 1
    for broken, said in (
        (
            text.replace(
                "    regexes: ['(?:^|[^a-z0-9])\\d{2,3}t [^ ]* ?\\d{4}w(?:$|[^a-z0-9])']\n",
                "    terms: {en: [unit]}\n",
            ),
            "has a screen but no regexes",
        ),
        (
            text.replace("    screen:", "    anchors: [w]\n    screen:"),
            "anchors or a screen, not both",
        ),
    ):
        path.write_text(broken, encoding="utf-8")
        with pytest.raises(PolicyError) as caught:
            load_policy(path)
        assert said in str(caught.value)


def test_a_screen_item_can_need_all_of_its_regexes_in_one_row(tmp_path):
    """`{all: [a, b]}` lets a row in only when both regexes are found in it, in any order and
    either field; a row holding one is let in by another rule's anchor only. The other regexes
    are looked for only in the rows the first let in, by a database of their own."""
    text = small_policy(
        "conjunction",
        """\
  - id: hashrate-beside-power
    description: a hashrate beside a power draw or a unit word
    action: review
    regexes: ['(?:^|[^a-z0-9])\\d{2,3}t .*\\d{4}w', '(?:^|[^a-z0-9])\\d{2,3}t units?']
    screen:
      - all: ['[0-9]t[^a-z0-9]', '[0-9]{4} ?w']
      - all: ['[0-9]t[^a-z0-9]', 'units?']
  - id: brands
    description: a brand
    action: delist
    terms: {en: [antminer]}
""",
    )
    matcher = Matcher(load_policy(write_small(tmp_path, text)))
    titles = [
        "110T box 3250W",  # both regexes of the first
        "3250W, 110T",  # in the other order
        "110T only",  # the first regex alone
        "3250W heater",  # the second alone
        "110T units",  # the second conjunction
        "Antminer 3250W",  # another rule's anchor
        "110T",  # the first in the title, the second in the description
        "Unit 3250W",  # the others without the first
    ]
    descriptions = pa.array([None] * 6 + ["3250W", "no hashrate"], pa.string())
    assert screen(matcher, titles, descriptions) == [
        True, True, False, False, True, True, True, False,
    ]  # fmt: skip
    assert rules_fired(matcher, titles[0]) == {"hashrate-beside-power"}
    assert rules_fired(matcher, titles[4]) == {"hashrate-beside-power"}
    assert matcher._screen_patterns_list.count(b"[0-9]t[^a-z0-9]") == 2
    assert b"[0-9]{4} ?w" not in matcher._screen_patterns_list
    # A conjunction of one regex is refused: it is a plain screen regex.
    path = write_small(tmp_path, text.replace("'[0-9]t[^a-z0-9]', 'units?'", "'units?'"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "at least 2 items" in str(caught.value)


def test_the_screen_drops_literals_that_hold_another_and_lets_the_same_rows_through(policy):
    """A literal anchor that contains another ("bitcoin miner" holds "bitcoin") changes nothing
    the screen lets through: the screen keeps the shorter one only."""
    from catalogue_purge.detect import matcher as module

    literals = [b"bitcoin", b"Bitcoin Miner", b"antminer s19", b"miner", b"asic"]
    assert module._without_redundant(literals) == [b"bitcoin", b"miner", b"asic"]
    assert module._without_redundant([b"only"]) == [b"only"]
    everything = module._without_redundant
    try:
        module._without_redundant = lambda found: found
        unreduced = Matcher(policy)
    finally:
        module._without_redundant = everything
    reduced = Matcher(policy)
    assert reduced.screen_pattern_count < unreduced.screen_pattern_count * 0.75
    rows = _every_labelled_listing()
    titles = pa.array([r["title"] for r in rows])
    descriptions = pa.array([r["description"] for r in rows], pa.string())
    assert (
        reduced.screen_listings(titles, descriptions).tolist()
        == unreduced.screen_listings(titles, descriptions).tolist()
    )


def test_short_anchors_count_as_whole_words_at_row_edges(matcher):
    # Rows lie back to back in the Arrow buffer: a short anchor opening or closing a row has
    # the neighbouring row beside it, unless something keeps them apart.
    texts = ["BTC 0.01 fast", "sold for 1 ltc", "method", "eth", "4ETH2K", "110TH/s", "s9"]
    assert screen(matcher, texts) == [True, True, False, True, False, True, True]
    assert screen(matcher, pa.array(texts).slice(1, 3)) == [True, False, True]
    assert screen(matcher, ["plain", "plain"], pa.array(["x btc", "ETH first"])) == [True, True]


@pytest.mark.parametrize(
    "text",
    [
        "ＡＮＴＭＩＮＥＲ",
        "ｓ１９ heater",
        "Ant\u200bminer",
        "Bit\u00adcoin",
        "&#65;ntminer",
        "&#x41;nt",
        "Mine\u0301ria",
        "Майн\u0438\u0306нг",
        "\u0410ntminer",  # Cyrillic А
        "B\u0456tcoin miner",  # Ukrainian і
        "W\u04bbatsminer",  # Cyrillic һ
        "\u0391SIC miner",  # Greek Α
        "minera\u00c3\u00a7\u00c3\u00a3o de bitcoin",  # mojibake of mineração
        "\u00d0\u00bc\u00d0\u00b0\u00d0\u00b9\u00d0\u00bd\u00d0\u00b5\u00d1\u0080",  # of майнер
        "\u0243itcoin",  # B with stroke
        "hashboard \u018aogecoin",  # D with hook
        "\u20bf-Gutschein",  # the Bitcoin sign
        "बि-ट-कॉ-इ-न 0.001",  # Devanagari letters split by hyphens
    ],
)
def test_detectors_let_disguised_text_through(matcher, text):
    assert screen(matcher, [text]) == [True]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("\u0410ntminer S19 Pro", "asic-miner-brands"),
        ("B\u0456tcoin miner for sale", "asic-miner-brands"),
        ("W\u04bbatsminer M30S++", "asic-miner-brands"),
        ("Whatsmi\u019eer M30S++", "asic-miner-brands"),  # n with a long right leg
        ("minera\u00c3\u00a7\u00c3\u00a3o de bitcoin em casa", "mining-activity"),
    ],
)
def test_homoglyphs_and_mojibake_are_seen_through_and_screened_in(matcher, text, rule):
    """What the precise stage sees through, the screen lets through: it stays a superset."""
    assert rule in rules_fired(matcher, text)
    assert screen(matcher, [text]) == [True]


def test_words_wholly_in_another_script_are_not_folded():
    from catalogue_purge.detect.normalise import normalise

    # Russian words stay Russian (their letters look Latin, they are not disguises); a word of
    # mostly Cyrillic letters with a model number stays as it is too.
    assert normalise("Сор и пыль") == "сор и пыль"
    assert normalise("RTX3060видеокарта") == "rtx3060видеокарта"
    assert normalise("\u0410ntminer") == "antminer"
    assert normalise("caf\u00e9 cr\u00e8me") == "cafe creme"  # accented Latin is not mojibake


def test_chinese_punctuation_is_not_a_detector(matcher):
    assert screen(matcher, ["全新正品，包邮。（现货）：颜色以实物为准！"]) == [False]


def test_match_hits_with_no_rows_and_with_empty_fields(matcher):
    none = matcher.match_hits(
        pa.array([], pa.string()), pa.array([], pa.string()), pa.array([], pa.string())
    )
    assert none.num_rows == 0
    hits = matcher.match_hits(
        pa.array(["L-1", "L-2", "L-3"]),
        pa.array(["Antminer S19 Pro", None, ""]),
        pa.array([None, "Ant miner S19 for sale", None]),
    )
    found = {(r["listing_id"], r["field"]) for r in hits.to_pylist()}
    assert found == {("L-1", "title"), ("L-2", "description")}


def test_every_text_normalisation_repairs_or_folds_is_screened_in(matcher):
    """The screen stays a superset of the precise stage: each mojibake pair ftfy may be given
    and each homoglyph the folding may touch lets its row through."""
    from catalogue_purge.detect.normalise import (
        MOJIBAKE_PUNCTUATION,
        _confusable_to_latin,
        latin_lookalikes,
    )

    followers = [chr(c) for c in range(0x80, 0xC0)] + list(MOJIBAKE_PUNCTUATION)
    mojibake = [f"plain \u00e3{f}o text" for f in followers]
    assert all(screen(matcher, mojibake))
    homoglyphs = [chr(code) for code in _confusable_to_latin()]
    assert len(homoglyphs) > 100
    assert all(screen(matcher, [f"ab{h}cd" for h in homoglyphs]))
    assert all(screen(matcher, [f"{h}bcd" for h in homoglyphs]))
    # Latin letters with a stroke or a hook that the folding reads as ASCII ones ("Ƀitcoin")
    lookalikes = [chr(code) for code in latin_lookalikes()]
    assert len(lookalikes) > 40
    assert all(screen(matcher, [f"ab{h}cd" for h in lookalikes]))
    assert all(screen(matcher, [f"{h}bcd" for h in lookalikes]))
    assert all(screen(matcher, [f"{h}1cd" for h in lookalikes]))  # a leet digit beside it
    assert all(normalise(f"{h}bcd").isascii() for h in lookalikes)
    # A digit of another script beside a Latin letter or digit: "S۱۹" reads "s19".
    assert screen(matcher, ["دستگاه S۱۹", "RTX ३०८०", "x ๑๙", "٣٥ تومان"]) == [
        True,
        True,
        True,
        False,
    ]


def _answers(matcher: Matcher) -> list:
    rows = load_listings()[:120]
    ids = pa.array([r["listing_id"] for r in rows])
    titles = pa.array([r["title"] for r in rows])
    descriptions = pa.array([r["description"] for r in rows])
    return sorted(matcher.match_hits(ids, titles, descriptions).to_pylist(), key=repr)


def test_compiled_databases_are_cached_on_disk_and_a_bad_file_is_compiled_again(
    policy, matcher, tmp_path, monkeypatch
):
    from catalogue_purge.detect.matcher import CACHE_ENVIRONMENT

    monkeypatch.setenv(CACHE_ENVIRONMENT, str(tmp_path / "cache"))
    expected = _answers(matcher)
    first = Matcher(policy)
    # The largest first: the conjunctions' database is too small to truncate to 1,000 bytes.
    files = sorted((tmp_path / "cache").glob("hs-*.db"), key=lambda f: -f.stat().st_size)
    assert len(files) == 5  # screen, its conjunctions, field, literal and regex databases
    stamps = {f: f.stat().st_mtime_ns for f in files}
    loaded = Matcher(policy)  # from the files: none is written again
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    assert _answers(first) == _answers(loaded) == expected

    files[0].write_bytes(files[0].read_bytes()[:1000])  # truncated
    files[1].write_bytes(files[1].read_bytes()[:-1] + b"?")  # one byte altered
    again = Matcher(policy)
    assert _answers(again) == expected
    assert all(f.stat().st_size > 1000 for f in files[:2])  # replaced whole
    assert Matcher(policy)._screen_db is not None


def test_the_database_cache_can_be_turned_off_and_an_unwritable_one_is_skipped(
    policy, matcher, tmp_path, monkeypatch
):
    from catalogue_purge.detect.matcher import CACHE_ENVIRONMENT

    monkeypatch.setenv(CACHE_ENVIRONMENT, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _answers(Matcher(policy)) == _answers(matcher)
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(CACHE_ENVIRONMENT, str(blocker / "cache"))
    assert _answers(Matcher(policy)) == _answers(matcher)
    assert blocker.read_text() == "not a directory"
