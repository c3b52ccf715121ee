"""Text normalisation before matching.

Sellers write the same product many ways: "ＡＮＴＭＩＮＥＲ", "A.n.t-miner", "Ant&nbsp;miner",
"minería"/"mineria", "<b>ASIC</b>". Matching runs on one canonical form:

- HTML tags become spaces and entities are decoded (twice, for double-encoded exports);
- Unicode compatibility forms are folded (NFKC: full-width letters and digits, ligatures);
- case is folded; zero-width characters and soft hyphens are dropped;
- accents are stripped (NFD, combining marks removed), and the decimal digits of every script
  ("۸۸", "٣٥٠٠W") read as ASCII digits;
- every run of characters that is neither a letter, a digit nor a vowel sign (the marks of
  Devanagari or Thai that are part of a word) becomes one space;
- a space separates Han/Kana/Hangul from other letters, so word boundaries work for Latin terms
  glued to Chinese text ("蚂蚁antminer");
- mojibake (UTF-8 read as Latin-1 or cp1252: "mineraÃ§Ã£o") is repaired by ftfy;
- a word that is mostly Latin letters with letters of another script among them ("Аntminer"
  with a Cyrillic А, "Bіtcoin" with a Ukrainian і) has those letters folded to the Latin letters
  they are confusable with, from Unicode's confusables data (UTS #39, as the
  confusable-homoglyphs package ships it). Words wholly in another script are left alone: a
  Russian word is not a disguised English one;
- the Bitcoin sign "₿" reads as the word "btc";
- a Latin letter with a stroke or a hook that Unicode does not decompose ("Ƀitcoin", "Ɗoge") is
  read as the ASCII letter the confusables data writes it with.

Obfuscation by spacing ("A n t miner", "S 19 Pro") is then handled by the term patterns, which
allow an optional space between characters (see matcher).
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from functools import cache
from importlib import resources
from typing import cast

import ftfy
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TAG = re.compile(r"<[^<>]{0,200}>")
_CJK = "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_EDGE = re.compile(rf"(?<=[{_CJK}])(?=[^\s{_CJK}])|(?<=[^\s{_CJK}])(?=[{_CJK}])")


def _codepoint_class(codepoints: list[int]) -> str:
    """A regex character class for the code points, as ranges."""
    ranges: list[list[int]] = []
    for cp in codepoints:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]"


# Every combining mark of the Basic Multilingual Plane (accents, the Cyrillic breve of "й").
# Combining marks but for kana's voicing marks, which make other letters (カ, ガ), not accents.
_COMBINING = re.compile(
    _codepoint_class(
        [
            cp
            for cp in range(0x300, 0x10000)
            if unicodedata.combining(chr(cp)) and cp not in (0x3099, 0x309A)
        ]
    )
)
# The marks that are part of a word without being letters: the vowel signs of Devanagari, Thai
# or Bengali ("बिटकॉइन", "บิตคอยน์"), which `\W` counts as separators; as separators they split
# every such word into pieces. (Marks with a combining class, accents, are stripped first.)
_MARKS = _codepoint_class(
    [cp for cp in range(0x300, 0x10000) if unicodedata.category(chr(cp)).startswith("M")]
)
# Every run of characters that is neither a letter, a digit nor a mark becomes one space.
_SEPARATORS = re.compile(rf"(?:[^\w{_MARKS[1:-1]}]|_)+")
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_HAS_CJK = re.compile(f"[{_CJK}]")


@cache
def _confusables() -> dict[str, list[dict[str, str]]]:
    """Unicode's confusables data (UTS #39), as the confusable-homoglyphs package ships it."""
    text = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    return cast(dict[str, list[dict[str, str]]], json.loads(text))


@cache
def _confusable_to_latin() -> dict[int, str]:
    """Each letter of another script that Unicode's confusables data says looks like one
    ASCII letter or digit: {code point: that letter}, lower case."""
    table: dict[int, str] = {}
    for char, homoglyphs in _confusables().items():
        if len(char) != 1 or not "\u0370" <= char <= "\u058f" or not char.isalpha():
            continue
        if unicodedata.name(char, "").startswith("LATIN"):
            continue
        latin = [
            h["c"] for h in homoglyphs if len(h["c"]) == 1 and h["c"].isascii() and h["c"].isalnum()
        ]
        if latin:
            table[ord(char)] = latin[0].casefold()
    # A lower-case letter without an entry of its own takes its capital's.
    for code, letter in list(table.items()):
        lower = chr(code).casefold()
        if len(lower) == 1 and ord(lower) not in table:
            table[ord(lower)] = letter
    return table


@cache
def _latin_to_cyrillic() -> dict[int, str]:
    """The other way, from the same data: each ASCII letter that a lower-case Cyrillic letter
    looks like (its capital included: "M" of "МАЙНЕР" is casefolded to "m"), as that letter."""
    table: dict[int, str] = {}
    for code, letter in sorted(_confusable_to_latin().items()):
        char = chr(code)
        if not letter.isalpha() or "CYRILLIC" not in unicodedata.name(char, ""):
            continue
        lower = char.casefold()
        if len(lower) == 1 and "\u0430" <= lower <= "\u045f":  # the letters of Russian, Ukrainian
            table.setdefault(ord(letter), lower)
    return table


