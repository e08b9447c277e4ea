"""Evaluating a compiled query against a prepared article: the boolean answer, a score and an explanation.

An article is tokenised once (:func:`prepare`), and every topic is evaluated by lookups in what that built;
positions, sentences and character spans are worked out the first time a topic needs them. The score is
meant to be read by a person:

* each occurrence of a term weighs ``TITLE_WEIGHT`` in the title; in the body ``EARLY_WEIGHT`` in the lead
  (first ``EARLY_WORDS`` words or ``EARLY_FRACTION`` of the body), decaying towards ``DEEP_WEIGHT`` after it;
* occurrences within ``SAME_BREATH`` words are one mention ("Xi Jinping ... President Xi");
* a term's evidence is ``1 - prod(1 - w_k * REPEAT**k)`` over its mentions, heaviest first, so repetition
  helps with diminishing returns;
* AND takes the weakest child, OR the strongest, NEAR and SENTENCE the weakest plus a bonus for closeness;
  NOT and field filters only gate.

A :class:`Match` says which terms matched, how often in the title and in the body (:class:`Clause`), and
cuts its snippet from the original text when it is first read.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from monitor.topics.query import (
    Alias,
    And,
    CompiledQuery,
    FieldFilter,
    InTitle,
    Near,
    Node,
    Not,
    Or,
    Sentence,
    Term,
)
from monitor.topics.text import (
    IntArray,
    Tokenised,
    has_cjk,
    line_breaks,
    sentence_breaks,
    tokenise,
    tokenize,
    word_spans,
    word_starts,
)

TITLE_WEIGHT = 0.6
EARLY_WEIGHT = 0.35
DEEP_WEIGHT = 0.1
EARLY_WORDS = 100
EARLY_FRACTION = 0.15
#: after the lead, a mention loses ``1 - exp(-DECAY)`` of its extra weight per lead-length of distance
DECAY = 2.0
SAME_BREATH = 5
#: mentions that count towards a term's evidence, heaviest first
MAX_MENTIONS = 16
REPEAT = 0.6
NEAR_BONUS = 0.15
#: SENTENCE's closeness bonus is NEAR's for a distance of this many words
SENTENCE_REACH = 25
SNIPPET_WIDTH = 200
#: distinct tokens looked up by scanning a field's token list before indexing the whole field is cheaper
SCANS_BEFORE_INDEX = 24

TITLE, BODY = 0, 1
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
#: a shared node's value when false, and when true without evidence of its own (NOT, field filters)
FALSE = -2.0
NO_SCORE = -1.0
_BOTH = (TITLE, BODY)
_TITLE_ONLY = (TITLE,)
#: ``REPEAT**k`` for the k-th mention
_DISCOUNTS = [REPEAT**k for k in range(MAX_MENTIONS)]
_DISCOUNT_ARRAY = np.array(_DISCOUNTS)


@dataclass(frozen=True, slots=True)
class Document:
    """What the matcher sees of an article."""

    title: str
    text: str
    site: str | None = None
    lang: str | None = None
    feed: str | None = None


@dataclass(frozen=True, slots=True)
class Clause:
    """One matched positive term and how often it occurred where, counting the occurrences that made the
    query true (for NEAR and SENTENCE, the close ones)."""

    term: str  #: as the user wrote it, e.g. ``"xi jinping"`` or ``putin*``
    title: int  #: occurrences in the title
    body: int  #: occurrences in the body


class Match:
    """Why and how strongly a document matched: a score in [0, 1], the matched terms as written (query
    order), where each occurred (:attr:`explanation`), and a snippet of the text around them.

    The score is worked out at once; the rest when first read, because of a large topic set most matches
    fall under their topic's minimum score and are never shown.
    """

    __slots__ = ("_at", "_doc", "_explanation", "_found", "_roots", "_snippet", "score")

    def __init__(
        self,
        score: float,
        found: list[_Found] | None,
        doc: PreparedDocument,
        roots: Sequence[Node] = (),
        at: int = 0,
    ) -> None:
        """``found`` may be None when the query's tree is given as ``roots[at]``: the occurrences are then
        found on first read, by evaluating it again. (A :class:`TopicIndex` scores without collecting them,
        and hands its list of trees, so that a match is made without reaching the tree itself.)"""
        self.score = score
        self._found = found
        self._roots = roots
        self._at = at
        self._doc = doc
        self._explanation: list[Clause] | None = None
        self._snippet: str | None = None

    def _occurrences(self) -> list[_Found]:
        found = self._found
        if found is None:
            res = _eval(self._roots[self._at], self._doc, _BOTH)
            found = self._found = res.found if res is not None else []
        return found

    @property
    def explanation(self) -> list[Clause]:
        """One clause per matched positive term (the same term written twice is one), in query order."""
        if self._explanation is None:
            self._explanation = _explain(self._occurrences())
        return self._explanation

    @property
    def matched(self) -> list[str]:
        """The matched positive terms as the user wrote them, in query order."""
        return [c.term for c in self.explanation]

    @property
    def snippet(self) -> str:
        """About ``SNIPPET_WIDTH`` characters of the body (or title) around the hits, marked «…»."""
        if self._snippet is None:
            self._snippet = _snippet(self._doc, self._occurrences())
        return self._snippet

    def summary(self) -> str:
        """The explanation on one line, for a digest: ``"xi jinping": title + 4× body; putin*: 3× body``."""
        return summarize(self.explanation)

    def __repr__(self) -> str:
        return f"Match(score={self.score!r}, explanation={self.explanation!r})"


def summarize(explanation: Iterable[Clause]) -> str:
    """An explanation on one line: each term and where it occurred."""
    return "; ".join(f"{c.term}: {_where(c)}" for c in explanation)


def _where(clause: Clause) -> str:
    parts = [
        name if count == 1 else f"{count}× {name}"
        for name, count in (("title", clause.title), ("body", clause.body))
        if count
    ]
    return " + ".join(parts)


def trigger(term: Term) -> str:
    """The string that occurs in a document's :attr:`PreparedDocument.stream` wherever ``term`` does.

    Whole tokens keep a space on both sides; the string stops after the first prefix token, since what
    follows it in the document is unknown.
    """
    return _trigger_of(term.tokens, term.prefix)


@lru_cache(maxsize=1 << 18)
def _trigger_of(tokens: tuple[str, ...], prefix: tuple[bool, ...]) -> str:
    if True in prefix:
        return " " + " ".join(tokens[: prefix.index(True) + 1])
    return " " + " ".join(tokens) + " "


class _Presearch:
    """Where a presearch found its triggers in a document, as token positions: the title's tokens numbered
    first, then the body's."""

    #: occurrences made lists at once when first asked about (see :meth:`occurrences`)
    LISTED = 4096

    __slots__ = ("_found", "_lists", "firsts", "positions", "present", "titles", "trigger_ids")

    def __init__(
        self,
        present: IntArray,
        firsts: IntArray,
        positions: IntArray,
        titles: int,
        trigger_ids: Mapping[str, int],
    ) -> None:
        #: the trigger ids found, ascending
        self.present = present
        #: the occurrences of ``present[i]`` are ``positions[firsts[i]:firsts[i + 1]]``, ascending
        self.firsts = firsts
        self.positions = positions
        #: how many tokens the title has
        self.titles = titles
        #: trigger string -> id, of every trigger looked for
        self.trigger_ids = trigger_ids
        self._lists: tuple[list[int], list[int], list[int], list[int]] | None = None
        self._found: dict[int, tuple[list[int], list[int]]] = {}

    def occurrences(self, trigger_id: int) -> tuple[list[int], list[int]]:
        """Where ``trigger_id`` occurs in the title, and in the body (counted from its first token),
        memoised. Up to ``LISTED`` occurrences in all, they are made lists at once, to be sliced; beyond, a
        long transcript's, only those of the triggers asked about are."""
        found = self._found.get(trigger_id)
        if found is not None:
            return found
        if self._lists is None:
            positions = self.positions
            small = len(positions) <= self.LISTED
            self._lists = (
                self.present.tolist(),
                self.firsts.tolist(),
                positions.tolist() if small else [],
                (positions - self.titles).tolist() if small else [],
            )
        present, firsts, listed, in_body = self._lists
        i = bisect_left(present, trigger_id)
        if i == len(present) or present[i] != trigger_id:
            found = [], []
        elif listed:
            lo, hi = firsts[i], firsts[i + 1]
            split = bisect_left(listed, self.titles, lo, hi)
            found = listed[lo:split], in_body[split:hi]
        else:
            positions = self.positions[firsts[i] : firsts[i + 1]]
            split = int(positions.searchsorted(self.titles))
            found = positions[:split].tolist(), (positions[split:] - self.titles).tolist()
        self._found[trigger_id] = found
        return found


