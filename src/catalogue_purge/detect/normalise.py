"""Text normalisation before matching.

Sellers write the same product many ways: "ＡＮＴＭＩＮＥＲ", "A.n.t-miner", "Ant&nbsp;miner",
"minería"/"mineria", "<b>ASIC</b>". Matching runs on one canonical form:

- HTML tags become spaces and entities are decoded (twice, for double-encoded exports);
- Unicode compatibility forms are folded (NFKC: full-width letters and digits, ligatures);
- case is folded; zero-width characters and soft hyphens are dropped;
- accents are stripped (NFD, combining marks removed);
- every run of characters that is neither a letter nor a digit becomes one space;
- a space separates Han/Kana/Hangul from other letters, so word boundaries work for Latin terms
  glued to Chinese text ("蚂蚁antminer").

Obfuscation by spacing ("A n t miner", "S 19 Pro") is then handled by the term patterns, which
allow an optional space between characters (see matcher).
"""

from __future__ import annotations

import html
import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TAG = re.compile(r"<[^<>]{0,200}>")
_SEPARATORS = re.compile(r"[\W_]+")
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
_COMBINING = re.compile(
    _codepoint_class([cp for cp in range(0x300, 0x10000) if unicodedata.combining(chr(cp))])
)
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_HAS_CJK = re.compile(f"[{_CJK}]")


def strip_accents(text: str) -> str:
    """The text without combining marks (accents, the breve of Cyrillic й)."""
    decomposed = unicodedata.normalize("NFD", text)
    if decomposed.isascii():
        return decomposed
    return _COMBINING.sub("", decomposed)


def normalise(text: str | None) -> str:
    """The canonical form that terms are matched against."""
    if not text:
        return ""
    if "<" in text:
        text = _TAG.sub(" ", text)
    for _ in range(2):
        if "&" not in text:
            break
        text = html.unescape(text)
    if not text.isascii():
        text = _INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", text))
        text = strip_accents(text)
    text = text.casefold()
    text = _SEPARATORS.sub(" ", text)
    if not text.isascii() and _HAS_CJK.search(text):
        text = _CJK_EDGE.sub(" ", text)
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
        return folded
    values = filled.take(pa.array(rest)).to_pylist()
    return pc.replace_with_mask(
        folded, other, pa.array([normalise(v) for v in values], pa.large_string())
    )
