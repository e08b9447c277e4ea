"""Evaluating a compiled query against a prepared article: the boolean answer, a score and an explanation.

An article is tokenised once (:func:`prepare`) into title and body tokens indexed by token, so every topic
is evaluated by dictionary lookups. The score is meant to be read by a person:

* each occurrence of a term weighs ``TITLE_WEIGHT`` in the title; in the body ``EARLY_WEIGHT`` in the lead
  (first ``EARLY_WORDS`` words or ``EARLY_FRACTION`` of the body), decaying towards ``DEEP_WEIGHT`` after it;
* occurrences within ``SAME_BREATH`` words are one mention ("Xi Jinping ... President Xi");
* a term's evidence is ``1 - prod(1 - w_k * REPEAT**k)`` over its mentions, heaviest first, so repetition
  helps with diminishing returns;
* AND takes the weakest child, OR the strongest, NEAR the weakest plus a bonus for closeness; NOT and field
  filters only gate.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from monitor.topics.query import And, CompiledQuery, FieldFilter, InTitle, Near, Node, Not, Or, Term
from monitor.topics.text import tokenize

TITLE_WEIGHT = 0.6
EARLY_WEIGHT = 0.35
DEEP_WEIGHT = 0.1
EARLY_WORDS = 100
EARLY_FRACTION = 0.15
#: after the lead, a mention loses ``1 - exp(-DECAY)`` of its extra weight per lead-length of distance
DECAY = 2.0
SAME_BREATH = 5
REPEAT = 0.6
NEAR_BONUS = 0.15
SNIPPET_WIDTH = 200

TITLE, BODY = 0, 1
_BOTH = (TITLE, BODY)
_TITLE_ONLY = (TITLE,)


@dataclass(frozen=True, slots=True)
class Document:
    """What the matcher sees of an article."""

    title: str
    text: str
    site: str | None = None
    lang: str | None = None
    feed: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """Why and how strongly a document matched: score in [0, 1], matched terms as written, a snippet."""

    score: float
    matched: list[str]
    snippet: str


class PreparedDocument:
    """A document tokenised once: per field (title, body) its tokens, their spans and token -> positions."""

    __slots__ = ("_cache", "_early", "document", "index", "spans", "tokens")

    def __init__(self, document: Document) -> None:
        self.document = document
        fields = [tokenize(document.title), tokenize(document.text)]
        self.tokens: tuple[list[str], list[str]] = ([t.text for t in fields[0]], [t.text for t in fields[1]])
        self.spans: tuple[list[tuple[int, int]], ...] = tuple([(t.start, t.end) for t in f] for f in fields)
        self.index: tuple[dict[str, list[int]], dict[str, list[int]]] = ({}, {})
        for toks, index in zip(self.tokens, self.index, strict=True):
            for pos, tok in enumerate(toks):
                index.setdefault(tok, []).append(pos)
        self._early = max(EARLY_WORDS, EARLY_FRACTION * len(self.tokens[BODY]))
        self._cache: dict[tuple[tuple[str, ...], tuple[bool, ...], int], list[int]] = {}

    def find(self, term: Term, field: int) -> list[int]:
        """Start positions of ``term`` in ``field`` (memoised: many topics share terms)."""
        key = (term.tokens, term.prefix, field)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._find(term.tokens, term.prefix, field)
        return found

    def _find(self, tokens: tuple[str, ...], prefix: tuple[bool, ...], field: int) -> list[int]:
        index, toks = self.index[field], self.tokens[field]
        if prefix[0]:
            starts = sorted(p for tok, ps in index.items() if tok.startswith(tokens[0]) for p in ps)
        else:
            starts = index.get(tokens[0], [])
        if len(tokens) == 1 or not starts:
            return starts
        if any(t not in index for t, p in zip(tokens, prefix, strict=True) if not p):
            return []
        k, n = len(tokens), len(toks)
        rest = range(1, k)
        return [
            s
            for s in starts
            if s + k <= n
            and all(
                toks[s + i] == tokens[i] or (prefix[i] and toks[s + i].startswith(tokens[i])) for i in rest
            )
        ]

    def weight(self, field: int, pos: int) -> float:
        """How much one mention at token ``pos`` of ``field`` says about what the article is about."""
        if field == TITLE:
            return TITLE_WEIGHT
        if pos < self._early:
            return EARLY_WEIGHT
        fade = math.exp(-DECAY * (pos - self._early) / self._early)
        return DEEP_WEIGHT + (EARLY_WEIGHT - DEEP_WEIGHT) * fade


def prepare(doc: Document) -> PreparedDocument:
    """Tokenise and index ``doc`` once, for evaluation against every topic."""
    return PreparedDocument(doc)


class _Hit(NamedTuple):
    column: int  # of the term in the query: identifies it and orders ``matched``
    source: str
    field: int
    start: int
    end: int  # exclusive token position
    weight: float


class _Res(NamedTuple):
    score: float | None  # None: true, but without evidence of its own (NOT, field filters)
    hits: list[_Hit]


def _evidence(hits: Sequence[_Hit]) -> float:
    """Noisy-OR of one term's mentions, heaviest first, each later one discounted by ``REPEAT``."""
    weights: list[float] = []
    last: tuple[int, int] | None = None
    for h in sorted(hits, key=lambda h: (h.field, h.start)):
        if last is not None and last[0] == h.field and h.start - last[1] <= SAME_BREATH:
            weights[-1] = max(weights[-1], h.weight)
        else:
            weights.append(h.weight)
        last = (h.field, h.start)
    weights.sort(reverse=True)
    miss = 1.0
    for k, w in enumerate(weights[:16]):
        miss *= 1.0 - w * REPEAT**k
    return 1.0 - miss