def _lead(body_tokens: int) -> float:
    """How many words of a body of ``body_tokens`` tokens are its lead (weigh ``EARLY_WEIGHT``)."""
    return max(EARLY_WORDS, EARLY_FRACTION * body_tokens)


class PreparedDocument:
    """A document tokenised once, per field (title, body); what only some topics need is built on first use.

    The tokens, the presearch stream, a field's token -> positions index, its character spans (for snippets)
    and its sentences (for SENTENCE) are built the first time they are asked for: an index searching a long
    text as words (:meth:`search_words`) needs no token made a string. Term positions are memoised, and read
    from a presearch's findings when one was recorded (:meth:`record_presearch`).
    """

    __slots__ = (
        "__dict__",  # for tokens, a cached property
        "_body",
        "_cache",
        "_early",
        "_evidence",
        "_index",
        "_presearch",
        "_scanned",
        "_sentences",
        "_sorted_vocabulary",
        "_spans",
        "_stream",
        "_title",
        "_vocabulary",
        "_word_starts",
        "document",
    )

    def __init__(self, document: Document) -> None:
        self.document = document
        self._title, self._body = tokenise(document.title), tokenise(document.text)
        self._cache: dict[tuple[tuple[str, ...], tuple[bool, ...], int], list[int]] = {}
        self._evidence: dict[tuple[tuple[str, ...], tuple[bool, ...], tuple[int, ...]], float] = {}
        self._index: list[dict[str, list[int]] | None] = [None, None]
        self._scanned: tuple[dict[str, list[int]], dict[str, list[int]]] = ({}, {})
        self._vocabulary: list[set[str] | None] = [None, None]
        self._sorted_vocabulary: list[list[str] | None] = [None, None]
        self._spans: list[list[tuple[int, int]] | None] = [None, None]
        self._sentences: list[_Sentences | None] = [None, None]
        #: where each token of a field starts in its text, if a presearch found it
        self._word_starts: list[IntArray | None] = [None, None]
        self._stream: str | None = None
        self._presearch: _Presearch | None = None
        #: the lead: how many words of the body weigh ``EARLY_WEIGHT``, set with the number of body tokens (by
        #: :attr:`tokens` or a presearch), before any position is known to weigh
        self._early = math.nan

    @cached_property
    def tokens(self) -> tuple[list[str], list[str]]:
        """Title and body tokens, split off the fields' words the first time they are asked for (an index
        searching a long text as words never does)."""
        tokens = self._title.tokens, self._body.tokens
        self._early = _lead(len(tokens[BODY]))
        return tokens

    @property
    def stream(self) -> str:
        """Title and body tokens, each with a space on both sides, the fields apart by a line break.

        A term occurs only if ``" " + " ".join(tokens) + " "`` does (without the last space for a prefix): the
        string a presearch's triggers are (:func:`trigger`).
        """
        if self._stream is None:
            title, body = self.tokens
            self._stream = f" {' '.join(title)} \n {' '.join(body)} "
        return self._stream

    def search_tokens(self) -> tuple[list[str], bool]:
        """What a presearch looks through, as pieces a trigger's space-separated parts are compared with: the
        title's tokens, a line break, the body's; and whether those are the tokens one for one. They are not
        when a token holds a space (a compatibility character folded to words): the pieces are then the
        :attr:`stream` cut at every space, so that a trigger is found exactly where it occurs in the stream.
        """
        if not self._aligned():
            return self.stream[1:-1].split(" "), False
        return [*self._title.tokens, "\n", *self._body.tokens], True

    def search_words(self) -> tuple[str, bool, bool]:
        """:meth:`search_tokens` as one string whose runs of characters other than a space are the pieces
        (a space first and last); whether those are the tokens one for one; and whether the string is the
        fields spaced out (:attr:`Tokenised.plain`), one character for one, so that a piece ending with "'s"
        is a token without it (a possessive) and a body piece starts where a body word does. Otherwise the
        fields give their words (:attr:`Tokenised.words`), joined only if tokenising did not. A token
        holding a space is two runs (where :meth:`search_tokens` cuts the stream at every space, which can
        give an empty piece): the triggers found are the same, or more, and their positions are not used.
        """
        title, body = self._title, self._body
        if title.plain and body.plain:
            return f" {title.pieces[0][1]} \n {body.pieces[0][1]} ", True, True
        words = (t.words if t.words is not None else " ".join(t.tokens) for t in (title, body))
        return " {} \n {} ".format(*words), self._aligned(), False

    def _aligned(self) -> bool:
        """Whether no token holds a space (only folding a compatibility character can give one some; a field
        with :attr:`Tokenised.words` has none)."""
        title, body = self._title, self._body
        if title.words is not None and body.words is not None:
            return True
        return all(t.words is not None or " " not in "".join(t.tokens) for t in (title, body))

    @property
    def title_tokens(self) -> int:
        """How many tokens the title has (the body's are not split off for this)."""
        return len(self._title.tokens)

    def record_presearch(
        self,
        present: IntArray,
        firsts: IntArray,
        positions: IntArray,
        trigger_ids: Mapping[str, int],
        starts: IntArray | None = None,
    ) -> None:
        """Keep where a presearch over :meth:`search_tokens` (one for one with the tokens) found its triggers,
        to locate and score terms from: the occurrences of ``present[i]`` (ascending trigger ids) are at
        ``positions[firsts[i]:firsts[i + 1]]``, ascending, the title's tokens numbered first, then the
        body's; ``trigger_ids`` (trigger string -> id) tells what the search looked for. ``starts``, if the
        search was over :meth:`search_words`, are where its pieces start there: they count the body's tokens,
        and are where its words start if the fields were spaced out."""
        titles = self.title_tokens
        self._presearch = _Presearch(present, firsts, positions, titles, trigger_ids)
        if starts is None:
            self._early = _lead(len(self._body.tokens))
            return
        self._early = _lead(len(starts) - titles - 1)
        if self._title.plain and self._body.plain:  # " title \n body ": the body starts 4 characters on
            self._word_starts[BODY] = starts[titles + 1 :] - (len(self.document.title) + 4)

    def forget_presearch(self) -> None:
        """Drop what a presearch recorded: terms are then looked for in the tokens."""
        self._presearch = None

    @property
    def presearched(self) -> bool:
        """Whether a presearch's findings are recorded (:meth:`term_values` needs them)."""
        return self._presearch is not None

    def find(self, term: Term, field: int) -> list[int]:
        """Start positions of ``term`` in ``field`` (memoised: many topics share terms)."""
        key = (term.tokens, term.prefix, field)
        found = self._cache.get(key)
        if found is None:
            in_stream = self._from_presearch(term)
            if in_stream is not None:
                self._cache[(term.tokens, term.prefix, TITLE)] = in_stream[TITLE]
                self._cache[(term.tokens, term.prefix, BODY)] = in_stream[BODY]
                return in_stream[field]
            found = self._cache[key] = self._find(term.tokens, term.prefix, field)
        return found

    def located(self, trigger_id: int) -> tuple[list[int], list[int]] | None:
        """Where the trigger ``trigger_id`` of the recorded presearch occurs, in the title and in the body;
        None if no presearch was recorded or for -1 (no trigger)."""
        presearch = self._presearch
        if presearch is None or trigger_id < 0:
            return None
        return presearch.occurrences(trigger_id)

    def _from_presearch(self, term: Term) -> tuple[list[int], list[int]] | None:
        """The term's positions in title and body from a recorded presearch, or None when it tells nothing
        about the term."""
        presearch = self._presearch
        if presearch is None or any(term.prefix[:-1]):  # a prefix inside: the trigger stops there
            return None
        trigger_id = presearch.trigger_ids.get(_trigger_of(term.tokens, term.prefix))
        if trigger_id is None:
            return None
        return presearch.occurrences(trigger_id)

    def _find(self, tokens: tuple[str, ...], prefix: tuple[bool, ...], field: int) -> list[int]:
        if len(tokens) == 1:
            return self._prefixed(field, tokens[0]) if prefix[0] else self.positions(field, tokens[0])
        vocabulary = self.vocabulary(field)
        if any(t not in vocabulary for t, p in zip(tokens, prefix, strict=True) if not p):
            return []
        # the phrase is found from its rarest whole word; a phrase of prefixes only, from its first
        whole = [
            (len(self.positions(field, t)), i)
            for i, (t, p) in enumerate(zip(tokens, prefix, strict=True))
            if not p
        ]
        at = min(whole)[1] if whole else 0
        anchors = self.positions(field, tokens[at]) if whole else self._prefixed(field, tokens[0])
        toks, k, n = self.tokens[field], len(tokens), len(self.tokens[field])
        others = [i for i in range(k) if i != at]
        return [
            s
            for s in (a - at for a in anchors)
            if s >= 0
            and s + k <= n
            and all(
                toks[s + i] == tokens[i] or (prefix[i] and toks[s + i].startswith(tokens[i])) for i in others
            )
        ]

    def vocabulary(self, field: int) -> set[str]:
        """The distinct tokens of ``field``."""
        found = self._vocabulary[field]
        if found is None:
            found = self._vocabulary[field] = set(self.tokens[field])
        return found

    def positions(self, field: int, token: str) -> list[int]:
        """Where ``token`` occurs in ``field``, ascending.

        The first few tokens asked for are found by scanning the token list (C speed); once more are asked
        for, the whole field is indexed, which costs about as much as ``SCANS_BEFORE_INDEX`` scans.
        """
        index = self._index[field]
        if index is not None:
            return index.get(token, [])
        scanned = self._scanned[field]
        found = scanned.get(token)
        if found is not None:
            return found
        if len(scanned) >= SCANS_BEFORE_INDEX:
            return self._build_index(field).get(token, [])
        found = []
        if token in self.vocabulary(field):
            toks, at = self.tokens[field], -1
            try:
                while True:
                    at = toks.index(token, at + 1)
                    found.append(at)
            except ValueError:
                pass
        scanned[token] = found
        return found

    def _build_index(self, field: int) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for pos, tok in enumerate(self.tokens[field]):
            found = index.get(tok)
            if found is None:
                index[tok] = [pos]
            else:
                found.append(pos)
        self._index[field] = index
        return index

    def _prefixed(self, field: int, start: str) -> list[int]:
        """Positions of the tokens starting with ``start``, ascending."""
        ordered = self._sorted_vocabulary[field]
        if ordered is None:
            ordered = self._sorted_vocabulary[field] = sorted(self.vocabulary(field))
        found: list[int] = []
        for i in range(bisect_left(ordered, start), len(ordered)):
            if not ordered[i].startswith(start):
                break
            found += self.positions(field, ordered[i])
        return sorted(found)

    def spans(self, field: int) -> list[tuple[int, int]]:
        """Each token's ``(start, end)`` in the field's original text.

        One token per word is the rule (no CJK, no word folding to nothing); then the words' spans are the
        tokens', found without normalising anything again.
        """
        found = self._spans[field]
        if found is None:
            text = self.document.title if field == TITLE else self.document.text
            found = [] if has_cjk(text) else word_spans(text)
            if len(found) != len(self.tokens[field]):
                found = [(t.start, t.end) for t in tokenize(text)]
            self._spans[field] = found
        return found

    def evidence(self, term: Term, fields: tuple[int, ...]) -> float:
        """How strongly the occurrences of ``term`` in ``fields`` say the article is about it (memoised)."""
        key = (term.tokens, term.prefix, fields)
        found = self._evidence.get(key)
        if found is None:
            found = self._evidence[key] = _evidence(
                [w for f in fields for w in _mention_weights(self, f, self.find(term, f))]
            )
        return found

    def term_value(self, term: Term, fields: tuple[int, ...], trigger_id: int = -1) -> float:
        """The term's :meth:`evidence` when it occurs in ``fields``, else :data:`FALSE`. ``trigger_id``, that
        of the term's :func:`trigger` in the recorded presearch if it looked for it (and no prefix is inside
        the term), lets the presearch's findings answer."""
        presearch = self._presearch
        if trigger_id >= 0 and presearch is not None:
            return self._evidence_at(*presearch.occurrences(trigger_id), fields)
        if not any([self.find(term, f) for f in fields]):
            return FALSE
        return self.evidence(term, fields)

    def _evidence_at(self, title: list[int], body: list[int], fields: tuple[int, ...]) -> float:
        """:meth:`evidence` of a term at ``title`` and ``body`` (ascending positions), :data:`FALSE` if not
        in ``fields``.

        Mentions are found as :func:`_mention_weights` finds them, the title's then the body's, but only up to
        ``MAX_MENTIONS`` a field: a term said 500 times in a transcript costs no more than one said 20 times.
        """
        if not title:
            if len(fields) == 1 or not body:
                return FALSE
            if len(body) == 1:  # one mention: what _evidence makes of it
                pos = body[0]
                return 1.0 - (1.0 - (EARLY_WEIGHT if pos < self._early else self.weight(BODY, pos)))
        weights: list[float] = []
        last = -SAME_BREATH - 1
        for pos in title:
            if pos - last > SAME_BREATH:
                if len(weights) == MAX_MENTIONS:
                    break
                weights.append(TITLE_WEIGHT)
            last = pos
        if len(fields) == 2:
            last, early, mentions = -SAME_BREATH - 1, self._early, 0
            for pos in body:
                if pos - last > SAME_BREATH:
                    if mentions == MAX_MENTIONS:
                        break
                    weights.append(EARLY_WEIGHT if pos < early else self.weight(BODY, pos))
                    mentions += 1
                last = pos
        return _evidence(weights)

    def term_values(self, triggers: IntArray, title_only: BoolArray) -> FloatArray:
        """:meth:`term_value` of many located terms at once, from the recorded presearch: for each term, given
        by its trigger's id and whether it is matched in the title only, its evidence or :data:`FALSE`.

        The same mentions are found as :meth:`_evidence_at` finds them (the first ``MAX_MENTIONS`` a field),
        heaviest first, and their noisy-OR is taken one mention rank at a time, in the same order of the same
        floating-point operations, so that every value is the one worked out term by term.
        """
        presearch = self._presearch
        assert presearch is not None
        values = np.full(len(triggers), FALSE)
        present = presearch.present
        if not len(present):
            return values
        at = present.searchsorted(triggers)
        np.minimum(at, len(present) - 1, out=at)
        terms = (present[at] == triggers).nonzero()[0]
        if not len(terms):
            return values
        lo = presearch.firsts[at[terms]]
        lengths = presearch.firsts[at[terms] + 1] - lo
        ends = lengths.cumsum()
        # every occurrence of each term, term after term, ascending
        owner = np.arange(len(terms)).repeat(lengths)
        pos = presearch.positions[(lo - ends + lengths).repeat(lengths) + np.arange(ends[-1])]
        titles = presearch.titles
        body = pos >= titles
        dropped = title_only.any()
        if dropped:
            kept = ~(body & title_only[terms][owner])
            owner, pos, body = owner[kept], pos[kept], body[kept]
            if not len(owner):
                return values
        # a mention: a term's first occurrence in a field, or one more than SAME_BREATH words after the last;
        # its rank in the field (from 1) is the mentions so far less those before the field's first
        starts = np.ones(len(owner), dtype=np.bool_)
        field = owner * 2 + body
        np.not_equal(field[1:], field[:-1], out=starts[1:])
        mention = starts.copy()
        mention[1:] |= pos[1:] - pos[:-1] > SAME_BREATH
        count = mention.cumsum()
        before = np.maximum.accumulate(np.where(starts, count - 1, 0))
        chosen = (mention & (count - before <= MAX_MENTIONS)).nonzero()[0]
        owner, pos, body = owner[chosen], pos[chosen], body[chosen]
        weights = np.full(len(owner), TITLE_WEIGHT)
        in_body = body.nonzero()[0]
        if len(in_body):
            early = self._early
            offsets = pos[in_body] - titles
            deep = (offsets >= early).nonzero()[0]
            body_weights = np.full(len(in_body), EARLY_WEIGHT)
            if len(deep):
                exponents = -DECAY * (offsets[deep] - early) / early
                fades = np.fromiter(map(math.exp, exponents.tolist()), dtype=np.float64, count=len(deep))
                body_weights[deep] = DEEP_WEIGHT + (EARLY_WEIGHT - DEEP_WEIGHT) * fades
            weights[in_body] = body_weights
        # heaviest first: weights never grow along a field, so re-ordered only in case rounding made them
        first = np.ones(len(owner), dtype=np.bool_)
        np.not_equal(owner[1:], owner[:-1], out=first[1:])
        if (~first[1:] & (weights[1:] > weights[:-1])).any():
            order = np.lexsort((-weights, owner))
            owner, weights = owner[order], weights[order]
        index = np.arange(len(owner))
        rank = index - np.maximum.accumulate(np.where(first, index, 0))
        top = (rank < MAX_MENTIONS).nonzero()[0]
        rank, owner, weights = rank[top], owner[top], weights[top]
        misses = np.ones((int(rank.max()) + 1, len(terms)))
        misses[rank, owner] = 1.0 - weights * _DISCOUNT_ARRAY[rank]
        values[terms] = 1.0 - np.multiply.reduce(misses, axis=0)
        if dropped:  # a term only in the body, looked for in the title only
            kept = np.zeros(len(terms), dtype=np.bool_)
            kept[owner] = True
            values[terms[~kept]] = FALSE
        return values

    def sentences(self, field: int) -> _Sentences:
        """The sentences of ``field``, to tell which one a token is in."""
        found = self._sentences[field]
        if found is None:
            text, tokenised = (
                (self.document.title, self._title) if field == TITLE else (self.document.text, self._body)
            )
            found = self._sentences[field] = _Sentences(text, tokenised, self._word_starts[field])
        return found

    def weight(self, field: int, pos: int) -> float:
        """How much one mention at token ``pos`` of ``field`` says about what the article is about."""
        if field == TITLE:
            return TITLE_WEIGHT
        if pos < self._early:
            return EARLY_WEIGHT
        fade = math.exp(-DECAY * (pos - self._early) / self._early)
        return DEEP_WEIGHT + (EARLY_WEIGHT - DEEP_WEIGHT) * fade


