"""The policy's text rules, compiled into Hyperscan databases.

Scanning hundreds of terms over every listing is the sweep's hot path. It runs in two stages:

1. Screen: one multi-literal Hyperscan database scans the raw UTF-8 bytes of a whole Arrow
   column at once (the column's data buffer, no copy per row), case-insensitively. Its anchors
   are a superset of what the rules can match: each term as written and without accents, its
   spaced, split and leet spellings, and detectors for text that normalisation changes beyond
   recognition (full-width forms, zero-width characters, numeric entities, combining accents).
   A row without a hit cannot match any rule. Short anchors ("btc", "l7") count only as whole
   words, which the newline ending each row makes checkable in the concatenated buffer.
2. Match: only the screened rows are normalised (normalise.py); a literal database finds the
   terms in them with the spaces squeezed out, and each candidate term is confirmed by its
   precise pattern (word boundaries, optional spaces between characters, leet classes). The
   hits go to DuckDB, where sql/fire_rules.sql decides which rules fire.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import platform
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, cast

import ahocorasick
import hyperscan
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogue_purge.detect.normalise import (
    MOJIBAKE_PUNCTUATION,
    latin_lookalikes,
    normalise,
    normalise_array,
    strip_accents,
)
from catalogue_purge.detect.policy import (
    Field_,
    Mode,
    Policy,
    ScreenAll,
    TextRule,
    compile_regex,
)
from catalogue_purge.errors import PolicyError

# Caseless in bytes only: non-ASCII anchors carry their own case variants (UTF-8 caseless
# compilation of thousands of literals takes seconds).
_SCREEN_FLAGS = hyperscan.HS_FLAG_CASELESS
# Policy regexes over the normalised rows, one row per line: `^` and `$` are each field's ends.
# Hyperscan proposes the rows and RE2 finds the match in each: a regex too large to compile
# exactly is compiled in prefilter mode (a superset of its matches, see _compile).
_MATCH_FLAGS = hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_MULTILINE
_SPACED_SEPARATORS = (" ", ".", "-", "_", "*")
_SPLIT_SEPARATORS = (" ", ".", "-", "_")
_WORD_JOINERS = (" ", "-", "_", ".", "", "/", "+", "&nbsp;", "  ")
# Model numbers are also written "ver. 009S", "S19 / L7": for terms with a digit.
_NUMBER_JOINERS = (". ", ", ", ": ", " - ", " / ", "- ")
_LEET = {"a": "a4@", "e": "e3", "i": "i1l", "o": "o0", "s": "s5$", "t": "t7", "b": "b8"}
# A decimal digit of the Arabic-Indic, Persian, Devanagari, Bengali or Thai script, in UTF-8.
_OTHER_DIGIT = (
    rb"(?:\xd9[\xa0-\xa9]|\xdb[\xb0-\xb9]|\xe0\xa5[\xa6-\xaf]|\xe0\xa7[\xa6-\xaf]"
    rb"|\xe0\xb9[\x90-\x99])"
)
# Text that normalisation changes beyond what the literal anchors can see: such rows are always
# normalised and matched precisely. Full-width letters and digits (not the full-width
# punctuation every Chinese text has), zero-width and invisible characters, soft hyphen,
# numeric character references, and combining accents after a letter. Each is spelled as
# literals of three bytes or more where it can be: Hyperscan's literal matcher slows down on
# two-byte literals and byte classes that Chinese or Latin-1 text hits all the time.
_DETECTORS = (
    *(b"\\xef\\xbc\\x%02x" % c for c in [*range(0x90, 0x9A), *range(0xA1, 0xBB)]),
    *(b"\\xef\\xbd\\x%02x" % c for c in range(0x81, 0x9B)),
    rb"\xe2\x80\x8b",
    rb"\xe2\x80\x8c",
    rb"\xe2\x80\x8d",
    rb"\xe2\x81\xa0",
    rb"\xef\xbb\xbf",
    rb"[a-z\x80-\xbf]\xc2\xad",
    *(b"&#%d" % d for d in range(10)),
    b"&#x",
    rb"[a-z\x80-\xbf](?:\xcc[\x80-\xbf]|\xcd[\x80-\xaf])",
    # A Greek, Cyrillic or Armenian letter (U+0370-U+058F, normalise.HOMOGLYPH_SCRIPTS) beside
    # a Latin one: a homoglyph in a Latin word.
    rb"[a-z](?:\xcd[\xb0-\xbf]|[\xce-\xd6][\x80-\xbf])",
    rb"(?:\xcd[\xb0-\xbf]|[\xce-\xd6][\x80-\xbf])[a-z]",
    # Single Greek or Cyrillic letters, or kana, spaced out ("м а й н і н г"): normalise joins
    # such runs into one word, which no anchor spells.
    rb"(?:^|[ ._-])(?:[\xce-\xd3][\x80-\xbf][ ._-]){2}[\xce-\xd3][\x80-\xbf](?:$|[ ._-])",
    rb"(?:^|[ ._-])(?:\xe3[\x82\x83][\x80-\xbf][ ._-]){2}\xe3[\x82\x83][\x80-\xbf](?:$|[ ._-])",
    # Letters of Devanagari, Bengali or Thai (each with its vowel signs) split by dots or hyphens
    # ("बि-ट-कॉ-इ-न"); a space between short words is how those languages are written.
    rb"(?:\xe0[\xa4-\xa7\xb8\xb9][\x80-\xbf]){1,3}[._-](?:\xe0[\xa4-\xa7\xb8\xb9][\x80-\xbf]){1,3}"
    rb"[._-](?:\xe0[\xa4-\xa7\xb8\xb9][\x80-\xbf]){1,3}",
    # A digit of another script (Arabic-Indic, Persian, Devanagari, Bengali, Thai) beside a
    # Latin letter or digit ("S۱۹", "RTX ۳۰۸۰"): normalise reads it as an ASCII digit.
    rb"[a-z0-9][ .-]?" + _OTHER_DIGIT,
    _OTHER_DIGIT + rb"[ .-]?[a-z]",
    # Mojibake: a letter of U+00C0-U+00FF followed by a character of U+0080-U+00BF or by the
    # punctuation cp1252 puts at 0x80-0x9F (normalise.repair_mojibake).
    rb"\xc3[\x80-\xbf]\xc2[\x80-\xbf]",
    *(
        rb"\xc3[\x80-\xbf]" + "".join(f"\\x{b:02x}" for b in c.encode()).encode()
        for c in MOJIBAKE_PUNCTUATION
    ),
)


def _utf8_alternation(chars: Sequence[str]) -> bytes:
    """A byte pattern for any of the characters (two bytes each in UTF-8), by lead byte."""
    by_lead: dict[int, list[int]] = defaultdict(list)
    for c in sorted(set(chars)):
        lead, last = c.encode()
        by_lead[lead].append(last)
    return (
        b"(?:"
        + b"|".join(
            b"\\x%02x[" % lead + b"".join(b"\\x%02x" % b for b in lasts) + b"]"
            for lead, lasts in by_lead.items()
        )
        + b")"
    )


# A Latin letter with a stroke or a hook ("Ƀitcoin", "Ƀ1tcoin") beside an ASCII one: normalise
# folds it to the letter it looks like (normalise.latin_lookalikes).
_LOOKALIKE = _utf8_alternation([chr(c) for c in latin_lookalikes()])
_DETECTORS += (rb"[a-z0-9]" + _LOOKALIKE, _LOOKALIKE + rb"[a-z0-9]", rb"\xe2\x82\xbf")  # "₿": btc
_ALNUM_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_WORD_CHARS = "a-z0-9\u00df-\u024f\u0370-\u03ff\u0400-\u04ff"


class Role(IntEnum):
    TERM = 0
    CONTEXT = 1
    EXCLUSION = 2
    REGEX = 3


# A regex is a term for the decision: it fires its rule.
_ROLE_NAMES = {
    Role.TERM: "term",
    Role.CONTEXT: "context",
    Role.EXCLUSION: "exclusion",
    Role.REGEX: "term",
}
HITS_SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("pattern_id", pa.int32()),
        ("field", pa.string()),
        ("text", pa.string()),
    ]
)
PATTERNS_SCHEMA = pa.schema(
    [
        ("pattern_id", pa.int32()),
        ("rule_id", pa.string()),
        ("role", pa.string()),
        ("term", pa.string()),
        ("in_title", pa.bool_()),
        ("in_description", pa.bool_()),
    ]
)
RULE_SCOPE_SCHEMA = pa.schema(
    [
        ("country", pa.string()),
        ("rule_id", pa.string()),
        ("weight", pa.float64()),
        ("shadow", pa.bool_()),
        ("caps", pa.bool_()),
        ("requires_context", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class Pattern:
    rule_id: str
    role: Role
    term: str


def _escape_bytes(literal: bytes) -> bytes:
    """A Hyperscan pattern matching the literal bytes exactly."""
    out = bytearray()
    for c in literal:
        if 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c >= 128:
            out.append(c)
        else:
            out += b"\\x%02x" % c
    return bytes(out)


def _split_stem(term: str) -> tuple[str, bool]:
    """'miner*' is a stem: it matches 'miners', 'mineros'. Returns (text, is_stem)."""
    if term.endswith("*"):
        return term[:-1], True
    return term, False


def _leet_variants(word: str) -> set[str]:
    positions = [i for i, c in enumerate(word) if c in _LEET]
    variants: set[str] = set()
    if not positions or len(word) < 5:
        return variants
    for i in positions:
        for sub in _LEET[word[i]][1:]:
            variants.add(word[:i] + sub + word[i + 1 :])
    if len(positions) <= 4:
        choices = [_LEET[c] if i in positions else c for i, c in enumerate(word)]
        variants.update("".join(p) for p in itertools.product(*choices))
    variants.discard(word)
    return variants


def _case_forms(text: str) -> set[str]:
    return {text.lower(), text.upper(), text.capitalize(), text.title()}


def _alnum_chunks(word: str) -> list[str]:
    """'s19pro' -> ['s', '19', 'pro']: sellers space model numbers at letter/digit edges."""
    return re.findall(r"[^\W\d_]+|\d+", word)


def _word_anchors(word: str, spellings: bool = True) -> set[str]:
    """A one-word term: as written, spaced out, split once, spaced at letter/digit edges, leet.
    Without `spellings`, not split: as written, spaced out (normalise() joins the letters
    again) and leet, the forms a policy regex, matched on normalised text, can find as one
    word (a regex may spell leet classes, "b[i1l]tc[o0]in")."""
    anchors = {word}
    if not (word.isascii() and word.isalnum()):
        return anchors
    compact = word.lower()
    if len(compact) >= 3:  # normalise() joins three or more single letters: "E.T.H" is eth
        anchors |= {sep.join(compact) for sep in _SPACED_SEPARATORS}
    if not spellings:
        return anchors | _leet_variants(compact)
    if len(compact) >= 5:
        anchors |= {
            compact[:k] + sep + compact[k:]
            for k in range(2, len(compact) - 1)
            for sep in _SPLIT_SEPARATORS
        }
    chunks = _alnum_chunks(compact)
    if len(chunks) > 1:
        anchors |= {sep.join(chunks) for sep in _SPLIT_SEPARATORS}
    leet = _leet_variants(compact)
    # leet spellings split once by a space ("h1ve 0s")
    anchors |= {v[:k] + " " + v[k:] for v in leet for k in range(2, len(v) - 1)}
    return anchors | leet


_STEM_MARK = b"\x00"  # after a short anchor of a stem: a whole word on its left only
# Before a short anchor that an amount may touch on its left ("500xlm"): the anchor of a policy
# regex, which may match there. A term's precise pattern never does (its left edge is a word
# boundary, and a digit is a word character), so a term's short anchor needs a letter or digit
# on neither side: "IH4XLM" in a SKU holds no term "xlm".
_AMOUNT_MARK = b"\x01"


def screen_anchors(term: str, spellings: bool = True) -> list[bytes]:
    """Literals (raw UTF-8) that any spelling of the term contains. A short anchor of a stem
    ("rx6*" matches "rx6600") ends in _STEM_MARK: its right edge is open. Without `spellings`
    (a policy regex's anchor, which the normalised text holds as one word), no split spellings."""
    text, stem = _split_stem(term)
    anchors = _term_anchors(text, spellings)
    if stem:
        return [a + _STEM_MARK if is_short_anchor(a) and a[-1:].isalnum() else a for a in anchors]
    return anchors


def _term_anchors(text: str, spellings: bool = True) -> list[bytes]:
    forms = {text.strip(), strip_accents(text.strip()), normalise(text)}
    # The screen is caseless for ASCII only: non-ASCII words bring their own case forms.
    forms |= {f for form in list(forms) if not form.isascii() for f in _case_forms(form)}
    anchors: set[str] = set()
    for form in forms:
        words = form.split()
        if len(words) == 1:
            anchors |= _word_anchors(words[0], spellings)
        elif words:
            # Multi-word terms: the words joined the ways sellers and exports join them.
            joiners: tuple[str, ...] = _WORD_JOINERS
            if any(c.isdigit() for c in form):
                joiners += _NUMBER_JOINERS
            anchors |= {joiner.join(words) for joiner in joiners}
            if all(w.isascii() for w in words):
                anchors.add(" ".join(itertools.chain(*map(_alnum_chunks, words))))
    return sorted(a.encode() for a in anchors)


def _screen_patterns(anchors: list[bytes], regexes: list[bytes]) -> list[bytes]:
    """Hyperscan patterns for raw literals and regexes, plus the detectors."""
    words: list[bytes] = []
    long: list[bytes] = []
    for a in dict.fromkeys(anchors):
        (words if a.startswith(_AMOUNT_MARK) or is_short_anchor(a) else long).append(a)
    literals = _without_redundant(long)
    return [
        *(_escape_bytes(a) for a in literals),
        *dict.fromkeys(regexes),
        *_DETECTORS,
        *dict.fromkeys(_short_anchor_pattern(a) for a in words),
    ]


def _short_anchor_pattern(anchor: bytes) -> bytes:
    amount = anchor.startswith(_AMOUNT_MARK)
    anchor = anchor.removeprefix(_AMOUNT_MARK)
    if anchor.endswith(_STEM_MARK):
        return _word_pattern(anchor[: -len(_STEM_MARK)], right_edge=False, after_amount=amount)
    return _word_pattern(anchor, after_amount=amount)


def amount_may_precede(anchors: list[bytes]) -> list[bytes]:
    """A policy regex's anchors: the short ones marked to count after an amount as well."""
    return [_AMOUNT_MARK + a if is_short_anchor(a.removesuffix(_STEM_MARK)) else a for a in anchors]


def _without_redundant(literals: list[bytes]) -> list[bytes]:
    """The literals but those that contain another one (ASCII-caseless, as the screen matches):
    a row holding "bitcoin miner" holds "bitcoin", so the longer literal never changes what the
    screen lets through, and about half the anchors of a policy are such. One Aho-Corasick
    automaton over the literals finds, in each, the others it holds."""
    if len(literals) < 2:
        return literals
    # bytes.lower() folds ASCII letters only, as the screen does; Latin-1 maps bytes 1:1.
    folded = [a.lower().decode("latin-1") for a in literals]
    automaton = ahocorasick.Automaton(ahocorasick.STORE_LENGTH)
    for key in set(folded):
        automaton.add_word(key)
    automaton.make_automaton()
    return [
        literal
        for literal, key in zip(literals, folded, strict=True)
        if not any(length < len(key) for _, length in automaton.iter(key))
    ]


def _word_pattern(anchor: bytes, right_edge: bool = True, after_amount: bool = False) -> bytes:
    """A short anchor as a whole word inside a row: a separator on each side, except that an
    amount may come right before the anchor of a policy regex (`after_amount`: "110th/s",
    "0.5eth"). "method" holds no "eth", and neither does the SKU "4ETH2K"."""
    left = rb"(?:^|[^a-z])" if after_amount and anchor[:1].isalpha() else rb"(?:^|[^a-z0-9])"
    if not anchor[:1].isalnum():
        left = b""
    return left + _escape_bytes(anchor) + (_right_edge(anchor) if right_edge else b"")


def _right_edge(anchor: bytes) -> bytes:
    return rb"[^a-z0-9]" if anchor[-1:].isalnum() else b""


def is_short_anchor(anchor: bytes) -> bool:
    """Anchors with three letters or digits at most ("btc", "l7", "s 19") only count as whole
    words, or they would screen in every SKU; the word edges are checked after the scan (rows
    are back to back in the buffer, so a pattern's own \\b would see the neighbouring row)."""
    return anchor.isascii() and sum(c in _ALNUM_BYTES for c in anchor) <= 3


def _char_class(c: str) -> str:
    if c in _LEET:
        return "[" + "".join(re.escape(x) for x in _LEET[c]) + "]"
    return re.escape(c)


def precise_pattern(term: str) -> str:
    """The pattern matched against normalised text.

    Spellings allowed: the term as written, with its spaces optional and a space allowed where
    letters meet digits ("s19 pro", "s 19pro"); every character spaced out ("m i n e r"); and,
    for terms of six letters or more, a space anywhere ("a n t miner", "bit coin"). ASCII
    letters of long terms also match their leet digits ("b1tcoin"). The ends are word
    boundaries unless the end is Han/Kana/Hangul or the term is a stem ("miner*").
    """
    text, stem = _split_stem(term)
    norm = normalise(text)
    if not norm:
        raise ValueError(f"term {term!r} is empty once normalised")
    compact = norm.replace(" ", "")
    leet = len(compact) >= 5

    def cls(c: str) -> str:
        return _char_class(c) if leet and c.isascii() else re.escape(c)

    def edged(word: str) -> str:
        out = ""
        for i, c in enumerate(word):
            if i and word[i - 1].isdigit() != c.isdigit() and word[i - 1].isalnum() and c.isalnum():
                out += " ?"
            out += cls(c)
        return out

    words = norm.split(" ")
    variants = [" ?".join(edged(w) for w in words)]
    if len(compact) >= 6:
        # Long terms are distinctive enough to allow a space anywhere ("a n t miner").
        variants.append(" ?".join(cls(c) for c in compact))
    elif len(compact) >= 4:
        variants.append(" ".join(cls(c) for c in compact))
    body = "(?:" + "|".join(dict.fromkeys(variants)) + ")"
    left = rf"(?<![{_WORD_CHARS}])" if re.match(rf"[{_WORD_CHARS}]", norm[0]) else ""
    right = (
        "" if stem else (rf"(?![{_WORD_CHARS}])" if re.match(rf"[{_WORD_CHARS}]", norm[-1]) else "")
    )
    return left + body + right


class Matcher:
    """A policy's text rules, compiled. Thread-safe: each thread gets its own scratch space."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.patterns: list[Pattern] = []
        self._sources: list[str] = []  # each pattern's precise regex
        self._is_policy_regex: list[bool] = []  # written by a policy author: run on RE2
        anchors: list[bytes] = []  # raw literals of the terms: the screen
        other_anchors: list[bytes] = []  # of context and exclusion terms
        screen_regexes: list[bytes] = []
        conjunctions: list[list[bytes]] = []  # screen items that need all their regexes
        literals: dict[bytes, set[int]] = defaultdict(set)  # compact literal -> pattern indexes
        policy_regexes: list[int] = []
        thresholds = policy.document.thresholds
        for rule in policy.document.rules:
            # A rule that cannot act on a listing by itself (counter-evidence, a cap of no
            # weight) is not screened for: its terms only count where another rule's are found.
            acts = rule.weight_in(thresholds) > 0
            by_context = rule.screen_on == "context"
            for role, terms in (
                (Role.TERM, rule.all_terms()),
                (Role.CONTEXT, rule.requires_any),
                (Role.EXCLUSION, rule.exclusions),
            ):
                for term in terms:
                    index = self._add(rule, role, term, precise_pattern)
                    for literal in compact_literals(term):
                        literals[literal].add(index)
                    screened = acts and (role is Role.CONTEXT if by_context else role is Role.TERM)
                    (anchors if screened else other_anchors).extend(screen_anchors(term))
            # The policy's own screen for the rule's regexes, run as written.
            for item in rule.screen:
                if isinstance(item, ScreenAll):
                    conjunctions.append([r.encode() for r in item.all])
                else:
                    screen_regexes.append(item.encode())
            for regex in rule.regexes:
                policy_regexes.append(self._add(rule, Role.REGEX, regex, lambda r: r))
                if rule.screen:
                    continue  # screened by the rule's own screen, above
                if rule.anchors:
                    # Literals that every match of the rule's regexes contains: a literal
                    # screen runs several times faster than the regexes themselves.
                    anchors.extend(
                        amount_may_precede(
                            [a for t in rule.anchors for a in screen_anchors(t, spellings=False)]
                        )
                    )
                elif rule.requires_any:
                    # A regex that needs context is screened by its context terms: a bare
                    # "110t" is too common to screen on, "sha256" is not.
                    anchors.extend(a for t in rule.requires_any for a in screen_anchors(t))
                else:
                    screen_regexes.append(_screen_regex(regex))
        self._build_screens(anchors, other_anchors, screen_regexes, conjunctions)
        self._literal_keys = list(literals)
        targets = [sorted(literals[k]) for k in self._literal_keys]
        # The patterns each literal stands for, flat: literal i -> values[starts[i]:][:counts[i]]
        self._literal_target_counts = np.array([len(t) for t in targets], dtype=np.int64)
        self._literal_target_starts = np.concatenate(
            [[0], np.cumsum(self._literal_target_counts)[:-1]]
        ).astype(np.int64)
        self._literal_target_values = np.array([i for t in targets for i in t], dtype=np.int64)
        # A policy of regexes alone has no literal to compile (Hyperscan refuses an empty set).
        self._literal_db = (
            self._compile([_escape_bytes(k) for k in self._literal_keys], 0)
            if self._literal_keys
            else None
        )
        self._regex_db_pattern = np.array(policy_regexes, dtype=np.int64)
        self._regex_db = (
            self._compile(
                [self.patterns[i].term.encode() for i in policy_regexes],
                _MATCH_FLAGS,
                prefilter=True,
            )
            if policy_regexes
            else None
        )
        # A term in several rules has one precise regex: compile it, and search for it, once.
        # The term patterns are built here from escaped literals, with lookarounds for the word
        # edges: Python's `re` runs them. A policy's own regexes run on RE2, which cannot
        # backtrack (`(a+)+b` over a long row of "a" would hang `re`).
        distinct: dict[tuple[str, bool], int] = {}
        self._unique_of = [
            distinct.setdefault(key, len(distinct))
            for key in zip(self._sources, self._is_policy_regex, strict=True)
        ]
        # A term's regex is compiled when a listing first needs it (most never are in a run,
        # and compiling a thousand of them costs a cold start a second); a policy's own
        # regexes now, where a bad one is refused.
        self._unique_sources = [source for source, _ in distinct]
        self._unique_regexes: list[re.Pattern[str] | Any | None] = [
            compile_regex(source.encode()) if authored else None for source, authored in distinct
        ]
        self._unique_on_bytes = [authored for _, authored in distinct]
        self._unique_of_array = np.array(self._unique_of, dtype=np.int64)
        self._local = threading.local()
        self._rules = {r.id: r for r in policy.document.rules}
        self._index_patterns_by_rule()

    def _index_patterns_by_rule(self) -> None:
        """Each pattern's rule (an index) and whether it is one of its rule's terms or regexes,
        as arrays: match_hits searches a rule's context and exclusions only where its terms are."""
        self._rule_ids = list(self._rules)
        rule_index = {rule_id: i for i, rule_id in enumerate(self._rule_ids)}
        self._rule_of = np.array([rule_index[p.rule_id] for p in self.patterns], dtype=np.int64)
        self._is_term = np.array(
            [p.role in (Role.TERM, Role.REGEX) for p in self.patterns], dtype=bool
        )
        # The context terms of the rules whose regexes the screens find by those terms
        self._context_screened_regex = np.array(
            [
                p.role is Role.CONTEXT and self._regex_screened_by_context(self._rules[p.rule_id])
                for p in self.patterns
            ],
            dtype=bool,
        )

    @staticmethod
    def _regex_screened_by_context(rule: TextRule) -> bool:
        """Whether the screens look for the rule's regexes by its context terms (see __init__)."""
        return bool(rule.regexes and not rule.screen and not rule.anchors and rule.requires_any)

    def _build_screens(
        self,
        anchors: list[bytes],
        other_anchors: list[bytes],
        screen_regexes: list[bytes],
        conjunctions: list[list[bytes]],
    ) -> None:
        """The screen of stage 1, and the one over each field of stage 2."""
        screen = _screen_patterns(anchors, screen_regexes)
        # A conjunction's first regex is screened for with the rest, after them; its other
        # regexes are looked for only in the rows its first one let in, by a second database.
        self._first_conjunct = len(screen)
        screen += [regexes[0] for regexes in conjunctions]
        self._confirm = _Conjunctions.of(conjunctions)
        self._screen_patterns_list = screen  # for tools that show what the screen runs
        self.screen_pattern_count = len(screen)
        self._screen_db = self._compile(screen, _SCREEN_FLAGS)
        self._confirm_db = (
            self._compile(self._confirm.patterns, _SCREEN_FLAGS) if conjunctions else None
        )
        # The same over every pattern: a field of a screened listing without any of these
        # cannot hold a term, a context term or an exclusion, and is not normalised at all.
        # (A conjunction by its first regex: the field a match lies in holds all of them.)
        self._field_db = self._compile(
            _screen_patterns(
                anchors + other_anchors, screen_regexes + [regexes[0] for regexes in conjunctions]
            ),
            _SCREEN_FLAGS,
        )

    def _add(self, rule: TextRule, role: Role, term: str, to_pattern: Callable[[str], str]) -> int:
        try:
            source = to_pattern(term)
        except ValueError as exc:
            raise PolicyError(self.policy.path, [f"rules (id {rule.id}): {exc}"]) from None
        self.patterns.append(Pattern(rule.id, role, term))
        self._sources.append(source)
        self._is_policy_regex.append(role is Role.REGEX)
        return len(self.patterns) - 1

    def _compile(
        self, patterns: Sequence[bytes], flags: int, prefilter: bool = False
    ) -> hyperscan.Database:
        """A database of the patterns. `prefilter`: a pattern too large for Hyperscan to compile
        exactly (a long list of words after a gap) is compiled in prefilter mode, which reports
        a superset of its matches: for patterns whose every match is confirmed by RE2."""
        cache = _DatabaseCache.from_environment()
        key = (
            cache.key(patterns, flags | (hyperscan.HS_FLAG_PREFILTER if prefilter else 0))
            if cache
            else ""
        )
        if cache and (db := cache.load(key)) is not None:
            return db
        each = [flags] * len(patterns)
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        for attempt in ("exact", "prefilter"):
            try:
                db.compile(
                    expressions=list(patterns),
                    ids=list(range(len(patterns))),
                    elements=len(patterns),
                    flags=each,
                )
                break
            except hyperscan.error as exc:
                if prefilter and attempt == "exact":
                    each = [
                        flags | hyperscan.HS_FLAG_PREFILTER
                        if _first_bad_pattern([pattern], flags) is not None
                        else flags
                        for pattern in patterns
                    ]
                    continue
                bad = next(
                    (
                        i
                        for i, (pattern, own) in enumerate(zip(patterns, each, strict=True))
                        if _first_bad_pattern([pattern], own) is not None
                    ),
                    None,
                )
                shown = patterns[bad].decode("utf-8", "replace") if bad is not None else "?"
                raise PolicyError(
                    self.policy.path, [f"pattern {shown!r} cannot be compiled: {exc}"]
                ) from None
        if cache:
            cache.store(key, db)
        return db

    def _scratch(self, name: str, db: hyperscan.Database) -> hyperscan.Scratch:
        scratch = getattr(self._local, name, None)
        if scratch is None:
            scratch = hyperscan.Scratch(db)
            setattr(self._local, name, scratch)
        return scratch

    # Stage 1 -----------------------------------------------------------------------------

    def screen_listings(
        self, titles: pa.Array | pa.ChunkedArray, descriptions: pa.Array | pa.ChunkedArray
    ) -> np.ndarray:
        """screen() over listings given as title and description columns."""
        empty, newline = pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string())
        joined = pc.binary_join_element_wise(
            pc.fill_null(titles.cast(pa.large_string()), empty),
            pc.fill_null(descriptions.cast(pa.large_string()), empty),
            empty,
            newline,
        )
        return self.screen(pc.binary_join_element_wise(joined, empty, newline))

    def screen(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """A boolean mask of the rows whose raw text contains an anchor.

        Each row must end with a newline (the sweep's SQL passes title, newline, description,
        newline): the rows lie back to back in the Arrow buffer, and the newline is what keeps
        a short anchor such as "btc" at the end of one row from touching the next row.
        """
        column = _one_chunk(column)
        pids, rows = self._scan_column(self._screen_db, "screen", column)
        mask = np.zeros(len(column), dtype=bool)
        plain = pids < self._first_conjunct
        mask[rows[plain]] = True
        if self._confirm_db is None or plain.all():
            return mask
        # Rows that only a conjunction's first regex let in: look for its others there.
        rows, groups = rows[~plain], pids[~plain] - self._first_conjunct
        open_ = ~mask[rows]
        candidates = np.unique(rows[open_] * len(self._confirm.needs) + groups[open_])
        if len(candidates) == 0:
            return mask
        candidate_rows = np.unique(candidates // len(self._confirm.needs))
        found, at = self._scan_column(
            self._confirm_db, "confirm", column.take(pa.array(candidate_rows))
        )
        mask[self._confirm.rows_complete(candidates, candidate_rows[at], found)] = True
        return mask

    def _rows_with_hits(
        self, db: hyperscan.Database, name: str, column: pa.Array | pa.ChunkedArray
    ) -> np.ndarray:
        column = _one_chunk(column)
        mask = np.zeros(len(column), dtype=bool)
        mask[self._scan_column(db, name, column)[1]] = True
        return mask

    def _scan_column(
        self, db: hyperscan.Database, name: str, column: pa.Array
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scan a string column's data buffer in one call: (pattern id, row) of every hit."""
        none = np.zeros(0, dtype=np.int64)
        n = len(column)
        if n in (0, column.null_count):
            return none, none
        if pa.types.is_large_string(column.type):
            offset_type: type = np.int64
        else:
            if not pa.types.is_string(column.type):
                column = column.cast(pa.string())
            offset_type = np.int32
        _, offsets_buf, data_buf = column.buffers()
        if data_buf is None:
            return none, none
        width = np.dtype(offset_type).itemsize
        offsets: np.ndarray = np.frombuffer(
            offsets_buf, dtype=offset_type, count=n + 1, offset=column.offset * width
        )
        start, end = int(offsets[0]), int(offsets[-1])
        if end == start:
            return none, none
        found: list[tuple[int, int]] = []
        # The data buffer holds the rows back to back; a hit's end offset tells its row.
        db.scan(
            cast(bytes, memoryview(data_buf)[start:end]),  # any buffer; the stub says bytes
            match_event_handler=lambda pid, _from, to, _flags, _ctx: found.append((pid, to)),
            scratch=self._scratch(name, db),
        )
        if not found:
            return none, none
        hits = np.asarray(found, dtype=np.int64)
        rows = np.searchsorted(offsets, hits[:, 1] + (start - 1), side="right") - 1
        return hits[:, 0], rows

    # Stage 2 -----------------------------------------------------------------------------

    def _candidates(self, texts: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """A column of raw texts normalised, and the patterns whose literal or regex is found in
        each row: (normalised texts, rows, pattern indexes), each pair once, by row then pattern.
        The precise regexes have not been run yet."""
        normal = normalise_array(texts)
        # Literals are found in the text with its spaces squeezed out, so "ant miner" and
        # "a n t m i n e r" both hold "antminer"; the precise pattern then checks the spacing
        # and the word boundaries on the normalised text.
        none = np.zeros(0, dtype=np.int64)
        literal_ids, literal_rows = (
            self._scan_column(
                self._literal_db, "literal", _terminated(pc.replace_substring(normal, " ", ""))
            )
            if self._literal_db is not None
            else (none, none)
        )
        # Each literal stands for the patterns it is a spelling of.
        counts = self._literal_target_counts[literal_ids]
        rows = np.repeat(literal_rows, counts)
        before = np.cumsum(counts) - counts  # where each literal's patterns start in the result
        at = np.repeat(self._literal_target_starts[literal_ids] - before, counts)
        pids = self._literal_target_values[at + np.arange(len(rows))]
        if self._regex_db is not None:
            regex_ids, regex_rows = self._scan_column(self._regex_db, "regex", _terminated(normal))
            rows = np.concatenate([rows, regex_rows])
            pids = np.concatenate([pids, self._regex_db_pattern[regex_ids]])
        if len(rows) == 0:
            return normal, rows, pids
        pairs = np.unique(rows * len(self.patterns) + pids)
        rows, pids = np.divmod(pairs, len(self.patterns))
        return normal, rows, pids

    def _verified(
        self, normal: pa.Array, rows: np.ndarray, pids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The candidates whose precise regex matches: row, pattern index and matched text."""
        if len(rows) == 0:
            return rows, pids, []
        # One search per listing and distinct precise regex (a term in several rules shares
        # one), then every candidate pattern takes its regex's answer.
        n_unique = len(self._unique_regexes)
        keys = rows * n_unique + self._unique_of_array[pids]
        searches, which = np.unique(keys, return_inverse=True)
        with_hits = np.unique(rows)
        hit_texts = normal.take(pa.array(with_hits))
        texts_of = hit_texts.to_pylist()
        search_texts = np.searchsorted(with_hits, searches // n_unique).tolist()
        uniques = (searches % n_unique).tolist()
        compiled, on_bytes = self._unique_regexes, self._unique_on_bytes
        # RE2 searches the UTF-8 bytes: its binding is fastest so.
        bytes_of = (
            hit_texts.cast(pa.large_binary()).to_pylist()
            if any(on_bytes[u] for u in set(uniques))
            else []
        )
        answers: list[str | None] = []
        for u in set(uniques):
            if compiled[u] is None:
                compiled[u] = re.compile(self._unique_sources[u])  # a race compiles it twice
        for at, u in zip(search_texts, uniques, strict=True):
            if on_bytes[u]:
                found = compiled[u].search(bytes_of[at])
                answers.append(found.group(0).decode().strip() if found is not None else None)
            else:
                found = compiled[u].search(texts_of[at])
                answers.append(found.group(0).strip() if found is not None else None)
        matched = [answers[i] for i in which.tolist()]
        keep = np.fromiter((m is not None for m in matched), dtype=bool, count=len(matched))
        return rows[keep], pids[keep], [m for m in matched if m is not None]

    # Tables for the SQL that decides which rules fire (sql/fire_rules.sql) -----------------

    def match_hits(
        self, listing_ids: pa.Array, titles: pa.Array, descriptions: pa.Array
    ) -> pa.Table:
        """Every pattern found in the listings: listing_id, pattern_id, field, text.

        A context term or an exclusion only counts for a listing where its rule's own terms
        (or regexes) are found, in either field: elsewhere it is not searched for precisely."""
        texts = {
            name: _one_chunk(column).cast(pa.large_string())
            for name, column in (("title", titles), ("description", descriptions))
        }
        # Per field: the listings normalised (rows of the batch), their normalised texts, and
        # each candidate's place in them and pattern.
        fields: dict[str, tuple[np.ndarray, pa.Array, np.ndarray, np.ndarray]] = {}
        for name, text in texts.items():
            found = self._rows_with_hits(self._field_db, "field", _terminated(text))
            screened = np.flatnonzero(found)
            if len(screened):
                fields[name] = (screened, *self._candidates(text.take(pa.array(screened))))
        # A regex screened by its rule's context terms (no literal is in all its matches) may
        # match in a field that holds nothing the field screen looks for, while the context is
        # in the other field: such fields are normalised and matched too.
        extra = {}
        for name, other in (("title", "description"), ("description", "title")):
            if other in fields and self._context_screened_regex.any():
                screened, _, rows, pids = fields[other]
                needing = np.unique(screened[rows[self._context_screened_regex[pids]]])
                done = fields[name][0] if name in fields else np.zeros(0, dtype=np.int64)
                extra[name] = np.setdiff1d(needing, done, assume_unique=True)
        for name, more in extra.items():
            if len(more) == 0:
                continue
            normal, rows, pids = self._candidates(texts[name].take(pa.array(more)))
            if name not in fields:
                fields[name] = (more, normal, rows, pids)
                continue
            screened, first, first_rows, first_pids = fields[name]
            fields[name] = (
                np.concatenate([screened, more]),
                pa.concat_arrays([first, normal]),
                np.concatenate([first_rows, rows + len(screened)]),
                np.concatenate([first_pids, pids]),
            )
        # The (listing, rule) pairs whose rule has a term or regex candidate in the listing.
        n_rules = len(self._rule_ids)
        acting = np.unique(
            np.concatenate(
                [
                    (screened[rows] * n_rules + self._rule_of[pids])[self._is_term[pids]]
                    for screened, _, rows, pids in fields.values()
                ]
                or [np.zeros(0, dtype=np.int64)]
            )
        )
        parts = []
        for name, (screened, normal, local, pids) in fields.items():
            listing = screened[local]
            keep = self._is_term[pids] | np.isin(listing * n_rules + self._rule_of[pids], acting)
            rows, pattern_ids, matched = self._verified(normal, local[keep], pids[keep])
            parts.append(
                pa.table(
                    {
                        "listing_id": _one_chunk(listing_ids).take(pa.array(screened[rows])),
                        "pattern_id": pa.array(pattern_ids, pa.int32()),
                        "field": pa.array([name] * len(matched), pa.string()),
                        "text": pa.array(matched, pa.string()),
                    },
                    schema=HITS_SCHEMA,
                )
            )
        return pa.concat_tables(parts) if parts else HITS_SCHEMA.empty_table()

    def patterns_table(self) -> pa.Table:
        """pattern_id, rule_id, role, term, and the fields where a term counts."""
        rules = self._rules
        return pa.table(
            {
                "pattern_id": list(range(len(self.patterns))),
                "rule_id": [p.rule_id for p in self.patterns],
                "role": [_ROLE_NAMES[p.role] for p in self.patterns],
                "term": [p.term for p in self.patterns],
                "in_title": [Field_.TITLE in rules[p.rule_id].fields for p in self.patterns],
                "in_description": [
                    Field_.DESCRIPTION in rules[p.rule_id].fields for p in self.patterns
                ],
            },
            schema=PATTERNS_SCHEMA,
        )

    def rule_scope_table(self) -> pa.Table:
        """The rules in force by country of sale: '*' for every country without an override."""
        countries = ["*", *sorted(self.policy.document.scope.overrides)]
        rows = [
            {
                "country": country,
                "rule_id": rule.id,
                "weight": rule.weight_in(self.policy.document.thresholds),
                "shadow": rule.mode is Mode.SHADOW,
                "caps": rule.at_most == "review",
                "requires_context": bool(rule.requires_any),
            }
            for country in countries
            for rule in self.policy.rules_for(None if country == "*" else country)
        ]
        return pa.Table.from_pylist(rows, schema=RULE_SCOPE_SCHEMA)


@dataclass(frozen=True)
class _Conjunctions:
    """The screen's conjunctions but their first regexes: `patterns` (one database), and for
    each its conjunction (`group_of`) and each conjunction's count of them (`needs`)."""

    patterns: list[bytes]
    group_of: np.ndarray
    needs: np.ndarray

    @classmethod
    def of(cls, conjunctions: list[list[bytes]]) -> _Conjunctions:
        rest = [(g, r) for g, regexes in enumerate(conjunctions) for r in regexes[1:]]
        return cls(
            patterns=[r for _, r in rest],
            group_of=np.array([g for g, _ in rest], dtype=np.int64),
            needs=np.array([len(regexes) - 1 for regexes in conjunctions], dtype=np.int64),
        )

    def rows_complete(
        self, candidates: np.ndarray, rows: np.ndarray, pattern_ids: np.ndarray
    ) -> np.ndarray:
        """The rows where some conjunction is complete. candidates: row * groups + group for
        each row its first regex let in; rows, pattern_ids: where the others were found."""
        groups = len(self.needs)
        found = np.unique(rows * len(self.patterns) + pattern_ids)  # each regex once per row
        found_rows, found_ids = np.divmod(found, len(self.patterns))
        keys, counts = np.unique(found_rows * groups + self.group_of[found_ids], return_counts=True)
        complete = keys[counts == self.needs[keys % groups]]
        return np.unique(complete[np.isin(complete, candidates)] // groups)


CACHE_ENVIRONMENT = "CATALOGUE_PURGE_CACHE"


@dataclass(frozen=True)
class _DatabaseCache:
    """Compiled Hyperscan databases on disk, so that a new process (a cold Lambda, a CLI call)
    loads in milliseconds what takes seconds to compile. A file is named by the SHA-256 of
    everything the database is made of (patterns, flags, mode, Hyperscan's version and the
    machine) and holds the SHA-256 of its own bytes: a file that does not check out, or that
    Hyperscan refuses, is compiled again and replaced. The cache is an optimisation only: a
    directory that cannot be written is skipped.

    $CATALOGUE_PURGE_CACHE names the directory (`off` turns the cache off); by default it is
    $XDG_CACHE_HOME/catalogue-purge (~/.cache), and /tmp/catalogue-purge in AWS Lambda."""

    root: Path

    @classmethod
    def from_environment(cls) -> _DatabaseCache | None:
        named = os.environ.get(CACHE_ENVIRONMENT, "").strip()
        if named.lower() in ("off", "0", "none", "false"):
            return None
        if named:
            return cls(Path(named))
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            return cls(Path("/tmp/catalogue-purge"))  # noqa: S108 (Lambda's only writable disk)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return cls(Path(base) / "catalogue-purge")

    @staticmethod
    def key(patterns: Sequence[bytes], flags: int) -> str:
        digest = hashlib.sha256()
        for part in (
            b"hyperscan-block",
            str(getattr(hyperscan, "__version__", "")).encode(),
            platform.machine().encode(),
            str(flags).encode(),
            str(len(patterns)).encode(),
        ):
            digest.update(part + b"\0")
        for pattern in patterns:
            digest.update(len(pattern).to_bytes(8, "big") + pattern)
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / f"hs-{key}.db"

    def load(self, key: str) -> hyperscan.Database | None:
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        checksum, payload = data[:32], data[32:]
        if hashlib.sha256(payload).digest() != checksum:
            return None
        try:
            return hyperscan.loadb(payload, hyperscan.HS_MODE_BLOCK)
        except hyperscan.error:
            return None

    def store(self, key: str, db: hyperscan.Database) -> None:
        payload = hyperscan.dumpb(db)
        path = self._path(key)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(hashlib.sha256(payload).digest() + payload)
            os.replace(temporary, path)  # whole or not at all, whoever writes it too
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


_compiled: dict[str, Matcher] = {}
_compiling = threading.Lock()


def compiled_matcher(policy: Policy) -> Matcher:
    """The policy's matcher, compiled once per policy version and process (a warm Lambda keeps
    it between invocations). Exemptions play no part in matching, so the version is the
    policy's own hash."""
    with _compiling:
        if policy.sha256 not in _compiled:
            _compiled[policy.sha256] = Matcher(policy)
        return _compiled[policy.sha256]


def _terminated(texts: pa.Array) -> pa.Array:
    """Each text followed by a newline, so that no literal spans two rows of the buffer."""
    empty = pa.scalar("", pa.large_string())
    return pc.binary_join_element_wise(
        pc.fill_null(texts, empty), pa.scalar("\n", pa.large_string()), empty
    )


def _one_chunk(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """DuckDB hands a UDF one chunk: take it as it is rather than copy it."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def compact_literals(term: str) -> list[bytes]:
    """The term with its spaces squeezed out, and its leet spellings: what the normalised,
    squashed text of a matching listing must contain."""
    text, _ = _split_stem(term)
    compact = normalise(text).replace(" ", "")
    if not compact:
        return []
    forms = {compact}
    if compact.isascii():
        forms |= _leet_variants(compact)
    return [f.encode() for f in sorted(forms)]


def _screen_regex(regex: str) -> bytes:
    """A policy regex applied to raw text: spaces in it may be any run of separators, and its
    word edges are dropped (rows lie back to back in the buffer, so an edge could see the
    neighbouring row), which only lets more rows through."""
    screen = regex.replace(" ?", r"[\W_]{0,6}").replace(" ", r"[\W_]{1,6}")
    for edge in ("(?:^|[^a-z0-9])", "(?:$|[^a-z0-9])", "(?:$|[^0-9])"):
        screen = screen.replace(edge, "")
    return _without_assertions(screen).encode()


def _without_assertions(regex: str) -> str:
    """The regex with its anchors and word-boundary assertions (`^`, `$`, `\\A`, `\\z`, `\\b`,
    `\\B`) taken out. An assertion only ever removes matches, so the result matches wherever
    the regex does: a screen may let more rows through, never fewer. (On the raw text a field's
    start is not where its normalised text starts: tags and spaces come before it.)"""
    out: list[str] = []
    i, n = 0, len(regex)
    in_class = False
    while i < n:
        c = regex[i]
        if c == "\\" and i + 1 < n:
            if not in_class and regex[i + 1] in "AzbB":
                i += 2
                continue
            out.append(regex[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            out.append(c)
            i += 1
            # A "]" first in a class (after an optional "^") is a literal.
            if i < n and regex[i] == "^":
                out.append("^")
                i += 1
            if i < n and regex[i] == "]":
                out.append("]")
                i += 1
            continue
        elif c in "^$":
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _first_bad_pattern(patterns: Sequence[bytes], flags: int) -> int | None:
    for i, pattern in enumerate(patterns):
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            db.compile(expressions=[pattern], flags=[flags])
        except hyperscan.error:
            return i
    return None