def _best_term_evidence(hits: Sequence[_Hit]) -> float:
    by_term: dict[int, list[_Hit]] = {}
    for h in hits:
        by_term.setdefault(h.column, []).append(h)
    return max(_evidence(hs) for hs in by_term.values())


def _term_hits(term: Term, doc: PreparedDocument, fields: tuple[int, ...]) -> list[_Hit]:
    k = len(term.tokens)
    col, src = term.column, term.source
    return [_Hit(col, src, f, s, s + k, doc.weight(f, s)) for f in fields for s in doc.find(term, f)]


def _literal_hits(node: Node, doc: PreparedDocument, fields: tuple[int, ...]) -> list[_Hit]:
    if isinstance(node, Term):
        return _term_hits(node, doc, fields)
    assert isinstance(node, Or)  # the parser allows only terms and OR-groups of them around NEAR
    return [h for c in node.children for h in _literal_hits(c, doc, fields)]


def _near(node: Near, doc: PreparedDocument, fields: tuple[int, ...]) -> _Res | None:
    left, right = _literal_hits(node.left, doc, fields), _literal_hits(node.right, doc, fields)
    if not left or not right:
        return None
    n = node.distance
    keep_left: set[_Hit] = set()
    keep_right: set[_Hit] = set()
    closest = n + 1
    longest = max(h.end - h.start for h in right)
    for f in fields:
        rights = sorted((h for h in right if h.field == f), key=lambda h: h.start)
        starts = [h.start for h in rights]
        for lh in (h for h in left if h.field == f):
            for rh in rights[bisect_left(starts, lh.start - n - longest) :]:
                if rh.start > lh.end - 1 + n:
                    break
                gap = max(rh.start - (lh.end - 1), lh.start - (rh.end - 1))
                if 1 <= gap <= n:
                    keep_left.add(lh)
                    keep_right.add(rh)
                    closest = min(closest, gap)
    if not keep_left:
        return None
    base = min(_best_term_evidence(list(keep_left)), _best_term_evidence(list(keep_right)))
    score = min(1.0, base + NEAR_BONUS * (n - closest + 1) / n)
    return _Res(score, sorted(keep_left | keep_right, key=lambda h: (h.field, h.start)))


def _site_host(value: str) -> str:
    host = urlsplit(value).hostname or "" if "://" in value else value.split("/", 1)[0]
    return host.casefold().removeprefix("www.")