class _Sentences:
    """The sentences of a field, as token ranges, worked out a line at a time when first asked about: a
    run of line breaks always ends a sentence, so a line's sentences do not depend on the rest of the text.
    A long transcript whose SENTENCE terms are in a few of its paragraphs is split into sentences there
    only; once the lines asked about add up to half the text, the whole of it is split at once. Tokens are
    counted from the text's :func:`word_starts`."""

    __slots__ = ("_budget", "_chars", "_lines", "_starts", "_text", "_whole", "_words")

    #: what splitting a line costs besides its characters, in characters
    LINE_COST = 300

    def __init__(self, text: str, tokenised: Tokenised, starts: IntArray | None = None) -> None:
        """``starts``: where the text's tokens start, if known (else worked out from the pieces)."""
        self._text = text
        self._words = word_starts(tokenised.pieces) if starts is None else starts
        breaks, after = line_breaks(text)
        #: where each line's characters start and end; and its first token's position, then one past any
        #: token (one start a token)
        self._chars = [0, *after.tolist()], [*breaks.tolist(), len(text)]
        self._starts = [0, *self._count(after), len(self._words) + 1]
        self._lines: dict[int, list[int]] = {}
        self._whole: list[int] | None = None
        self._budget = len(text) // 2

    def _count(self, offsets: list[int] | IntArray) -> list[int]:
        """How many tokens the text gives before each of ``offsets``."""
        found: list[int] = self._words.searchsorted(offsets).tolist()
        return found

    def line(self, position: int) -> tuple[int, int]:
        """The line holding the token at ``position``: its first token's position, and the next line's."""
        at = bisect_right(self._starts, position)
        return self._starts[at - 1], self._starts[at]

    def around(self, position: int) -> tuple[int, int]:
        """The sentence holding the token at ``position``: its first token's position, and the next's."""
        starts = self._whole
        if starts is None:
            line = bisect_right(self._starts, position) - 1
            starts = self._lines.get(line)
            if starts is None:
                lo, hi = self._chars[0][line], self._chars[1][line]
                self._budget -= hi - lo + self.LINE_COST
                if self._budget >= 0:
                    starts = self._lines[line] = self._split(line)
                else:
                    starts = self._whole = self._split_all()
        at = bisect_right(starts, position)
        return starts[at - 1], starts[at]

    def _split(self, line: int) -> list[int]:
        """The positions of the first tokens of the line's sentences, then of the next line's."""
        lo, hi = self._chars[0][line], self._chars[1][line]
        first, after = self._starts[line], self._starts[line + 1]
        starts = [first]
        for count in self._count(sentence_breaks(self._text, lo, hi)):
            if starts[-1] < count < after:
                starts.append(count)
        starts.append(after)
        return starts

    def _split_all(self) -> list[int]:
        """The positions of the first tokens of all sentences, then one past any token."""
        starts = [0]
        for count in self._count(sentence_breaks(self._text)):
            if count != starts[-1]:
                starts.append(count)
        starts.append(self._starts[-1])
        return starts


