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

import numpy as np


def _mark_ranges() -> tuple[str, str]:
    """All combining-mark code points (category M*) as two regex class bodies, inside and outside the BMP.

    ``re`` has no ``\\p{M}``. The two are kept apart because a class reaching past U+FFFF is checked range by
    range, which makes the word pattern three times slower; most texts have no character past U+FFFF.
    """
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

    def body(selected: list[tuple[int, int]]) -> str:
        return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in selected)

    return body([r for r in ranges if r[1] <= 0xFFFF]), body([r for r in ranges if r[1] > 0xFFFF])


_BMP_MARKS, _ASTRAL_MARKS = _mark_ranges()
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
#: the apostrophes that are punctuation; U+02BC is a letter, so a word can start or end with it
_PUNCTUATION_APOSTROPHES = "\u2019\u2018\uff07"
_MARKS = _BMP_MARKS + _ASTRAL_MARKS
_WORD_RE = re.compile(rf"[\w{_MARKS}]+(?:[{_APOSTROPHES}][\w{_MARKS}]+)*")
#: the same words in text without characters past U+FFFF (nearly all text), found three times faster
_BMP_WORD_RE = re.compile(rf"[\w{_BMP_MARKS}]+(?:[{_APOSTROPHES}][\w{_BMP_MARKS}]+)*")
_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")
_HAS_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_SPLIT_RE = re.compile(rf"[{_CJK}][{_MARKS}]*|[^{_CJK}]+")
_APOSTROPHE_TABLE = str.maketrans({c: "'" for c in _APOSTROPHES})
_WORD_CHAR_RE = re.compile(rf"[\w{_MARKS}]")
_NON_ASCII_RE = re.compile("[^\x00-\x7f]")
#: for ASCII text: letters lower-cased, digits, '_' and apostrophes kept, anything else a space
_ASCII_WORDS = str.maketrans(
    {chr(c): chr(c).lower() if chr(c).isalnum() or chr(c) in "_'" else " " for c in range(128)}
)
_APOSTROPHES_RE = re.compile("'+")
#: a lone apostrophe between two word characters, in text spaced out by ``_ASCII_WORDS``
_JOINING_APOSTROPHE_RE = re.compile("'(?<=[^ ']')(?=[^ '])")
#: a possessive at the end of a word, in words separated by spaces
_POSSESSIVE_RE = re.compile(r"'s(?= |\Z)")
#: the same in tokens joined by line breaks, which may start with anything (a dropped diacritic): a
#: possessive needs a character before it
_LONG_POSSESSIVE_RE = re.compile(r"(?<=[^\n])'s(?=\n|\Z)")
#: only these marks are dropped: the diacritics NFKD splits off Latin, Greek and Cyrillic letters. Marks that
#: carry meaning elsewhere (kana voicing, Indic vowel signs, Thai tone marks) are kept.
_DIACRITICS_RE = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


class Token(NamedTuple):
    """A normalised token and where it came from in the original string (``text[start:end]``)."""

    text: str
    start: int
    end: int


def _fold_text(text: str) -> str:
    """NFKD, diacritics dropped, NFC, casefold, NFC: per character, so a whole text folds like its words."""
    decomposed = _DIACRITICS_RE.sub("", unicodedata.normalize("NFKD", text))
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", decomposed).casefold())


_fold = lru_cache(maxsize=65536)(_fold_text)


def normalize(word: str) -> str:
    """Fold case, accents and compatibility forms of one word (ASCII takes a fast path)."""
    if word.isascii():
        return word.lower()
    return _fold(word.translate(_APOSTROPHE_TABLE))


def _token_text(word: str) -> str:
    """The token a word (or a CJK piece of one) gives: normalised, possessive dropped; '' for none."""
    norm = normalize(word)
    if len(norm) > 2 and norm.endswith("'s"):
        return norm[:-2]
    return norm


def _word_pattern(text: str) -> re.Pattern[str]:
    return _WORD_RE if _ASTRAL_RE.search(text) else _BMP_WORD_RE


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into normalised word tokens with their character spans in ``text``."""
    out: list[Token] = []
    for m in _word_pattern(text).finditer(text):
        word = m.group()
        if word.isascii() or not _HAS_CJK_RE.search(word):
            norm = _token_text(word)
            if norm:
                out.append(Token(norm, m.start(), m.end()))
            continue
        base = m.start()
        for piece in _CJK_SPLIT_RE.finditer(word):
            lead = len(piece.group()) - len(piece.group().lstrip(_APOSTROPHES))
            part = piece.group().strip(_APOSTROPHES)
            norm = _token_text(part) if part else ""
            if norm:
                start = base + piece.start() + lead
                out.append(Token(norm, start, start + len(part)))
    return out


def token_texts(text: str) -> list[str]:
    """``[t.text for t in tokenize(text)]``, several times faster: whole-string operations, no spans.

    Most of an English text is ASCII once its curly apostrophes are made straight, and takes a fast path:
    one table lower-cases it and turns every other character into a space, and a split gives the words.
    Only the whitespace-delimited chunks holding other letters (``Łódź``, ``习近平``) go through the word
    pattern and Unicode folding; a text made mostly of them goes through it as a whole.
    """
    unified = text
    if not text.isascii():
        for apostrophe in _PUNCTUATION_APOSTROPHES:
            unified = unified.replace(apostrophe, "'")
    if unified.isascii():
        return _ascii_token_texts(unified)
    letters = _non_ascii_letters(unified)
    if len(letters) > len(unified) // 16:
        return _folded_token_texts(unified)
    tokens: list[str] = []
    done, n = 0, len(unified)
    for at in letters:
        if at < done:
            continue
        start, end = at, at + 1
        while start > done and not unified[start - 1].isspace():
            start -= 1
        while end < n and not unified[end].isspace():
            end += 1
        tokens += _ascii_token_texts(unified[done:start])
        tokens += _folded_token_texts(unified[start:end])
        done = end
    tokens += _ascii_token_texts(unified[done:])
    return tokens


def _non_ascii_letters(text: str) -> list[int]:
    """Where ``text`` has letters (or marks) that are not ASCII."""
    return [m.start() for m in _NON_ASCII_RE.finditer(text) if _WORD_CHAR_RE.match(m.group())]


def _ascii_token_texts(text: str) -> list[str]:
    """Token texts of text whose only non-ASCII characters are punctuation, apostrophes made straight."""
    if not text.isascii():
        text = text.encode("ascii", "replace").decode("ascii")
    spaced = text.translate(_ASCII_WORDS)
    if "'" in spaced:
        spaced = _POSSESSIVE_RE.sub("", _APOSTROPHES_RE.sub(_inner_apostrophe, spaced))
    return spaced.split()


def _inner_apostrophe(m: re.Match[str]) -> str:
    """A lone apostrophe between two word characters joins them (``xi'an``); any other is a space."""
    start, end, spaced = m.start(), m.end(), m.string
    joins = end - start == 1 and start > 0 and end < len(spaced) and spaced[start - 1] != " " != spaced[end]
    return "'" if joins else " "


def _folded_token_texts(text: str) -> list[str]:
    """Token texts for text with non-ASCII letters: the words found by the pattern, folded all at once.

    They are joined by line breaks, which no word contains and no normalisation makes; words in scripts
    without spaces are first cut into their one-character pieces.
    """
    found: list[str] = _word_pattern(text).findall(text)
    if not found:
        return []
    if _HAS_CJK_RE.search(text):
        found = _cjk_pieces(found)
    joined = "\n".join(found)
    for apostrophe in _APOSTROPHES[1:]:
        joined = joined.replace(apostrophe, "'")
    joined = _fold_text(joined)
    if "'" in joined:
        joined = _LONG_POSSESSIVE_RE.sub("", joined)
    tokens = joined.split("\n")
    return [t for t in tokens if t] if "" in tokens else tokens


def word_spans(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each word of ``text``: the tokens' spans when every word is one token."""
    return [m.span() for m in _word_pattern(text).finditer(text)]


def has_cjk(text: str) -> bool:
    """Whether ``text`` has characters of a script written without spaces (its words give several tokens)."""
    return _HAS_CJK_RE.search(text) is not None


def _cjk_pieces(found: list[str]) -> list[str]:
    """Words, with those containing CJK characters cut into pieces as :func:`tokenize` does."""
    out: list[str] = []
    for word in found:
        if word.isascii() or not _HAS_CJK_RE.search(word):
            out.append(word)
        else:
            out += [p for p in (p.strip(_APOSTROPHES) for p in _CJK_SPLIT_RE.findall(word)) if p]
    return out


def words(text: str) -> list[str]:
    """The normalised tokens of ``text`` without their spans (for query words)."""
    return token_texts(text)


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


# --- sentences ----------------------------------------------------------------------------------------------

#: words before a full stop that do not end a sentence; single letters (initials, "U.S.", "e.g.") neither
_ABBREVIATION_LIST = (
    "mr mrs ms dr prof st jr sr gen gov sen rep lt col capt sgt adm maj cmdr rev hon pres mme mlle messrs "
    "inc ltd co corp bros vs approx dept fig vol pp cf jan feb mar apr jun jul aug sep sept oct nov dec"
)
_ABBREVIATIONS = frozenset(_ABBREVIATION_LIST.split())


def _abbreviation_guards() -> str:
    """Lookbehinds, just after a '.', that fail when an abbreviation or a single letter precedes it; one per
    length, as ``re`` needs a fixed width in each."""
    by_length: dict[int, list[str]] = {}
    for word in sorted(_ABBREVIATIONS):
        by_length.setdefault(len(word), []).append(word)
    guards = [rf"(?<!\b(?i:{'|'.join(words)})\.)" for _, words in sorted(by_length.items())]
    return r"(?<!\b\w\.)" + "".join(guards)


def _lowercase_ranges() -> str:
    """Lower-case letters up to U+FFFF as a regex class body (``re`` has no ``\\p{Ll}``)."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x10000):
        if chr(cp).islower():
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\u{a:04x}-\\u{b:04x}" if a != b else f"\\u{a:04x}" for a, b in ranges)


_CLOSERS = "[)\\]\"'\u201d\u2019\u00bb]*(?=\\s|\\Z)"
_NOT_BEFORE_LOWER = rf"(?!\s*[{_lowercase_ranges()}])"
#: after the first character of a run of . ! ? …: the run starts there
_RUN_START = "(?<![.!?\u2026].)"
#: where a sentence ends: after ! or ? (then closing quotes or brackets, then a space); after . or … the
#: same unless a lower-case word follows or, for '.', an abbreviation or a single letter precedes; after
#: 。！？; and at a line break, since extracted article text has one paragraph per line. The pattern opens
#: with the set of every first character and then tells them apart looking back, so that ``re`` skips to
#: the next candidate character at C speed (alternatives opening with classes would be tried at every one).
_SENTENCE_END_RE = re.compile(
    "[!?.\u2026\u3002\uff01\uff1f\r\n\u2028\u2029]"
    "(?:"
    rf"(?<=[!?]){_RUN_START}[.!?\u2026]*{_CLOSERS}"
    rf"|(?<=\.){_RUN_START}{_abbreviation_guards()}[.!?\u2026]*{_CLOSERS}{_NOT_BEFORE_LOWER}"
    rf"|(?<=\u2026){_RUN_START}[.!?\u2026]*{_CLOSERS}{_NOT_BEFORE_LOWER}"
    "|(?<=[\u3002\uff01\uff1f])[\u3002\uff01\uff1f]*[)\u300d\u300f\u201d\u2019\uff09]*"
    "|(?<=[\r\n\u2028\u2029])[\r\n\u2028\u2029]*"
    ")"
)


def sentence_breaks(text: str) -> list[int]:
    """Offsets in ``text`` where a new sentence starts, never inside a word (one regex, no Python loop)."""
    ends = [m.end() for m in _SENTENCE_END_RE.finditer(text)]
    if ends and ends[-1] == len(text):
        ends.pop()
    return ends


def sentence_starts(text: str) -> list[int]:
    """The index in ``token_texts(text)`` of each sentence's first token, beginning with 0."""
    starts = [0]
    for count in _tokens_before(text, sentence_breaks(text)):
        if count != starts[-1]:
            starts.append(count)
    return starts


def _tokens_before(text: str, offsets: list[int]) -> list[int]:
    """How many tokens ``text[:offset]`` gives, for each of ``offsets`` (ascending, never inside a word).

    Where the ASCII path of :func:`token_texts` would take the text, that is the number of words starting
    before the offset in the text made spaces and word characters one for one, counted for all offsets at
    once. A stretch between two offsets holding other letters is tokenised on its own.
    """
    if not offsets:
        return []
    unified = text
    for apostrophe in _PUNCTUATION_APOSTROPHES:
        unified = unified.replace(apostrophe, "'")
    spaced = unified.encode("ascii", "replace").decode("ascii").translate(_ASCII_WORDS)
    if "'" in spaced:  # an apostrophe joining two word characters is part of a word, any other a space
        spaced = _JOINING_APOSTROPHE_RE.sub("_", spaced).replace("'", " ")
    is_word = np.frombuffer(spaced.encode("ascii"), dtype=np.uint8) != ord(" ")
    word_starts = (is_word[1:] > is_word[:-1]).nonzero()[0] + 1
    counts = word_starts.searchsorted(offsets) + int(is_word[0])
    letters = _non_ascii_letters(unified)
    if letters:
        ends = [*offsets, len(text)]
        sizes = np.diff(counts, prepend=0)
        for i in dict.fromkeys(np.searchsorted(ends, letters, side="right").tolist()):
            if i < len(offsets):
                sizes[i] = len(token_texts(text[ends[i - 1] if i else 0 : ends[i]]))
        counts = np.cumsum(sizes)
    found: list[int] = counts.tolist()
    return found
