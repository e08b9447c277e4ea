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
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]
_ZERO = np.zeros(1, dtype=np.intp)


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
#: a letter or mark outside ASCII: any non-ASCII character, then told apart looking back (so that ``re``
#: skips to the next non-ASCII character at C speed)
_NON_ASCII_LETTER_RE = re.compile(rf"[^\x00-\x7f](?<=[\w{_MARKS}])")


def _bmp_word_chars() -> npt.NDArray[np.bool_]:
    """For each character up to U+FFFF, whether it is a word character (``_WORD_CHAR_RE``)."""
    table = np.zeros(0x10000, dtype=np.bool_)
    every = "".join(map(chr, range(0x10000)))
    table[[m.start() for m in _WORD_CHAR_RE.finditer(every)]] = True
    return table


_BMP_WORD_CHARS = _bmp_word_chars()
#: for ASCII text, as bytes: letters lower-cased, digits, '_' and apostrophes kept, anything else a space
_ASCII_WORDS = bytes(
    ord(chr(c).lower()) if c < 128 and (chr(c).isalnum() or chr(c) in "_'") else ord(" ") for c in range(256)
)
#: each apostrophe that does not join two word characters, in text spaced out by ``_ASCII_WORDS``: one with
#: a space, another apostrophe or either end of the text next to it
_LOOSE_APOSTROPHES_RE = re.compile("'(?:(?<![^ ']')|(?![^ ']))")
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
    return tokenise(text).tokens


class Tokenised:
    """A text's tokens, and the pieces tokenising took it in, for :func:`word_starts` to count them.

    Unless a token holds a space (a folded compatibility character), the tokens are kept as the words of one
    string (:attr:`words`) and split off it the first time they are asked for: an index can search the words
    as they are (:meth:`~monitor.topics.match.PreparedDocument.search_words`). A text that took the ASCII
    path as a whole (:attr:`plain`) is its one spaced piece, whose words, possessives dropped, are the words.
    """

    __slots__ = ("_tokens", "_words", "pieces", "plain")

    def __init__(
        self,
        tokens: list[str] | None,
        pieces: list[tuple[int, str, bool]],
        words: str | None = None,
        plain: bool = False,
    ) -> None:
        self._tokens = tokens
        #: (offset, text, spaced): the ASCII path's pieces made word characters and spaces one for one
        #: (``spaced``), the others as they were folded
        self.pieces = pieces
        self._words = words
        self.plain = plain

    @property
    def words(self) -> str | None:
        """The tokens as words separated by runs of spaces, when no token holds a space."""
        if self._words is None and self.plain:
            spaced = self.pieces[0][1]
            self._words = _POSSESSIVE_RE.sub("", spaced) if "'" in spaced else spaced
        return self._words

    @property
    def tokens(self) -> list[str]:
        tokens = self._tokens
        if tokens is None:
            words = self.words
            assert words is not None
            tokens = self._tokens = words.split()
        return tokens


def tokenise(text: str) -> Tokenised:
    """:func:`token_texts`, with the pieces of ``text`` they come from."""
    unified = text
    if not text.isascii():
        for apostrophe in _PUNCTUATION_APOSTROPHES:
            unified = unified.replace(apostrophe, "'")
    letters = [] if unified.isascii() else _non_ascii_letters(unified)
    if not letters:
        return Tokenised(None, [(0, _spaced(unified), True)], plain=True)
    if len(letters) > len(unified) // 16:
        return Tokenised(_folded_token_texts(unified), [(0, unified, False)])
    # the words of each piece (those of a folded piece joined by spaces), and the folded pieces' tokens
    parts: list[str] = []
    folded_tokens: dict[int, list[str]] = {}
    pieces: list[tuple[int, str, bool]] = []

    def add(start: int, end: int, folded: bool) -> None:
        piece = unified[start:end]
        if folded:
            folded_tokens[len(parts)] = found = _folded_token_texts(piece)
            parts.append(" ".join(found))
        else:
            piece = _spaced(piece)
            parts.append(_POSSESSIVE_RE.sub("", piece) if "'" in piece else piece)
        pieces.append((start, piece, not folded))

    done, n = 0, len(unified)
    for at in letters:
        if at < done:
            continue
        start, end = at, at + 1
        while start > done and not unified[start - 1].isspace():
            start -= 1
        while end < n and not unified[end].isspace():
            end += 1
        add(done, start, False)
        add(start, end, True)
        done = end
    add(done, n, False)
    if all(len(parts[i].split()) == len(found) for i, found in folded_tokens.items()):
        return Tokenised(None, pieces, " ".join(parts))  # no token holds a space: split when asked for
    tokens = [t for i, w in enumerate(parts) for t in (folded_tokens[i] if i in folded_tokens else w.split())]
    return Tokenised(tokens, pieces)


def _non_ascii_letters(text: str) -> list[int]:
    """Where ``text`` has letters (or marks) that are not ASCII: looked up in a table as arrays, unless the
    text has characters past U+FFFF."""
    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) != 2 * len(text):
        return [m.start() for m in _NON_ASCII_LETTER_RE.finditer(text)]
    codes = np.frombuffer(units, dtype=np.uint16)
    at = (codes > 0x7F).nonzero()[0]
    found: list[int] = at[_BMP_WORD_CHARS[codes[at]]].tolist()
    return found


def _spaced(text: str) -> str:
    """Such text, word characters lower-cased and apostrophes joining two of them kept, anything else a
    space: one character for one."""
    spaced = text.encode("ascii", "replace").translate(_ASCII_WORDS).decode("ascii")
    return _LOOSE_APOSTROPHES_RE.sub(" ", spaced) if "'" in spaced else spaced


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


#: the line breaks of the sentence pattern: every run of them ends a sentence. Opening with a character
#: rather than a repetition lets ``re`` skip to the next candidate at C speed (text with only "\n" for line
#: breaks, most, is looked through as an array instead).
_LINE_BREAKS_RE = re.compile("[\r\n\u2028\u2029][\r\n\u2028\u2029]*")


def sentence_breaks(text: str, start: int = 0, stop: int | None = None) -> list[int]:
    """Offsets in ``text`` where a new sentence starts, never inside a word (one regex, no Python loop).

    With ``start`` and ``stop``: those of one line (see :func:`line_breaks`), which do not depend on the
    other lines; and possibly the line's end too (after a full stop that the next line, starting in lower
    case, would have kept from ending a sentence), with no word between it and the line break.
    """
    found = _SENTENCE_END_RE.finditer(text, start, len(text) if stop is None else stop)
    ends = [m.end() for m in found]
    if ends and ends[-1] == len(text):
        ends.pop()
    return ends


def line_breaks(text: str) -> tuple[IntArray, IntArray]:
    """Where each run of line breaks in ``text`` starts, and where it ends (a sentence always ends there),
    but one ending the text. A text whose only line breaks are "\\n" (most) is looked through as an array of
    its characters (of its UTF-16 units, if none is past U+FFFF)."""
    codes: npt.NDArray[np.unsignedinteger[Any]] | None = None
    if "\r" in text or "\u2028" in text or "\u2029" in text:
        pass
    elif text.isascii():
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        units = text.encode("utf-16-le", "surrogatepass")
        if len(units) == 2 * len(text):
            codes = np.frombuffer(units, dtype=np.uint16)
    if codes is None:
        runs = [m.span() for m in _LINE_BREAKS_RE.finditer(text)]
        starts = np.array([a for a, _ in runs], dtype=np.intp)
        ends = np.array([b for _, b in runs], dtype=np.intp)
    else:
        at = (codes == ord("\n")).nonzero()[0]
        apart = at[1:] != at[:-1] + 1
        starts = at[np.concatenate([[True], apart])] if len(at) else at
        ends = at[np.concatenate([apart, [True]])] + 1 if len(at) else at
    if len(ends) and ends[-1] == len(text):
        return starts[:-1], ends[:-1]
    return starts, ends


def word_starts(pieces: list[tuple[int, str, bool]]) -> IntArray:
    """Where each token of a text starts, from the pieces :func:`tokenise` took it in: ``text[:offset]`` (not
    inside a word) gives as many tokens as there are starts before ``offset``. A few array operations for a
    spaced piece (one token a word); a folded one is tokenised again, with its tokens' spans."""
    found: list[IntArray] = [_ZERO[:0]]
    for offset, piece, spaced in pieces:
        if spaced:
            is_word = np.frombuffer(piece.encode("ascii"), dtype=np.uint8) != ord(" ")
            starts: IntArray = (is_word[1:] > is_word[:-1]).nonzero()[0] + (offset + 1)
            found += [_ZERO + offset, starts] if len(is_word) and is_word[0] else [starts]
        else:
            found.append(np.array([token.start + offset for token in tokenize(piece)], dtype=np.intp))
    return np.concatenate(found)