def prepare(doc: Document) -> PreparedDocument:
    """Tokenise ``doc`` once, for evaluation against every topic."""
    return PreparedDocument(doc)


class _Found(NamedTuple):
    """Occurrences of one term in one field that made a query true: all of them, or the close ones under
    NEAR and SENTENCE."""

    term: Term
    field: int
    starts: Sequence[int]


class _Res(NamedTuple):
    score: float | None  # None: true, but without evidence of its own (NOT, field filters)
    found: list[_Found]


def _mention_weights(doc: PreparedDocument, field: int, starts: Sequence[int]) -> list[float]:
    """The weight of each mention: occurrences within ``SAME_BREATH`` words of the previous are one mention.

    Weights never grow along a field, so its first ``MAX_MENTIONS`` mentions are its heaviest; the rest
    would not count.
    """
    weights: list[float] = []
    last = -SAME_BREATH - 1
    for s in starts:
        if s - last > SAME_BREATH:
            if len(weights) == MAX_MENTIONS:
                break
            weights.append(doc.weight(field, s))
        last = s
    return weights


def _evidence(weights: list[float]) -> float:
    """Noisy-OR of one term's mentions, heaviest first, each later one discounted by ``REPEAT``."""
    weights.sort(reverse=True)
    miss = 1.0
    for w, discount in zip(weights, _DISCOUNTS, strict=False):  # the first MAX_MENTIONS
        miss *= 1.0 - w * discount
    return 1.0 - miss