def _field_ok(node: FieldFilter, doc: Document) -> bool:
    value: str | None = getattr(doc, node.field)
    if not value:
        return False
    have, want = value.strip().casefold(), node.value
    if node.field == "site":
        host, want = _site_host(have), _site_host(want)
        return bool(want) and (host == want or host.endswith("." + want))
    if node.field == "lang":
        have = have.replace("_", "-")
        return have == want or have.startswith(want + "-")
    return have == want


def _eval(node: Node, doc: PreparedDocument, fields: tuple[int, ...]) -> _Res | None:
    """The node's truth (None when false), its evidence and the hits that made it true."""
    if isinstance(node, Term):
        hits = _term_hits(node, doc, fields)
        return _Res(_evidence(hits), hits) if hits else None
    if isinstance(node, And):
        scores: list[float] = []
        hits = []
        for c in node.children:
            r = _eval(c, doc, fields)
            if r is None:
                return None
            if r.score is not None:
                scores.append(r.score)
            hits += r.hits
        return _Res(min(scores) if scores else None, hits)
    if isinstance(node, Or):
        results = [r for r in (_eval(c, doc, fields) for c in node.children) if r is not None]
        if not results:
            return None
        scored = [r.score for r in results if r.score is not None]
        return _Res(max(scored) if scored else None, [h for r in results for h in r.hits])
    if isinstance(node, Not):
        return _Res(None, []) if _eval(node.child, doc, fields) is None else None
    if isinstance(node, Near):
        return _near(node, doc, fields)
    if isinstance(node, InTitle):
        return _eval(node.child, doc, _TITLE_ONLY)
    return _Res(None, []) if _field_ok(node, doc.document) else None


def evaluate(query: CompiledQuery, doc: PreparedDocument) -> Match | None:
    """Match ``doc`` against ``query``: None when the boolean query is false, else score and explanation."""
    res = _eval(query.root, doc, _BOTH)
    if res is None:
        return None
    score = round(min(1.0, max(0.0, res.score or 0.0)), 3)
    matched = list(dict.fromkeys(h.source for h in sorted(res.hits, key=lambda h: h.column)))
    return Match(score, matched, _snippet(doc, res.hits))


_SPACE_RE = re.compile(r"\s")


def _snippet(doc: PreparedDocument, hits: list[_Hit]) -> str:
    """About ``SNIPPET_WIDTH`` characters of the original body (title if no body hit) around the best hit."""
    field = BODY if any(h.field == BODY for h in hits) else TITLE
    text = doc.document.text if field == BODY else doc.document.title
    spans = doc.spans[field]
    found = sorted({(spans[h.start][0], spans[h.end - 1][1], h.column) for h in hits if h.field == field})
    if not found:
        return " ".join(text[:SNIPPET_WIDTH].split())
    half = SNIPPET_WIDTH // 2

    def variety(c: tuple[int, int, int]) -> tuple[int, int]:
        return len({col for s, _, col in found if abs(s - c[0]) <= half}), -c[0]

    a, b, _ = max(found[:64], key=variety)
    start = max(0, (a + b) // 2 - half)
    end = min(len(text), start + SNIPPET_WIDTH)
    start = min(max(0, end - SNIPPET_WIDTH), a)
    end = max(end, b)
    if start > 0:
        m = _SPACE_RE.search(text, start, a)
        start = m.end() if m else start
    if end < len(text):
        cut = max(text.rfind(" ", b, end), text.rfind("\n", b, end))
        end = cut if cut >= 0 else end
    parts: list[str] = []
    pos = start
    for s, e in _merge((s, e) for s, e, _ in found if s >= start and e <= end):
        parts += [text[pos:s], "«", text[s:e], "»"]
        pos = e
    parts.append(text[pos:end])
    lead = "…" if text[:start].strip() else ""
    tail = "…" if text[end:].strip() else ""
    return lead + " ".join("".join(parts).split()) + tail


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping spans (a phrase and a word inside it) become one marked span."""
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged
