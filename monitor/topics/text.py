"""Normalisation and tokenisation shared by topic queries and articles.

Queries and articles go through the same functions, so a query word and an article word compare equal
exactly when a reader would call them the same word:

* case, accents and compatibility forms are folded (NFKD, diacritics dropped, NFC, casefold), so ``Zürich``
  is ``zurich`` and ``ПУТИН`` is ``путин``;
* an apostrophe inside a word keeps it whole (``xi'an`` is one token, so ``xi`` does not match it), and a
  trailing possessive is dropped (``putin's`` is ``putin``);
* scripts written without spaces (Han, Kana, Hangul, Thai, Lao, Khmer, Myanmar) give one token per
  character, so a CJK term is matched as a run of consecutive tokens, i.e. as a substring.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple


def _mark_ranges() -> str:
    """All combining-mark code points (category M*) as a regex class body; ``re`` has no ``\\p{M}``."""
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for cp in range(0x300, 0x20000):
        is_mark = unicodedata.category(chr(cp)).startswith("M")
        if is_mark and start is None:
            start = cp
        elif not is_mark and start is not None:
            ranges.append((start, cp - 1))
            start = None
    ranges.append((0xE0100, 0xE01EF))  # variation selectors supplement
    return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in ranges)


_MARKS = _mark_ranges()
#: scripts without spaces between words: every character is a token of its own
_CJK = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303c"
    "\u3040-\u31ff"  # Hiragana, Katakana, Bopomofo, Hangul compatibility jamo, Kanbun, Katakana ext.
    "\u3400-\u4dbf\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f\uac00-\ud7ff"  # Hangul
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
_APOSTROPHES = "'\u2019\u02bc\u2018\uff07"
_WORD_RE = re.compile(rf"[\w{_MARKS}]+(?:[{_APOSTROPHES}][\w{_MARKS}]+)*")
_HAS_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_SPLIT_RE = re.compile(rf"[{_CJK}][{_MARKS}]*|[^{_CJK}]+")
_APOSTROPHE_TABLE = str.maketrans({c: "'" for c in _APOSTROPHES})
#: only these marks are dropped: the diacritics NFKD splits off Latin, Greek and Cyrillic letters. Marks that
#: carry meaning elsewhere (kana voicing, Indic vowel signs, Thai tone marks) are kept.
_DIACRITICS_RE = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


class Token(NamedTuple):
    """A normalised token and where it came from in the original string (``text[start:end]``)."""

    text: str
    start: int
    end: int


@lru_cache(maxsize=65536)
def _fold(word: str) -> str:
    decomposed = _DIACRITICS_RE.sub("", unicodedata.normalize("NFKD", word))
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", decomposed).casefold())


def normalize(word: str) -> str:
    """Fold case, accents and compatibility forms of one word (ASCII takes a fast path)."""
    if word.isascii():
        return word.lower()
    return _fold(word.translate(_APOSTROPHE_TABLE))


def _finish(word: str, start: int, end: int, out: list[Token]) -> None:
    norm = normalize(word)
    if len(norm) > 2 and norm.endswith("'s"):
        norm = norm[:-2]
    if norm:
        out.append(Token(norm, start, end))


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into normalised word tokens with their character spans in ``text``."""
    out: list[Token] = []
    for m in _WORD_RE.finditer(text):
        word = m.group()
        if word.isascii() or not _HAS_CJK_RE.search(word):
            _finish(word, m.start(), m.end(), out)
            continue
        base = m.start()
        for piece in _CJK_SPLIT_RE.finditer(word):
            lead = len(piece.group()) - len(piece.group().lstrip(_APOSTROPHES))
            part = piece.group().strip(_APOSTROPHES)
            if part:
                _finish(part, base + piece.start() + lead, base + piece.start() + lead + len(part), out)
    return out


def words(text: str) -> list[str]:
    """The normalised tokens of ``text`` without their spans (for query words)."""
    return [t.text for t in tokenize(text)]


def is_cjk(token: str) -> bool:
    """Whether ``token`` belongs to a script written without spaces (one character per token)."""
    return bool(token) and not token.isascii() and _HAS_CJK_RE.match(token) is not None


def join_tokens(tokens: tuple[str, ...] | list[str]) -> str:
    """Tokens as one string: separated by a space, except between two CJK characters."""
    parts: list[str] = []
    for i, tok in enumerate(tokens):
        if i and not (is_cjk(tok) and is_cjk(tokens[i - 1])):
            parts.append(" ")
        parts.append(tok)
    return "".join(parts)