def _best_evidence(found: list[_Found], doc: PreparedDocument) -> float:
    """The evidence of the strongest term among ``found``, counting only the occurrences listed."""
    by_term: dict[int, list[_Found]] = {}
    for f in sorted(found, key=lambda f: f.field):
        by_term.setdefault(f.term.order, []).append(f)
    return max(
        _evidence([w for f in term_found for w in _mention_weights(doc, f.field, f.starts)])
        for term_found in by_term.values()
    )


def _term(node: Term, doc: PreparedDocument, fields: tuple[int, ...]) -> _Res | None:
    found = [_Found(node, f, starts) for f in fields if (starts := doc.find(node, f))]
    return _Res(doc.evidence(node, fields), found) if found else None


def _literal(node: Node, doc: PreparedDocument, fields: tuple[int, ...]) -> list[_Found]:
    """Every occurrence of the terms of a literal (a term, or terms in OR groups and aliases)."""
    if isinstance(node, Term):
        return [_Found(node, f, starts) for f in fields if (starts := doc.find(node, f))]
    if isinstance(node, Alias):
        return _literal(node.child, doc, fields)
    assert isinstance(node, Or)  # the parser allows only literals around NEAR and in SENTENCE
    return [f for c in node.children for f in _literal(c, doc, fields)]


def _located_literal(
    terms: list[tuple[Term, int]], doc: PreparedDocument, fields: tuple[int, ...]
) -> list[_Found]:
    """:func:`_literal` of a literal's terms given with their triggers' ids (-1 for none): those located are
    read from the presearch's findings straight away."""
    found: list[_Found] = []
    for term, trigger_id in terms:
        both = doc.located(trigger_id)
        for f in fields:
            starts = doc.find(term, f) if both is None else both[f]
            if starts:
                found.append(_Found(term, f, starts))
    return found