@cache
def latin_lookalikes() -> dict[int, str]:
    """Latin letters with a stroke or a hook, which Unicode does not decompose ("ƀ", "Ƀ",
    "Ɗ", "ƈ") but its confusables data writes as an ASCII letter with an overlay ("b̵", "'D"):
    {code point: that letter}, both cases. From Latin Extended-B only (U+0180-U+024F): the
    letters of Latin Extended-A are the alphabet of living languages (Polish ł, Turkish ı,
    Vietnamese đ), folded they would join words those languages keep apart."""
    table: dict[int, str] = {}
    for char, homoglyphs in _confusables().items():
        if len(char) != 1 or not "\u0180" <= char <= "\u024f" or not char.isalpha():
            continue
        if unicodedata.decomposition(char):
            continue  # "ǎ", "ơ": strip_accents takes their marks off already
        for homoglyph in homoglyphs:
            base = _COMBINING.sub("", unicodedata.normalize("NFD", homoglyph["c"])).strip("'")
            if len(base) == 1 and base.isascii() and base.isalpha():
                table[ord(char)] = base.casefold()
                break
    for code, letter in list(table.items()):
        for other in (chr(code).casefold(), chr(code).upper()):
            if (
                len(other) == 1
                and "\u0180" <= other <= "\u024f"
                and not unicodedata.decomposition(other)
                and ord(other) not in table
            ):
                table[ord(other)] = letter
    return table


_ASCII_LETTER = re.compile("[a-z]")
# The scripts whose letters disguise Latin ones in practice: Greek, Cyrillic, Armenian (the
# matcher's screen lets every row with such a letter beside a Latin one through).
HOMOGLYPH_SCRIPTS = "\u0370-\u058f"
_MIXED_PATTERN = f"[a-z][{HOMOGLYPH_SCRIPTS}]|[{HOMOGLYPH_SCRIPTS}][a-z]"  # re and RE2 alike
_MIXED = re.compile(_MIXED_PATTERN)


def fold_confusables(text: str, mixed: bool | None = None) -> str:
    """Mostly-Latin words with confusable letters of another script, in Latin letters. `text`
    is casefolded, its words separated by single spaces. `mixed` False: the caller knows no
    Latin letter stands beside a letter of those scripts."""
    if mixed is False or text.isascii() or not (mixed or _MIXED.search(text)):
        return text
    table = _confusable_to_latin()
    words = text.split(" ")
    for i, word in enumerate(words):
        if word.isascii() or not _ASCII_LETTER.search(word):
            continue
        other = [c for c in word if not c.isascii() and c.isalpha()]
        latin = sum(c.isalpha() for c in word) - len(other)
        if latin > len(other) and any(ord(c) in table for c in other):
            words[i] = word.translate(table)
        elif latin <= len(other) and all("\u0400" <= c <= "\u04ff" for c in other):
            # A mostly-Cyrillic word with Latin lookalikes in it ("мaйнер"): in Cyrillic.
            cyrillic = _latin_to_cyrillic()
            if all(ord(c) in cyrillic for c in word if c.isascii() and c.isalpha()):
                words[i] = word.translate(cyrillic)
    return " ".join(words)


# UTF-8 read as Latin-1 or cp1252 turns each lead byte into a letter of U+00C0-U+00FF and
# the next byte into a character of U+0080-U+00BF, or into the punctuation cp1252 puts at
# 0x80-0x9F. Only a text with such a pair is given to ftfy (the matcher's screen lets every row
# with one through).
MOJIBAKE_PUNCTUATION = (
    "\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018\u2019"
    "\u201a\u201c\u201d\u201e\u2020\u2021\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
)
_MOJIBAKE_PATTERN = f"[\u00c0-\u00ff][\u0080-\u00bf{MOJIBAKE_PUNCTUATION}]"  # re and RE2
_MOJIBAKE = re.compile(_MOJIBAKE_PATTERN)


def repair_mojibake(text: str, suspect: bool | None = None) -> str:
    """The text with its mojibake undone, where ftfy finds some. `suspect` False: the caller
    knows the text holds no mojibake pair."""
    if suspect is not False and (suspect or _MOJIBAKE.search(text)):
        return str(ftfy.fix_encoding(text))
    return text


_OTHER_DIGIT = re.compile(r"(?![0-9])\d")  # a decimal digit of another script than ASCII
_LATIN_EXTENDED_B = re.compile("[\u0180-\u024f]")


@cache
def _decimal_digits() -> dict[int, str]:
    """Every decimal digit of another script ("۸۸", "٣٥٠٠", "४५") to its ASCII digit: a
    hashrate, a power draw or a model number reads the same in any script."""
    return {
        cp: str(unicodedata.digit(chr(cp)))
        for cp in range(0x80, 0x1FC00)
        if unicodedata.category(chr(cp)) == "Nd"
    }


def strip_accents(text: str) -> str:
    """The text without combining marks (accents, the breve of Cyrillic й), composed again:
    Hangul syllables and kana stay what they are, as a policy's regexes spell them."""
    decomposed = unicodedata.normalize("NFD", text)
    if decomposed.isascii():
        return decomposed
    return unicodedata.normalize("NFC", _COMBINING.sub("", decomposed))


# Three or more single Latin letters in a row ("E.T.H", "b t c" once separators are spaces):
# one word, as a reader takes them.
# Of any script: "м а й н і н г", "マ イ ニ ン グ" are one word as well.
# A letter with its vowel signs is one letter here: "बि-ट-कॉ-इ-न" is one word.
_SPACED_LETTER = rf"[^\W\d_]{_MARKS}*"
_LETTER_RUN = re.compile(rf"(?<![^\W_]){_SPACED_LETTER}(?: {_SPACED_LETTER}){{2,}}(?![^\W_])")


def _join_letters(match: re.Match[str]) -> str:
    return match.group(0).replace(" ", "")


def normalise(text: str | None) -> str:
    """The canonical form that terms are matched against."""
    return fold_confusables(_unfolded(text))


def _unfolded(text: str | None, mojibake: bool | None = None) -> str:
    """normalise() but for the folding of confusables, which comes last (normalise_array does it
    over the whole column). `mojibake`: whether the text may hold mojibake (None: look)."""
    if not text:
        return ""
    if "<" in text:
        text = _TAG.sub(" ", text)
    for _ in range(2):
        if "&" not in text:
            break
        text = html.unescape(text)
    if not text.isascii():
        if "\u20bf" in text:  # the Bitcoin sign: "₿0.01", "₿-Gutschein"
            text = text.replace("\u20bf", " btc ")
        text = repair_mojibake(text, mojibake)
        text = _INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", text))
        text = strip_accents(text)
        if _LATIN_EXTENDED_B.search(text):
            text = text.translate(latin_lookalikes())
        if _OTHER_DIGIT.search(text):
            text = text.translate(_decimal_digits())
    text = _SEPARATORS.sub(" ", text.casefold())
    if not text.isascii() and _HAS_CJK.search(text):
        text = _CJK_EDGE.sub(" ", text)
    if " " in text:
        text = _LETTER_RUN.sub(_join_letters, text)
    return text.strip()


def normalise_array(texts: pa.Array) -> pa.Array:
    """normalise() over a column of texts. Plain ASCII text (no tag, no entity) is folded by
    Arrow's kernels: lower case, and every run of other characters than letters and digits
    made one space, which is all normalise() does to it; the rest goes through normalise()."""
    empty = pa.scalar("", pa.large_string())
    filled = pc.fill_null(texts.cast(pa.large_string()), empty)
    folded = pc.utf8_trim(
        pc.replace_substring_regex(pc.ascii_lower(filled), r"[^a-z0-9]+", " "), " "
    )
    plain = pc.and_(
        pc.string_is_ascii(filled),
        pc.invert(pc.match_substring_regex(filled, "[<&]")),
    )
    other = pc.invert(plain)
    rest = np.flatnonzero(np.asarray(other, dtype=bool))
    if len(rest) == 0:
        return _joined_letter_runs(folded)
    values = filled.take(pa.array(rest))
    # The rare texts that need mojibake repaired or confusables folded are found by Arrow's
    # regex kernels over the whole column, not one Python search per text. An entity may
    # hide a mojibake pair: those texts look for themselves.
    suspects = pc.or_(
        pc.match_substring_regex(values, _MOJIBAKE_PATTERN),
        pc.match_substring(values, "&"),
    ).to_pylist()
    unfolded = pa.array(
        [
            _unfolded(v, None if suspect else False)
            for v, suspect in zip(values.to_pylist(), suspects, strict=True)
        ],
        pa.large_string(),
    )
    mixed = np.flatnonzero(
        np.asarray(pc.match_substring_regex(unfolded, _MIXED_PATTERN), dtype=bool)
    )
    if len(mixed):
        texts = unfolded.to_pylist()
        for i in mixed.tolist():
            texts[i] = fold_confusables(texts[i], mixed=True)
        unfolded = pa.array(texts, pa.large_string())
    return _joined_letter_runs(pc.replace_with_mask(folded, other, unfolded))


def _joined_letter_runs(normal: pa.Array) -> pa.Array:
    """normalise()'s joining of single letters ("e t h"), for the texts Arrow folded: found by
    Arrow's regex kernel, joined in Python (RE2 has no lookbehind)."""
    runs = np.flatnonzero(
        np.asarray(pc.match_substring_regex(normal, "(^| )[a-z]( [a-z]){2,}( |$)"), dtype=bool)
    )
    if len(runs) == 0:
        return normal
    texts = normal.to_pylist()
    for i in runs.tolist():
        texts[i] = _LETTER_RUN.sub(_join_letters, texts[i])
    return pa.array(texts, pa.large_string())