def _literal_terms(node: Node) -> list[Term]:
    """The terms of a literal, in the order :func:`_literal` gives their occurrences."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, Alias):
        return _literal_terms(node.child)
    assert isinstance(node, Or)
    return [t for c in node.children for t in _literal_terms(c)]


def _operand(
    literal: Node, doc: PreparedDocument, fields: tuple[int, ...], terms: list[tuple[Term, int]] | None
) -> list[_Found]:
    return _literal(literal, doc, fields) if terms is None else _located_literal(terms, doc, fields)


def _near(
    node: Near,
    doc: PreparedDocument,
    fields: tuple[int, ...],
    located: list[list[tuple[Term, int]]] | None = None,
) -> _Res | None:
    """Occurrences of the two sides at most ``distance`` words apart (1: adjacent), in either order.
    ``located``, the sides' terms with their triggers' ids, lets a presearch's findings give them."""
    lefts = _operand(node.left, doc, fields, None if located is None else located[0])
    if not lefts:
        return None
    rights = _operand(node.right, doc, fields, None if located is None else located[1])
    if not rights:
        return None
    n = node.distance
    sides = [*lefts, *rights]
    kept: dict[int, set[int]] = {}  # index into sides -> the starts kept
    closest = n + 1
    for i, left in enumerate(lefts):
        for j, right in enumerate(rights, len(lefts)):
            if right.field != left.field:
                continue
            # the side with fewer occurrences is walked, the other looked up: either way round is the same
            a, b = (i, j) if len(left.starts) <= len(right.starts) else (j, i)
            for sa, sb, gap in _close(sides[a], sides[b], n):
                kept.setdefault(a, set()).add(sa)
                kept.setdefault(b, set()).add(sb)
                closest = min(closest, gap)
    if not kept:
        return None
    close = {i: _Found(sides[i].term, sides[i].field, sorted(starts)) for i, starts in kept.items()}
    base = min(
        _best_evidence([f for i, f in close.items() if i < len(lefts)], doc),
        _best_evidence([f for i, f in close.items() if i >= len(lefts)], doc),
    )
    score = min(1.0, base + NEAR_BONUS * (n - closest + 1) / n)
    return _Res(score, list(close.values()))


def _close(a: _Found, b: _Found, n: int) -> Iterator[tuple[int, int, int]]:
    """Pairs of occurrences of ``a`` and ``b`` at most ``n`` words apart, with the gap (1: adjacent)."""
    last_a, last_b, starts = len(a.term.tokens) - 1, len(b.term.tokens) - 1, b.starts
    for sa in a.starts:
        for k in range(bisect_left(starts, sa - n - last_b), len(starts)):
            sb = starts[k]
            if sb > sa + last_a + n:
                break
            gap = max(sb - (sa + last_a), sa - (sb + last_b))
            if 1 <= gap <= n:
                yield sa, sb, gap


def _sentence(
    node: Sentence,
    doc: PreparedDocument,
    fields: tuple[int, ...],
    located: list[list[tuple[Term, int]]] | None = None,
) -> _Res | None:
    """All operands in one sentence; scored like NEAR, the closeness being the tightest such sentence's.
    ``located``, the operands' terms with their triggers' ids, lets a presearch's findings give them."""
    operands: list[list[_Found]] = []
    for i, child in enumerate(node.children):
        found = _operand(child, doc, fields, None if located is None else located[i])
        if not found:
            return None
        operands.append(found)
    kept: list[list[_Found]] = [[] for _ in operands]
    tightest = math.inf
    for place in fields:
        in_place = [[f for f in found if f.field == place] for found in operands]
        if not all(in_place):
            continue
        # per operand, per occurring term: its occurrences in the sentences holding every operand
        inside: list[list[list[int]]] = [[[] for _ in found] for found in in_place]
        for lo, hi in _shared_sentences(doc.sentences(place), in_place):
            groups: list[list[tuple[int, int]]] = []
            for found, collected in zip(in_place, inside, strict=True):
                group: list[tuple[int, int]] = []
                for f, starts in zip(found, collected, strict=True):
                    here = f.starts[bisect_left(f.starts, lo) : bisect_left(f.starts, hi)]
                    starts += here
                    last = len(f.term.tokens) - 1
                    group += [(s, s + last) for s in here]
                groups.append(group)
            tightest = min(tightest, _narrowest_window(groups))
        for i, (found, collected) in enumerate(zip(in_place, inside, strict=True)):
            kept[i] += [
                _Found(f.term, place, starts) for f, starts in zip(found, collected, strict=True) if starts
            ]
    if not kept[0]:
        return None
    base = min(_best_evidence(found, doc) for found in kept)
    gap = max(1.0, tightest / (len(operands) - 1))
    bonus = NEAR_BONUS * max(0.0, (SENTENCE_REACH - gap + 1) / SENTENCE_REACH)
    return _Res(min(1.0, base + bonus), [f for found in kept for f in found])


def _shared_sentences(sentences: _Sentences, operands: list[list[_Found]]) -> list[tuple[int, int]]:
    """The sentences (first token, next sentence's first) where every operand occurs, in order: those of the
    operand with the fewest occurrences, kept where each other one has an occurrence too (looked for in the
    line first: a line without them all is not split into sentences)."""
    sizes = [sum(len(f.starts) for f in found) for found in operands]
    pivot = sizes.index(min(sizes))
    others = operands[:pivot] + operands[pivot + 1 :]
    spans: list[tuple[int, int]] = []
    end = -1
    for start in sorted(s for f in operands[pivot] for s in f.starts):
        if start < end:  # in the sentence (or the line without the others) of the one before
            continue
        lo, end = sentences.line(start)
        if all(any(_occurs(f.starts, lo, end) for f in found) for found in others):
            lo, end = sentences.around(start)
            if all(any(_occurs(f.starts, lo, end) for f in found) for found in others):
                spans.append((lo, end))
    return spans


def _occurs(starts: Sequence[int], lo: int, hi: int) -> bool:
    """Whether some of ``starts`` (ascending) is in ``[lo, hi)``."""
    at = bisect_left(starts, lo)
    return at < len(starts) and starts[at] < hi


def _narrowest_window(groups: list[list[tuple[int, int]]]) -> float:
    """Words between the first and the last of the closest choice of one occurrence per group (1: adjacent);
    occurrences are (first token, last token)."""
    marks = sorted((first, last, i) for i, occurrences in enumerate(groups) for first, last in occurrences)
    need, have = len(groups), [0] * len(groups)
    covered, best, lo = 0, math.inf, 0
    for start, _, i in marks:
        have[i] += 1
        covered += have[i] == 1
        while covered == need:
            best = min(best, start - marks[lo][1])
            j = marks[lo][2]
            have[j] -= 1
            covered -= have[j] == 0
            lo += 1
    return best


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
    """The node's truth (None when false), its evidence and the occurrences that made it true."""
    if isinstance(node, Term):
        return _term(node, doc, fields)
    if isinstance(node, And):
        scores: list[float] = []
        found: list[_Found] = []
        for c in node.children:
            r = _eval(c, doc, fields)
            if r is None:
                return None
            if r.score is not None:
                scores.append(r.score)
            found += r.found
        return _Res(min(scores) if scores else None, found)
    if isinstance(node, Or):
        results = [r for r in (_eval(c, doc, fields) for c in node.children) if r is not None]
        if not results:
            return None
        scored = [r.score for r in results if r.score is not None]
        return _Res(max(scored) if scored else None, [f for r in results for f in r.found])
    if isinstance(node, Alias):
        return _eval(node.child, doc, fields)
    if isinstance(node, Not):
        return _Res(None, []) if _eval(node.child, doc, fields) is None else None
    if isinstance(node, Near):
        return _near(node, doc, fields)
    if isinstance(node, Sentence):
        return _sentence(node, doc, fields)
    if isinstance(node, InTitle):
        return _eval(node.child, doc, _TITLE_ONLY)
    return _Res(None, []) if _field_ok(node, doc.document) else None


def evaluate(query: CompiledQuery, doc: PreparedDocument) -> Match | None:
    """Match ``doc`` against ``query``: None when the boolean query is false, else score and explanation."""
    res = _eval(query.root, doc, _BOTH)
    if res is None:
        return None
    return Match(final_score(res.score or 0.0), res.found, doc)


def final_score(value: float) -> float:
    """``round(min(1.0, max(0.0, value)), 3)``, most of the time without ``round``'s exact decimal conversion
    (a third of the cost of a match): unless ``value * 1000`` is within 0.0001 of a tie, its nearest whole
    number is that of the exact product, whose error is below 1e-13."""
    if not 0.0 < value < 1.0:
        return 0.0 if value <= 0.0 else 1.0
    scaled = value * 1000.0
    whole = round(scaled)
    if abs(scaled - whole) < 0.4999:
        return whole / 1000.0
    return round(value, 3)


def final_scores(values: FloatArray) -> FloatArray:
    """:func:`final_score` of each of ``values`` (none of them :data:`FALSE`), worked out with arrays."""
    scaled = values * 1000.0
    whole = np.rint(scaled)  # round half to even, as ``round`` does
    scores = whole / 1000.0
    inside = (values > 0.0) & (values < 1.0)
    scores[values <= 0.0] = 0.0
    scores[values >= 1.0] = 1.0
    for i in (inside & (np.abs(scaled - whole) >= 0.4999)).nonzero()[0].tolist():
        scores[i] = round(float(values[i]), 3)
    return scores


def _explain(found: list[_Found]) -> list[Clause]:
    """One clause per matched term (the same term written twice is one), in query order."""
    by_source: dict[str, tuple[list[Sequence[int]], list[Sequence[int]]]] = {}
    for f in sorted(found, key=lambda f: f.term.order):
        by_source.setdefault(f.term.source, ([], []))[f.field].append(f.starts)
    return [Clause(source, _count(title), _count(body)) for source, (title, body) in by_source.items()]


def _count(occurrences: list[Sequence[int]]) -> int:
    if len(occurrences) < 2:
        return len(occurrences[0]) if occurrences else 0
    return len(set().union(*occurrences))


_SPACE_RE = re.compile(r"\s")


def _snippet(doc: PreparedDocument, found: list[_Found]) -> str:
    """About ``SNIPPET_WIDTH`` characters of the original body (title if no body hit) around the best hit:
    of the first hits, the one with the most different terms around it."""
    field = BODY if any(f.field == BODY for f in found) else TITLE
    text = doc.document.text if field == BODY else doc.document.title
    spans = doc.spans(field)
    hits = sorted(
        {
            (spans[s][0], spans[s + len(f.term.tokens) - 1][1], f.term.order)
            for f in found
            if f.field == field
            for s in f.starts
        }
    )
    if not hits:
        return " ".join(text[:SNIPPET_WIDTH].split())
    half = SNIPPET_WIDTH // 2
    starts = [h[0] for h in hits]

    def variety(i: int) -> tuple[int, int]:
        around = hits[bisect_left(starts, starts[i] - half) : bisect_right(starts, starts[i] + half)]
        return len({order for _, _, order in around}), -starts[i]

    a, b, _ = hits[max(range(min(len(hits), 64)), key=variety)]
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
    for s, e in _merge((s, e) for s, e, _ in hits if s >= start and e <= end):
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


# --- many queries on one document: shared sub-expressions, each evaluated once -----------------------------


class SharedNode:
    """One distinct sub-expression of many queries (hash-consed by :class:`SharedNodes`), with the fields it
    is evaluated over: ``title:`` and ``@alias`` are folded into their child. A subclass per kind of node
    says how it is worked out."""

    __slots__ = ("fields", "key", "kids", "uses")

    def __init__(self, fields: tuple[int, ...], kids: tuple[SharedNode, ...], key: object) -> None:
        self.fields = fields
        self.kids = kids
        self.key = key
        self.uses = 1

    def value(self, doc: PreparedDocument, memo: dict[SharedNode, float]) -> float:
        """What :func:`evaluate` scores this sub-expression on ``doc``: :data:`FALSE`, :data:`NO_SCORE`, or
        its evidence; the values of the nodes below it are kept in ``memo`` (one per document)."""
        raise NotImplementedError


class TermNode(SharedNode):
    """A term over some fields; its value is its evidence there."""

    __slots__ = ("pattern", "term", "trigger_id")

    def __init__(self, term: Term, fields: tuple[int, ...], key: object) -> None:
        super().__init__(fields, (), key)
        self.term = term
        #: the term's trigger, when a presearch's findings can locate it, and its id there (see
        #: :meth:`SharedNodes.locate`)
        self.pattern = None if any(term.prefix[:-1]) else trigger(term)
        self.trigger_id = -1

    def value(self, doc: PreparedDocument, memo: dict[SharedNode, float]) -> float:
        return doc.term_value(self.term, self.fields, self.trigger_id)


class _AndNode(SharedNode):
    __slots__ = ()

    def value(self, doc: PreparedDocument, memo: dict[SharedNode, float]) -> float:
        weakest = 2.0
        for kid in self.kids:
            found = memo.get(kid)
            if found is None:
                found = memo[kid] = kid.value(doc, memo)
            if found == FALSE:
                return FALSE
            if 0.0 <= found < weakest:
                weakest = found
        return NO_SCORE if weakest == 2.0 else weakest


class _OrNode(SharedNode):
    __slots__ = ()

    def value(self, doc: PreparedDocument, memo: dict[SharedNode, float]) -> float:
        strongest = FALSE
        for kid in self.kids:
            found = memo.get(kid)
            if found is None:
                found = memo[kid] = kid.value(doc, memo)
            if found > strongest:
                strongest = found
        return strongest


class _NotNode(SharedNode):
    __slots__ = ()

    def value(self, doc: PreparedDocument, memo: dict[SharedNode, float]) -> float:
        (kid,) = self.kids
        found = memo.get(kid)
        if found is None:
            found = memo[kid] = kid.value(doc, memo)
        return NO_SCORE if found == FALSE else FALSE


class _OperandsNode(SharedNode):
    """A NEAR or SENTENCE: its operands' terms, each with its trigger's id once located (see
    :meth:`SharedNodes.locate`)."""

    __slots__ = ("located", "node")

    def __init__(self, node: Near | Sentence, fields: tuple[int, ...], key: object) -> None:
        super().__init__(fields, (), key)
        self.node = node
        operands = (node.left, node.right) if isinstance(node, Near) else node.children
        self.located = [[(term, -1) for term in _literal_terms(operand)] for operand in operands]

    def locate(self, trigger_ids: Mapping[str, int]) -> None:
        self.located = [
            [(term, -1 if any(term.prefix[:-1]) else trigger_ids.get(trigger(term), -1)) for term, _ in terms]
            for terms in self.located
        ]


class _NearNode(_OperandsNode):
    __slots__ = ()

    def value(self, doc: PreparedDocument, memo: dict[SharedNode, float]) -> float:
        assert isinstance(self.node, Near)
        res = _near(self.node, doc, self.fields, self.located)
        return FALSE if res is None or res.score is None else res.score


class _SentenceNode(_OperandsNode):
    __slots__ = ()

    def value(self, doc: PreparedDocument, memo: dict[SharedNode, float]) -> float:
        assert isinstance(self.node, Sentence)
        res = _sentence(self.node, doc, self.fields, self.located)
        return FALSE if res is None or res.score is None else res.score


class _FieldNode(SharedNode):
    __slots__ = ("node",)

    def __init__(self, node: FieldFilter, key: object) -> None:
        super().__init__(_BOTH, (), key)
        self.node = node

    def value(self, doc: PreparedDocument, memo: dict[SharedNode, float]) -> float:
        return NO_SCORE if _field_ok(self.node, doc.document) else FALSE


class SharedNodes:
    """Query trees with identical sub-expressions made one :class:`SharedNode` (structurally equal, columns
    and term numbering aside), so that :meth:`SharedNode.value` works each out once per document however
    many queries hold it.

    A sub-expression's score does not depend on the numbering of its terms (only on their relative order,
    which equal trees share), so any one of the equal nodes stands for all of them.
    """

    def __init__(self) -> None:
        self._nodes: dict[object, SharedNode] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def add(self, root: Node) -> SharedNode:
        """The shared node for ``root`` (over title and body); :meth:`release` it when done with it."""
        return self._add(root, _BOTH)

    def _add(self, node: Node, fields: tuple[int, ...]) -> SharedNode:
        if isinstance(node, Alias):
            return self._add(node.child, fields)
        if isinstance(node, InTitle):
            return self._add(node.child, _TITLE_ONLY)
        kids: tuple[SharedNode, ...] = ()
        key: tuple[object, ...]
        if isinstance(node, Term):
            key = (TermNode, node.tokens, node.prefix, fields)
        elif isinstance(node, And | Or | Not):
            kind = _AndNode if isinstance(node, And) else _OrNode if isinstance(node, Or) else _NotNode
            children = (node.child,) if isinstance(node, Not) else node.children
            kids = tuple(self._add(c, fields) for c in children)
            key = (kind, kids)
        else:
            key = (type(node), node, fields)
        shared = self._nodes.get(key)
        if shared is not None:
            shared.uses += 1
            for kid in kids:  # already held by the node found
                self.release(kid)
            return shared
        shared = self._nodes[key] = _new_node(node, fields, kids, key)
        return shared

    def locate(self, trigger_ids: Mapping[str, int]) -> None:
        """Tell every term its trigger's id in the presearch looking for ``trigger_ids`` (-1 if none)."""
        for node in self._nodes.values():
            if isinstance(node, TermNode):
                node.trigger_id = -1 if node.pattern is None else trigger_ids.get(node.pattern, -1)
            elif isinstance(node, _OperandsNode):
                node.locate(trigger_ids)

    def release(self, shared: SharedNode) -> None:
        """Drop one use of ``shared``, and the node (and its unused parts) with its last."""
        shared.uses -= 1
        if shared.uses == 0:
            del self._nodes[shared.key]
            for kid in shared.kids:
                self.release(kid)


def flat_form(node: SharedNode) -> tuple[list[list[TermNode]], list[TermNode]] | None:
    """``node`` as an AND of groups, each an OR of located terms, and of NOTs of such terms: its value is
    then FALSE if a group has none of its terms or a negated term occurs, else the weakest group's strongest
    term. None for any other kind of node (NEAR, SENTENCE, field filters, terms a presearch does not locate,
    ORs of ANDs): those are worked out node by node."""
    groups: list[list[TermNode]] = []
    negated: list[TermNode] = []

    def add(part: SharedNode) -> bool:
        if isinstance(part, _AndNode):
            return all(add(kid) for kid in part.kids)
        found = _located_terms(part.kids[0] if isinstance(part, _NotNode) else part)
        if found is None:
            return False
        if isinstance(part, _NotNode):
            negated.extend(found)
        else:
            groups.append(found)
        return True

    return (groups, negated) if add(node) and groups else None


def _located_terms(node: SharedNode) -> list[TermNode] | None:
    """The terms of a located term or of an OR of them, else None."""
    if isinstance(node, TermNode):
        return [node] if node.trigger_id >= 0 else None
    if not isinstance(node, _OrNode):
        return None
    found: list[TermNode] = []
    for kid in node.kids:
        below = _located_terms(kid)
        if below is None:
            return None
        found += below
    return found


def terms_below(node: SharedNode) -> Iterator[TermNode]:
    """The terms ``node`` combines (through AND, OR and NOT; NEAR and SENTENCE look their terms up)."""
    if isinstance(node, TermNode):
        yield node
    for kid in node.kids:
        yield from terms_below(kid)


def _new_node(node: Node, fields: tuple[int, ...], kids: tuple[SharedNode, ...], key: object) -> SharedNode:
    if isinstance(node, Term):
        return TermNode(node, fields, key)
    if isinstance(node, And):
        return _AndNode(fields, kids, key)
    if isinstance(node, Or):
        return _OrNode(fields, kids, key)
    if isinstance(node, Not):
        return _NotNode(fields, kids, key)
    if isinstance(node, Near):
        return _NearNode(node, fields, key)
    if isinstance(node, Sentence):
        return _SentenceNode(node, fields, key)
    assert isinstance(node, FieldFilter)  # Alias and InTitle are folded into their child
    return _FieldNode(node, key)
