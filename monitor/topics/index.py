"""The presearcher: of many topics, the few that can match a document, found in one pass over its tokens.

As in Lucene's Monitor, each query is reduced to *triggers*: strings at least one of which must occur in a
document's token stream (:attr:`PreparedDocument.stream`, tokens with a space on both sides) for the query
to be true: ``" xi jinping "`` for a phrase, ``" putin"`` for the prefix ``putin*``. Every topic's
triggers are looked up at once, token by token (:class:`_TokenSearch`: for a short text one dictionary
lookup a token, for a long one a hash table of the words' bytes looked up as arrays, then array operations);
only the topics they point to are evaluated.

A query's *requirements* are sets of triggers, one of each set to be present:

* a term requires its own trigger;
* AND, NEAR and SENTENCE need all their children, so they keep all their children's requirements;
* OR requires one set: the union of one requirement of each child (nothing if a child requires nothing);
* NOT and field filters require nothing, so an AND leans on its other children;
* ``title:`` and ``@alias`` require what their child does (the title is part of the stream).

A topic is found through a trigger of its *anchor*, the requirement whose triggers look rarest, together
with a trigger of the next rarest, and is a candidate when each further requirement has a trigger present
too. A query requiring nothing (none compiles: every query has a positive term) would be a candidate for every
document. The (anchor, second) pairs are kept as arrays (:class:`_Plan`), so that a document's candidates
come from a few array operations over its present triggers rather than a Python loop over them.

The search also looks for the trigger of every other term of the queries (under NOT, say), and hands the
document where it found each, grouped by trigger, as token positions: evaluation scores terms from there
instead of looking for them again.

The topics' query trees are hash-consed (:class:`~monitor.topics.match.SharedNodes`): a sub-expression that
many topics hold (a term, an OR of an alias's names, a NEAR pair) is one shared node. Most queries are ANDs
of ORs of terms, with NOTs (:func:`~monitor.topics.match.flat_form`): those candidates are scored together,
as arrays, from their terms' values, themselves worked out together
(:meth:`~monitor.topics.match.PreparedDocument.term_values`); the others node by node, each shared node
once per document. Only the score is worked out then; a match's explanation and snippet come from
evaluating its query in full when first read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any, Generic, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt

from monitor.topics.match import (
    FALSE,
    TITLE,
    Match,
    PreparedDocument,
    SharedNode,
    SharedNodes,
    TermNode,
    final_score,
    final_scores,
    flat_form,
    terms_below,
    trigger,
)
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
from monitor.topics.text import IntArray

K = TypeVar("K", bound=Hashable)
N = TypeVar("N", bound=np.integer)
#: indices of entries in a plan
Rows = npt.NDArray[np.int32]
#: trigger ids, of either width
Ints = npt.NDArray[np.signedinteger[Any]]

#: trigger strings of which at least one must occur in the stream
Requirement = frozenset[str]

#: the largest flat queries scored as arrays: ANDed groups, terms ORed in a group, negated terms
MAX_GROUPS = 6
MAX_ALTERNATIVES = 8
MAX_NEGATED = 6
#: the documents (characters of title and body) from which the token search looks their words up as arrays
#: (:meth:`_TokenSearch.find_words`) rather than one by one
WORDS_FROM = 4000
#: candidates from which the flat ones are scored as arrays rather than one by one
ARRAYS_FROM = 32
#: term slots padding the arrays: an AND group that is always true (and weaker than none), and a term
#: that never occurs
_NEUTRAL, _ABSENT = 0, 1

_FIRST = itemgetter(0)


@lru_cache(maxsize=1 << 16)
def rarity_cost(pattern: str) -> float:
    """A guess at how often ``pattern`` occurs, to pick the anchor: long words, phrases and whole words are
    rarer than short words and prefixes."""
    words = pattern.split()
    cost = 1.0 / (1 + sum(len(w) for w in words)) ** 2 / 4.0 ** (len(words) - 1)
    return cost if pattern.endswith(" ") else cost * 4


def _cost(requirement: Requirement) -> float:
    return sum(rarity_cost(p) for p in requirement)


def requirements(node: Node) -> list[Requirement]:
    """Sets of triggers of which one each is in a document's stream whenever ``node`` is true."""
    if isinstance(node, Term):
        return [frozenset((trigger(node),))]
    if isinstance(node, And | Sentence):
        return [r for child in node.children for r in requirements(child)]
    if isinstance(node, Near):
        return requirements(node.left) + requirements(node.right)
    if isinstance(node, Or):
        union: set[str] = set()
        for child in node.children:
            found = requirements(child)
            if not found:
                return []
            cheapest: Requirement = min(found, key=_cost)
            union |= cheapest
        return [frozenset(union)]
    if isinstance(node, InTitle | Alias):
        return requirements(node.child)
    assert isinstance(node, Not | FieldFilter)
    return []


def located_triggers(node: Node, found: set[str] | None = None) -> set[str]:
    """The triggers of the terms of ``node`` that a presearch's findings locate (no prefix inside)."""
    found = set() if found is None else found
    if isinstance(node, Term):
        if not any(node.prefix[:-1]):
            found.add(trigger(node))
    elif isinstance(node, And | Or | Sentence):
        for child in node.children:
            located_triggers(child, found)
    elif isinstance(node, Near):
        located_triggers(node.left, found)
        located_triggers(node.right, found)
    elif isinstance(node, Not | InTitle | Alias):
        located_triggers(node.child, found)
    return found


@dataclass(slots=True, eq=False)
class _Entry(Generic[K]):
    """One distinct query, the topics that have it, and how it is found: through a trigger of its anchor
    and, if it requires more, one of its second requirement; the further ones are checked then."""

    query: CompiledQuery
    #: the query's tree in the index's shared sub-expressions
    shared: SharedNode
    #: trigger ids
    anchor: tuple[int, ...]
    second: tuple[int, ...]
    rest: tuple[frozenset[int], ...]
    #: every trigger id the entry holds a use of: those above and its located terms'
    uses: tuple[int, ...]
    #: topic -> the order it was added in
    topics: dict[K, int]

    def meets_rest(self, present: Container[int]) -> bool:
        """Whether each further requirement has a trigger in ``present``."""
        return all(any(t in present for t in requirement) for requirement in self.rest)


def _first_added(entry: _Entry[K]) -> int:
    return min(entry.topics.values())


def _distinct(values: npt.NDArray[N]) -> npt.NDArray[N]:
    """``values`` sorted, each once (``np.unique`` without its overhead); sorts ``values`` in place."""
    values.sort()
    if len(values) < 2:
        return values
    first = np.empty(len(values), dtype=np.bool_)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    kept: npt.NDArray[N] = values[first]
    return kept


def _ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """``starts[i]``, ``starts[i] + 1``, ... (``lengths[i]`` of them), one range after another."""
    ends = lengths.cumsum()
    if not len(ends) or not ends[-1]:
        return np.zeros(0, dtype=np.intp)
    ranges: IntArray = (starts - ends + lengths).repeat(lengths) + np.arange(ends[-1])
    return ranges


class _Codes(dict[str, int]):
    """Token -> code (see :class:`_TokenSearch`); a token not seen before is classified when looked up."""

    def __init__(self, words: dict[str, int], classify: Callable[[str], int]) -> None:
        super().__init__(words)
        self.classify = classify

    def __missing__(self, token: str) -> int:
        code = self[token] = self.classify(token)
        return code


U64Array = npt.NDArray[np.uint64]
#: the longest byte strings :class:`_KeyTable` holds
KEY_BYTES = 16
#: per byte count n up to 16: masks keeping the first n bytes of a string's two halves (see :func:`_halves`)
_LOW = np.array([(1 << 8 * min(n, 8)) - 1 for n in range(KEY_BYTES + 1)], dtype=np.uint64)
_HIGH = np.array([(1 << 8 * max(0, n - 8)) - 1 for n in range(KEY_BYTES + 1)], dtype=np.uint64)
#: odd constants: the multiplier of the hash of :class:`_KeyTable`, and those a second half may be mixed with
_SPREAD = np.uint64(0x9E3779B97F4A7C15)
_MIXES = [np.uint64((0xC2B2AE3D27D4EB4F * (2 * i + 1)) % 2**64) for i in range(64)]


def _halves(strings: list[bytes]) -> tuple[U64Array, U64Array]:
    """Strings of up to ``KEY_BYTES`` bytes as the two little-endian 64-bit words of their bytes padded with
    NULs: one for one, if they hold no NUL."""
    packed = np.frombuffer(b"".join(s.ljust(KEY_BYTES, b"\0") for s in strings), dtype="<u8")
    return packed[0::2].copy(), packed[1::2].copy()


class _KeyTable:
    """Distinct byte strings of up to ``KEY_BYTES`` bytes, none holding a NUL and none empty, each with a
    positive value, looked up many at once with a few array operations.

    A string is its two halves (:func:`_halves`), mixed into one 64-bit word (the first XOR the second
    times an odd constant, picked so that no two strings held share it), whose multiplicative hash places
    it in a table of at least ``LOAD`` times as many slots as strings. The strings landing on a slot already
    taken are kept apart, sorted by their mix, and looked for there by a binary search (a mix and a first
    half equal, the second is too), their slot marked. A string not held gets 0.
    """

    LOAD = 4

    def __init__(self, first: U64Array, second: U64Array | None, values: IntArray) -> None:
        self.mix = _MIXES[0]
        mixed = first
        if second is not None:
            for self.mix in _MIXES:
                mixed = first ^ (second * self.mix)
                if len(np.unique(mixed)) == len(mixed):
                    break
            else:  # pragma: no cover - 64 constants each giving two strings one mix
                raise AssertionError("no mix tells the strings apart")
        bits = max(4, math.ceil(math.log2(self.LOAD * max(1, len(first)))))
        self.shift = np.uint64(64 - bits)
        slots = ((mixed * _SPREAD) >> self.shift).view(np.intp)
        placed = np.zeros(len(first), dtype=np.bool_)
        placed[np.unique(slots, return_index=True)[1]] = True
        at = slots[placed]
        self.first = np.zeros(1 << bits, dtype=np.uint64)
        self.first[at] = first[placed]
        self.second = np.zeros(1 << bits, dtype=np.uint64)
        self.halves = second is not None  # whether some string held has a second half
        if second is not None:
            self.second[at] = second[placed]
        self.values = np.zeros(1 << bits, dtype=np.intp)
        self.values[at] = values[placed]
        #: per slot, whether strings landing on it are kept apart
        self.more = np.zeros(1 << bits, dtype=np.bool_)
        self.more[slots[~placed]] = True
        order = mixed[~placed].argsort()
        self.rest_mixed = mixed[~placed][order]
        self.rest_first = first[~placed][order]
        self.rest_values = values[~placed][order]

    def get(self, first: U64Array, second: U64Array | None = None) -> IntArray:
        """The value of each string given by its halves (``second`` None: all 0), 0 for one not held."""
        mixed = first if second is None else first ^ (second * self.mix)
        slots = ((mixed * _SPREAD) >> self.shift).view(np.intp)
        values = self.values.take(slots)
        same = self.first.take(slots) == first
        if self.halves:
            same &= self.second.take(slots) == (0 if second is None else second)
        values *= same
        if len(self.rest_mixed):
            pending = (self.more.take(slots) > same).nonzero()[
                0
            ]  # on a marked slot, and not the string there
            if len(pending):
                wanted = mixed[pending]
                at = self.rest_mixed.searchsorted(wanted)
                np.minimum(at, len(self.rest_mixed) - 1, out=at)
                found = (self.rest_mixed.take(at) == wanted) & (self.rest_first.take(at) == first[pending])
                values[pending[found]] = self.rest_values.take(at[found])
        return values


#: flags of a code: the first word of a two-word key, its second, the first of a two-part trigger ending in a
#: prefix
_OPENS, _CLOSES, _LEADS = 1, 2, 4
#: bits of a three-word key below the index of its first two words' key: more than any code takes
_THIRD = 32
_NO_ROWS = np.zeros(0, dtype=np.int32)


class _TokenSearch:
    """Every trigger, looked up in a document's tokens (:meth:`PreparedDocument.search_tokens`) or words
    (:meth:`find_words`).

    A trigger's space-separated parts are whole tokens, the last a prefix if the trigger does not end with a
    space. Each token is looked up once in a dictionary giving a code: the word's, for a word some trigger
    holds or some prefix matches; 0 for any other. Per code, :attr:`hits` holds its one-word trigger and the
    prefix triggers matching it, and :attr:`flags` whether it opens or closes a two-word trigger, so that
    these are found as arrays (two-word triggers by a key made of the two codes), and three-word ones (by a
    key made of the first two's and the third's code). Longer phrases are checked word by word where their
    first two words occur, as are two-part triggers ending in a prefix where their first word does. A token
    not seen before is classified on the spot; a bounded number of them is remembered.
    """

    #: tokens remembered besides the triggers' own words before that memory is cleared
    MEMORY = 1 << 18
    #: pairs of words looked up from which a hash table finds the two-word keys rather than a binary search
    HASHED_FROM = 256
    #: occurrences from which they are ordered by radix sorts of their triggers, rather than one sort
    RADIX_FROM = 1024

    def __init__(self, triggers: Mapping[str, int]) -> None:
        #: how many bits the trigger ids take
        self.id_bits = max(triggers.values(), default=0).bit_length()
        words: dict[str, int] = {}
        singles: dict[int, int] = {}
        prefixes: dict[str, int] = {}
        pairs: dict[tuple[int, int], int] = {}
        triples: dict[tuple[int, int, int], int] = {}
        longer: dict[tuple[int, int], list[tuple[int, list[int], str | None]]] = {}
        #: the first word of a two-part trigger ending in a prefix -> (trigger id, that prefix)
        self.led: dict[int, list[tuple[int, str]]] = {}

        def word(piece: str) -> int:
            return words.setdefault(piece, len(words) + 1)

        for pattern, trigger_id in triggers.items():
            whole = pattern.endswith(" ")
            parts = (pattern[1:-1] if whole else pattern[1:]).split(" ")
            if len(parts) == 1 and whole:
                singles[word(parts[0])] = trigger_id
            elif len(parts) == 1:
                prefixes[parts[0]] = trigger_id
            elif len(parts) == 2 and not whole:
                self.led.setdefault(word(parts[0]), []).append((trigger_id, parts[1]))
            elif len(parts) == 2:
                pairs[word(parts[0]), word(parts[1])] = trigger_id
            elif len(parts) == 3 and whole:
                triples[word(parts[0]), word(parts[1]), word(parts[2])] = trigger_id
            else:
                rest, last = (parts[2:], None) if whole else (parts[2:-1], parts[-1])
                phrase = trigger_id, [word(p) for p in rest], last  # the words after the first two by code
                longer.setdefault((word(parts[0]), word(parts[1])), []).append(phrase)
        self.prefixes = prefixes
        self.lengths = sorted({len(p) for p in prefixes})
        #: the first characters of every prefix, as long as the shortest: a quick test that none matches
        self.shortest = self.lengths[0] if self.lengths else 0
        self.heads = {p[: self.shortest] for p in prefixes}
        keys = sorted({*pairs, *longer, *((a, b) for a, b, _ in triples)})
        #: the multiplier of a key's first part (codes of the triggers' words are below it)
        self.base = len(words) + 1
        self.keys = np.array([a * self.base + b for a, b in keys], dtype=np.intp)
        #: three-word triggers, by a key made of their first two words' key (its index, shifted past any code
        #: the third word can have, a token only prefixes match included) and the third's code
        index_of = {key: i for i, key in enumerate(keys)}
        thirds = sorted(
            ((index_of[a, b] << _THIRD) + c, trigger_id) for (a, b, c), trigger_id in triples.items()
        )
        self.triple_keys = np.array([key for key, _ in thirds], dtype=np.intp)
        self.triple = np.array([trigger_id for _, trigger_id in thirds], dtype=np.intp)
        #: per key: its two-word trigger (-1 if none), and its longer phrases (an index in :attr:`longer`)
        self.pair = np.array([pairs.get(k, -1) for k in keys], dtype=np.intp)
        self.longer = [longer[k] for k in keys if k in longer]
        at = iter(range(len(self.longer)))
        self.longer_at = np.array([next(at) if k in longer else -1 for k in keys], dtype=np.intp)
        #: each key's index, plus 1, by a hash of it
        self.key_index = _KeyTable(self.keys.view(np.uint64), None, np.arange(1, len(keys) + 1))
        #: per key: whether some three-word or longer trigger starts with it
        self.leads_on = self.longer_at >= 0
        self.leads_on[[index_of[a, b] for a, b, _ in triples]] = True
        #: per code: its one-word trigger, then the prefix triggers its token matches (-1 for none)
        self.hits = np.full((self.base, 2), -1, dtype=np.int32)
        self.flags = np.zeros(self.base, dtype=np.uint8)
        for code, trigger_id in singles.items():
            self.hits[code, 0] = trigger_id
        for a, b in keys:
            self.flags[a] |= _OPENS
            self.flags[b] |= _CLOSES
        for code in self.led:
            self.flags[code] |= _LEADS
        #: the words' one-word triggers, for :meth:`find_words` (which finds prefixes apart)
        self.single = self.hits[:, 0].copy()
        for piece, code in words.items():
            self._mark(code, self._prefix_hits(piece))
        self.words = words
        self.size = self.base
        self.codes = _Codes(words, self._classify)
        self._byte_tables(words)

    def _byte_tables(self, words: dict[str, int]) -> None:
        """What :meth:`find_words` looks tokens up in: the words' codes and the prefixes' triggers by their
        bytes (:class:`_KeyTable`), and the prefixes by their first bytes, as many as the shortest has (at
        most 8), with the lengths of those starting so; the words and prefixes longer than a key, apart."""
        encoded = {w: w.encode() for w in words}
        held = [w for w, b in encoded.items() if len(b) <= KEY_BYTES]
        self.word_keys = _KeyTable(
            *_halves([encoded[w] for w in held]), np.array([words[w] for w in held], dtype=np.intp)
        )
        self.long_words = {w: words[w] for w, b in encoded.items() if len(b) > KEY_BYTES}
        encoded = {p: p.encode() for p in self.prefixes}
        held = [p for p, b in encoded.items() if len(b) <= KEY_BYTES]
        self.long_prefixes = {p: t for p, t in self.prefixes.items() if len(encoded[p]) > KEY_BYTES}
        self.long_lengths = sorted({len(p) for p in self.long_prefixes})
        self.head_bytes = min([8, *(len(encoded[p]) for p in held)])
        by_head: dict[bytes, set[int]] = {}
        for p in held:
            by_head.setdefault(encoded[p][: self.head_bytes], set()).add(len(encoded[p]))
        heads = sorted(by_head)
        #: sieves before the heads are looked up: per two bytes (as a little-endian 16-bit index), whether
        #: some head has them first, and whether some head has them last
        self.sieves = np.zeros((2, 1 << 16), dtype=np.bool_)
        self.sieves[0, [int.from_bytes(h[:2], "little") for h in heads]] = True
        self.sieves[1, [int.from_bytes(h[-2:], "little") for h in heads]] = True
        self.sieve_shift = np.uint64(8 * max(0, self.head_bytes - 2))
        self.head_keys = _KeyTable(_halves(heads)[0], None, np.arange(1, len(heads) + 1))
        #: the byte lengths of the prefixes starting with head h: ``head_lengths[head_start[h]:...[h + 1]]``
        self.head_start = np.zeros(len(heads) + 1, dtype=np.intp)
        np.cumsum([len(by_head[h]) for h in heads], out=self.head_start[1:])
        self.head_lengths = np.array([n for h in heads for n in sorted(by_head[h])], dtype=np.intp)
        self.prefix_keys = _KeyTable(
            *_halves([encoded[p] for p in held]),
            np.array([self.prefixes[p] + 1 for p in held], dtype=np.intp),
        )

    def _prefix_hits(self, piece: str) -> list[int]:
        """The prefix triggers ``piece`` matches."""
        if piece[: self.shortest] not in self.heads:
            return []
        return [
            t for n in self.lengths if n <= len(piece) and (t := self.prefixes.get(piece[:n])) is not None
        ]

    def _mark(self, code: int, prefixed: list[int]) -> None:
        """Give ``code`` the prefix triggers its token matches, widening :attr:`hits` if need be."""
        if len(prefixed) >= self.hits.shape[1]:
            wider = np.full((len(self.hits), len(prefixed) + 1), -1, dtype=np.int32)
            wider[:, : self.hits.shape[1]] = self.hits
            self.hits = wider
        self.hits[code, 1 : len(prefixed) + 1] = prefixed

    def _classify(self, token: str) -> int:
        """The code of a token not seen before (see :class:`_Codes`): a new one if some prefix matches it."""
        prefixed = self._prefix_hits(token)
        if not prefixed:
            return 0
        if self.size == len(self.flags):
            self.hits = np.concatenate([self.hits, np.full_like(self.hits, -1)])
            self.flags = np.concatenate([self.flags, np.zeros_like(self.flags)])
        code, self.size = self.size, self.size + 1
        self.hits[code] = -1
        self.flags[code] = 0
        self._mark(code, prefixed)
        return code

    def find(self, pieces: list[str]) -> tuple[IntArray, IntArray, IntArray] | None:
        """The triggers found in ``pieces`` (ascending ids), and where: the occurrences of ``found[i]`` start
        at ``positions[firsts[i]:firsts[i + 1]]`` (indices in ``pieces``, ascending); None if none is."""
        n = len(pieces)
        if len(self.codes) >= len(self.words) + self.MEMORY:  # forgotten between documents, never within
            self.codes.clear()
            self.codes.update(self.words)
            self.size = self.base
        codes = np.fromiter(map(self.codes.__getitem__, pieces), dtype=np.intp, count=n)
        hits = self.hits[codes]
        at, columns = (hits >= 0).nonzero()
        return self._gather(codes, self.flags[codes], pieces, [hits[at, columns]], [at], [])

    def find_words(
        self, text: str, possessives: bool = False
    ) -> tuple[tuple[IntArray, IntArray, IntArray] | None, IntArray]:
        """:meth:`find` for the pieces that are the runs of characters other than a space in ``text`` (which
        starts and ends with a space), looked up by their UTF-8 bytes as arrays rather than one by one:
        cheaper for a long text, whose pieces need not be made strings. Also where each piece starts (in
        bytes). With ``possessives``, a piece ending with "'s" stands for the token without it.

        Each piece's bytes (its first ``KEY_BYTES`` of them, the longer pieces being looked up one by one) are
        a key of :attr:`word_keys`; the prefixes are looked for in the pieces whose first bytes are those of
        some prefix, one key for each length a prefix starting so has."""
        data = (text + "\0" * KEY_BYTES).encode()
        size = len(data) - KEY_BYTES
        characters = np.frombuffer(data, dtype=np.uint8, count=size)
        is_word = characters != ord(" ")
        edges = (is_word[1:] != is_word[:-1]).nonzero()[0] + 1
        starts, ends = edges[0::2], edges[1::2]
        if possessives and "'" in text:  # a piece's "'s" is dropped from its token
            ends = ends - ((characters[ends - 1] == ord("s")) & (characters[ends - 2] == ord("'"))) * 2
        lengths = ends - starts
        held = np.minimum(lengths, KEY_BYTES)
        # each piece's first 16 bytes, read where it starts as two 64-bit words, the bytes past it masked off
        words = np.ndarray((size + 8,), dtype="<u8", buffer=data, strides=(1,))
        first = words.take(starts) & _LOW.take(held)
        second = words.take(starts + 8) & _HIGH.take(held)
        codes = self.word_keys.get(first, second)
        triggers: list[Ints] = []
        positions: list[IntArray] = []
        # the pieces whose first two bytes, and last two of a head's length, some head has; then those whose
        # first bytes are a head
        sieved = self.sieves[0].take((first & _LOW[2]).view(np.intp))
        sieved &= self.sieves[1].take(((first >> self.sieve_shift) & _LOW[2]).view(np.intp))
        headed = sieved.nonzero()[0]
        head = self.head_keys.get(first[headed] & _LOW[self.head_bytes])
        headed, head = headed[head > 0], head[head > 0]
        if len(headed):
            lo = self.head_start[head - 1]
            count = self.head_start[head] - lo
            owner = headed.repeat(count)
            length = self.head_lengths[_ranges(lo, count)]
            fits = (length <= lengths[owner]).nonzero()[0]
            owner, length = owner[fits], length[fits]
            hit = self.prefix_keys.get(first[owner] & _LOW.take(length), second[owner] & _HIGH.take(length))
            found = hit.nonzero()[0]
            triggers.append(hit[found] - 1)
            positions.append(owner[found])

        pieces = _Pieces(data, starts, ends)
        extra: list[int] = []
        for i in (lengths > KEY_BYTES).nonzero()[0].tolist():
            token = pieces[i]
            codes[i] = self.long_words.get(token, 0)
            for n in self.long_lengths:
                trigger_id = self.long_prefixes.get(token[:n])
                if trigger_id is not None and len(token) >= n:
                    extra += (trigger_id, i)
        singles = self.single[codes]
        at = (singles >= 0).nonzero()[0]
        triggers.append(singles[at])
        positions.append(at)
        return self._gather(codes, self.flags[codes], pieces, triggers, positions, extra), starts

    def _gather(
        self,
        codes: IntArray,
        flags: npt.NDArray[np.uint8],
        pieces: Sequence[str],
        triggers: list[Ints],
        positions: list[IntArray],
        extra: list[int],
    ) -> tuple[IntArray, IntArray, IntArray] | None:
        """What :meth:`find` returns, from the pieces' codes and their flags, the one-word triggers found
        (``triggers`` at ``positions``) and others (``extra``: trigger id, position, ...)."""
        n = len(codes)
        at = ((flags[:-1] & _OPENS) & (flags[1:] >> 1)).nonzero()[0]
        if len(at):
            keys = codes[at] * self.base + codes[at + 1]
            if len(keys) > self.HASHED_FROM:  # a binary search for each, in no order, is slow
                k = self.key_index.get(keys.view(np.uint64)) - 1
                known = (k >= 0).nonzero()[0]
            else:
                k = self.keys.searchsorted(keys)
                known = (self.keys.take(k, mode="clip") == keys).nonzero()[0]
            at, k = at[known], k[known]
            pair = self.pair[k]
            known = (pair >= 0).nonzero()[0]  # the keys with a two-word trigger
            triggers.append(pair[known])
            positions.append(at[known])
            known = self.leads_on[k].nonzero()[0]  # the keys some longer trigger starts with
            at, k = at[known], k[known]
            if len(at) and len(self.triple_keys):
                inside = (at < n - 2).nonzero()[0]
                keys = (k[inside] << _THIRD) + codes[at[inside] + 2]
                j = self.triple_keys.searchsorted(keys)
                known = (self.triple_keys.take(j, mode="clip") == keys).nonzero()[0]
                triggers.append(self.triple[j[known]])
                positions.append(at[inside[known]])
            if len(at) and self.longer:
                longer = self.longer_at[k]
                some = (longer >= 0).nonzero()[0]
                for i, j in zip(at[some].tolist(), longer[some].tolist(), strict=True):
                    extra += self._longer(codes, pieces, i, self.longer[j])
        if self.led:
            led = (flags[:-1] & _LEADS).nonzero()[0]
            for i, code in zip(led.tolist(), codes[led].tolist(), strict=True):
                for trigger_id, start in self.led[code]:
                    if pieces[i + 1].startswith(start):
                        extra += (trigger_id, i)
        if extra:
            triggers.append(np.array(extra[::2], dtype=np.intp))
            positions.append(np.array(extra[1::2], dtype=np.intp))
        # ordered by trigger, then position: each trigger's occurrences come from one of the arrays, in order
        found = np.concatenate(triggers, dtype=np.intp)
        if not len(found):
            return None
        if len(found) < self.RADIX_FROM:
            keys = found * n + np.concatenate(positions)
            keys.sort()
            found, at = np.divmod(keys, n)
        else:  # a stable sort on the trigger alone, 16 bits at a time (numpy's radix sort)
            order = np.argsort((found & 0xFFFF).astype(np.uint16), kind="stable")
            for shift in range(16, self.id_bits, 16):
                digits = ((found[order] >> shift) & 0xFFFF).astype(np.uint16)
                order = order[np.argsort(digits, kind="stable")]
            found, at = found[order], np.concatenate(positions)[order]
        change = np.empty(len(found) + 1, dtype=np.bool_)  # where a trigger's occurrences start, and the end
        change[0] = change[-1] = True
        np.not_equal(found[1:], found[:-1], out=change[1:-1])
        firsts = change.nonzero()[0]
        return found[firsts[:-1]], firsts, at

    @staticmethod
    def _longer(
        codes: IntArray, pieces: Sequence[str], i: int, phrases: list[tuple[int, list[int], str | None]]
    ) -> list[int]:
        """Trigger id, ``i``, ... for the phrases (trigger id, the codes of the words after the first two, the
        prefix ending it if any) whose first two words are at ``i`` and the rest follows."""
        found: list[int] = []
        n = len(codes)
        for trigger_id, rest, last in phrases:
            end = i + 2 + len(rest)
            if codes[i + 2 : end].tolist() == rest and (
                last is None or (end < n and pieces[end].startswith(last))
            ):
                found += (trigger_id, i)
        return found


class _Pieces(Sequence[str]):
    """The pieces of a text searched by words (:meth:`_TokenSearch.find_words`), made strings when read:
    ``data[starts[i]:ends[i]]``, decoded."""

    def __init__(self, data: bytes, starts: IntArray, ends: IntArray) -> None:
        self.data, self.starts, self.ends = data, starts, ends

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, at: int) -> str: ...

    @overload
    def __getitem__(self, at: slice) -> list[str]: ...

    def __getitem__(self, at: int | slice) -> str | list[str]:
        if isinstance(at, slice):
            return [self[i] for i in range(*at.indices(len(self)))]
        return self.data[self.starts[at] : self.ends[at]].decode()


class _Listing(Generic[K]):
    """The topics of a plan's entries as arrays, each entry's in the order they were added, so that matches
    are put in the order of their topics with an argsort. Integer keys are kept in an array too: read from
    there, they are new objects, not the index's own scattered over memory."""

    def __init__(self, topics: list[dict[K, int]]) -> None:
        ordered = [sorted(t.items(), key=itemgetter(1)) for t in topics]
        #: the topics of entry i: ``keys[start[i]:start[i + 1]]``, added as ``serials[...]``
        self.start = np.zeros(len(ordered) + 1, dtype=np.intp)
        np.cumsum([len(o) for o in ordered], out=self.start[1:])
        self.keys = [key for o in ordered for key, _ in o]
        self.serials = np.array([serial for o in ordered for _, serial in o], dtype=np.intp)
        ints = all(type(key) is int and -(2**63) <= cast("int", key) < 2**63 for key in self.keys)
        self.int_keys = np.array(self.keys, dtype=np.int64) if ints and self.keys else None
        #: the same as lists, to sort a few matches without arrays
        self.listed = self.start.tolist(), self.serials.tolist()

    def order(self, rows: list[int], made: list[Match]) -> list[tuple[K, Match]]:
        """Each topic of the entries ``rows`` with the match ``made`` for it, in the order of the topics."""
        if len(rows) < ARRAYS_FROM:
            start, serials = self.listed
            ordered = [
                (serials[i], self.keys[i], match)
                for row, match in zip(rows, made, strict=True)
                for i in range(start[row], start[row + 1])
            ]
            ordered.sort(key=_FIRST)
            return [(key, match) for _, key, match in ordered]
        at = np.array(rows, dtype=np.intp)
        lo = self.start[at]
        lengths = self.start[at + 1] - lo
        topics = _ranges(lo, lengths)
        order = self.serials[topics].argsort()
        picked = topics[order]
        keys: list[K] = (
            self.int_keys[picked].tolist()
            if self.int_keys is not None
            else list(map(self.keys.__getitem__, picked.tolist()))
        )
        owners = np.arange(len(rows)).repeat(lengths)[order].tolist()
        return list(zip(keys, map(made.__getitem__, owners), strict=True))


class _Plan(Generic[K]):
    """What the triggers present in a document lead to, and how their entries are scored, as arrays.

    Candidates: one row per trigger of an entry's anchor and trigger of its second requirement (or
    :attr:`anyway` if it has none), rows grouped by anchor trigger, so that a document's candidates come
    from a few array operations, whatever their number. Scoring: each term node is a *slot*; an entry of
    :func:`flat_form` is a row of slots in :attr:`groups` (ANDed groups of ORed slots) and
    :attr:`negated`; the slots of any other entry's terms are listed, so their values can be worked out
    with the rest.
    """

    def __init__(self, entries: list[_Entry[K]], triggers: int) -> None:
        #: ordered by their first topic, so that candidates come nearly in the order of the results
        self.entries = sorted(entries, key=_first_added)
        #: the second trigger of the entries requiring nothing more: always "present"
        self.anyway = triggers
        firsts: list[int] = []
        thens: list[int] = []
        rows: list[int] = []
        for i, entry in enumerate(self.entries):
            for first in entry.anchor:
                for then in entry.second or (triggers,):
                    firsts.append(first)
                    thens.append(then)
                    rows.append(i)
        anchors = np.array(firsts, dtype=np.intp)
        order = np.argsort(anchors, kind="stable")
        #: rows of anchor trigger t: ``start[t]`` to ``start[t + 1]``
        self.start = np.zeros(triggers + 1, dtype=np.intp)
        np.cumsum(np.bincount(anchors, minlength=triggers), out=self.start[1:])
        self.stop = self.start[1:].copy()
        self.then = np.array(thens, dtype=np.int32)[order]
        self.entry = np.array(rows, dtype=np.int32)[order]
        self.with_rest = np.array([bool(entry.rest) for entry in self.entries], dtype=np.bool_)
        self.any_rest = bool(self.with_rest.any())
        #: which triggers a document has (set and cleared by :meth:`found`); the second trigger of the entries
        #: requiring nothing more always
        self.marked = np.zeros(triggers + 1, dtype=np.bool_)
        self.marked[triggers] = True
        #: each entry's shared tree, query tree and topics (the entries' own dictionaries, kept up to date),
        #: so that scoring reaches no entry
        self.shared = [entry.shared for entry in self.entries]
        self.roots = [entry.query.root for entry in self.entries]
        self.topics = [entry.topics for entry in self.entries]
        self._listing: tuple[int, _Listing[K]] | None = None
        slots: dict[TermNode, int] = {}
        #: the term node of slot ``s`` is ``nodes[s - 2]`` (0 and 1 pad)
        self.nodes: list[TermNode] = []

        def slot(node: TermNode) -> int:
            found = slots.get(node)
            if found is None:
                found = slots[node] = len(self.nodes) + 2
                self.nodes.append(node)
            return found

        forms = [_flat(entry.shared, slot) for entry in self.entries]
        width = max((len(groups) for groups, _ in filter(None, forms)), default=1)
        depth = max((len(g) for groups, _ in filter(None, forms) for g in groups), default=1)
        negated = max((len(n) for _, n in filter(None, forms)), default=0)
        unused = [_NEUTRAL, *[_ABSENT] * (depth - 1)]
        groups: list[list[int]] = []
        nots: list[list[int]] = []
        terms: list[int] = []
        ends: list[int] = []
        for entry, form in zip(self.entries, forms, strict=True):
            if form is None:
                terms += dict.fromkeys(map(slot, filter(_located, terms_below(entry.shared))))
                groups.append(unused * width)
                nots.append([_ABSENT] * negated)
            else:
                row = [s for g in form[0] for s in [*g, *[_ABSENT] * (depth - len(g))]]
                groups.append(row + unused * (width - len(form[0])))
                nots.append(form[1] + [_ABSENT] * (negated - len(form[1])))
            ends.append(len(terms))
        #: the slots of the terms of each entry not scored as arrays: ``terms[term_start[i]:...[i + 1]]``
        self.term_start = np.array([0, *ends], dtype=np.intp)
        self.terms = np.array(terms, dtype=np.int32)
        #: whether each entry is scored as arrays
        self.flat = np.array([form is not None for form in forms], dtype=np.bool_)
        self.groups = np.array(groups, dtype=np.int32).reshape(len(self.entries), width, depth)
        self.negated = np.array(nots, dtype=np.int32).reshape(len(self.entries), negated)
        self.slot_trigger = np.array([-1, -1, *(n.trigger_id for n in self.nodes)], dtype=np.intp)
        title_only = (n.fields == (TITLE,) for n in self.nodes)
        self.slot_title = np.array([False, False, *title_only], dtype=np.bool_)

    def listing(self, version: int) -> _Listing[K]:
        """The entries' topics as arrays, rebuilt when the topics have changed since (``version`` tells)."""
        if self._listing is None or self._listing[0] != version:
            self._listing = version, _Listing(self.topics)
        return self._listing[1]

    def found(self, present: IntArray) -> Rows:
        """The entries (indices in :attr:`entries`, ascending) whose anchor and second requirement have a
        trigger in ``present`` (trigger ids, each once), and their further requirements too."""
        lo = self.start[present]
        rows = _ranges(lo, self.stop[present] - lo)
        if not len(rows):
            return _NO_ROWS
        marked = self.marked
        marked[present] = True
        hit = _distinct(self.entry[rows[marked[self.then[rows]]]])
        marked[present] = False
        if self.any_rest:
            checked = self.with_rest[hit]
            if checked.any():
                ids = set(present.tolist())
                for i in checked.nonzero()[0].tolist():
                    checked[i] = not self.entries[int(hit[i])].meets_rest(ids)
                hit = hit[~checked]
        return hit

    def score(
        self, doc: PreparedDocument, candidates: Rows
    ) -> tuple[list[int], list[float], Rows, dict[SharedNode, float]]:
        """Score ``candidates`` on ``doc`` (whose presearch was recorded): the flat ones that match and their
        scores; the others, to be worked out node by node, with their terms' values to start from."""
        flat = self.flat[candidates]
        scored, others = candidates[flat], candidates[~flat]
        groups, negated = self.groups[scored], self.negated[scored]
        lo = self.term_start[others]
        terms = self.terms[_ranges(lo, self.term_start[others + 1] - lo)]
        slots = _distinct(np.concatenate([groups.ravel(), negated.ravel(), terms]))
        values = doc.term_values(self.slot_trigger[slots], self.slot_title[slots])
        if len(slots) and slots[0] == _NEUTRAL:
            values[0] = 2.0  # weaker than no evidence: the AND's minimum ignores it
        best = values[slots.searchsorted(groups)].max(axis=2).min(axis=1)
        true = best != FALSE
        if negated.shape[1]:
            true &= (values[slots.searchsorted(negated)] == FALSE).all(axis=1)
        matched = true.nonzero()[0]
        nodes: map[SharedNode] = map(self.nodes.__getitem__, (terms - 2).tolist())
        memo = dict(zip(nodes, values[slots.searchsorted(terms)].tolist(), strict=True))
        return scored[matched].tolist(), final_scores(best[matched]).tolist(), others, memo


def _located(node: TermNode) -> bool:
    return node.trigger_id >= 0


def _flat(shared: SharedNode, slot: Callable[[TermNode], int]) -> tuple[list[list[int]], list[int]] | None:
    """The entry's :func:`flat_form` in slots, if it is one and not too large for the arrays."""
    form = flat_form(shared)
    if form is None:
        return None
    groups, negated = form
    if len(groups) > MAX_GROUPS or len(negated) > MAX_NEGATED:
        return None
    if any(len(g) > MAX_ALTERNATIVES for g in groups):
        return None
    return [[slot(t) for t in g] for g in groups], [slot(t) for t in negated]


class TopicIndex(Generic[K]):
    """Many compiled topics, matched against a document by evaluating only those that can match.

    Topics with the same query (the same tree, however it was written) are evaluated once. ``add`` and
    ``remove`` are cheap; the token search is rebuilt on the next search after a new trigger was added (or
    after many were dropped), the lookup arrays after a query was added or dropped, the arrays of topics after
    any topic was. Results come in the order the topics were added.
    """

    def __init__(self) -> None:
        self._topics: dict[K, tuple[int, _Entry[K]]] = {}  # topic -> (order added, entry)
        self._entries: dict[Node, _Entry[K]] = {}  # query tree -> entry
        self._shared = SharedNodes()
        self._serial = 0
        #: changes with every topic added or removed
        self._version = 0
        self._always: dict[_Entry[K], None] = {}
        self._trigger_ids: dict[str, int] = {}
        self._patterns: dict[int, str] = {}
        self._uses: dict[int, int] = {}
        self._next_trigger = 0
        self._search_: _TokenSearch | None = None
        #: what the token search looks for: trigger string -> id (never changed, replaced on a rebuild)
        self._searched: dict[str, int] = {}
        self._stale = False
        self._plan: _Plan[K] | None = None

    def __len__(self) -> int:
        return len(self._topics)

    def __contains__(self, key: object) -> bool:
        return key in self._topics

    def add(self, key: K, query: CompiledQuery) -> None:
        """Index ``query`` under ``key``, replacing the query indexed under it before, if any."""
        if key in self._topics:
            self.remove(key)
        entry = self._entries.get(query.root)
        if entry is None:
            entry = self._entries[query.root] = self._new_entry(query)
            self._plan = None
        entry.topics[key] = self._serial
        self._topics[key] = (self._serial, entry)
        self._serial += 1
        self._version += 1

    def _new_entry(self, query: CompiledQuery) -> _Entry[K]:
        found = sorted(dict.fromkeys(requirements(query.root)), key=_cost)
        shared = self._shared.add(query.root)
        located = located_triggers(query.root)
        if not found:
            uses = tuple(self._use(p) for p in sorted(located))
            entry: _Entry[K] = _Entry(query, shared, (), (), (), uses, {})
            self._always[entry] = None
            return entry
        anchor, *others = found
        others = [r for r in others if not anchor <= r]
        second = others[0] if others else frozenset[str]()
        rest = [r for r in others[1:] if not second <= r]
        ids = {pattern: self._use(pattern) for pattern in sorted(located.union(anchor, *others))}
        return _Entry(
            query,
            shared,
            tuple(ids[p] for p in sorted(anchor)),
            tuple(ids[p] for p in sorted(second)),
            tuple(frozenset(ids[p] for p in r) for r in rest),
            tuple(ids.values()),
            {},
        )

    def remove(self, key: K) -> None:
        """Forget the topic under ``key``; raises KeyError if there is none."""
        _, entry = self._topics.pop(key)
        del entry.topics[key]
        self._version += 1
        if entry.topics:
            return
        del self._entries[entry.query.root]
        self._plan = None
        self._shared.release(entry.shared)
        self._always.pop(entry, None)
        for trigger_id in entry.uses:
            self._release(trigger_id)

    def _use(self, pattern: str) -> int:
        trigger_id = self._trigger_ids.get(pattern)
        if trigger_id is None:
            trigger_id = self._trigger_ids[pattern] = self._next_trigger
            self._patterns[trigger_id] = pattern
            self._uses[trigger_id] = 0
            self._next_trigger += 1
            self._stale = True
        self._uses[trigger_id] += 1
        return trigger_id

    def _release(self, trigger_id: int) -> None:
        self._uses[trigger_id] -= 1
        if self._uses[trigger_id] == 0:
            del self._uses[trigger_id]
            del self._trigger_ids[self._patterns.pop(trigger_id)]
            # a dropped trigger left in the search points to no topic; rebuild once most are such
            if len(self._searched) > 2 * len(self._trigger_ids) + 1000:
                self._stale = True

    def _search(self) -> tuple[_TokenSearch, _Plan[K]] | None:
        """The token search over the current triggers and the lookup arrays for what they lead to, each
        rebuilt if out of date; None if there is no trigger to look for."""
        if self._stale:
            self._search_ = self._plan = None
            self._searched = dict(self._trigger_ids)
            if self._trigger_ids:
                self._search_ = _TokenSearch(self._searched)
            self._stale = False
        if self._search_ is None:
            return None
        if self._plan is None:
            self._shared.locate(self._searched)
            self._plan = _Plan(list(self._entries.values()), self._next_trigger)
        self._plan.listing(self._version)
        return self._search_, self._plan

    def prepare_search(self) -> None:
        """Build the token search and all the arrays now, not on the next search (to time them apart)."""
        self._search()

    def _candidates(self, doc: PreparedDocument) -> tuple[_Plan[K] | None, Rows]:
        """The lookup arrays and the entries (their indices there) whose requirements the document meets,
        besides those requiring nothing; the document keeps where the triggers are."""
        search = self._search()
        if search is None:
            return None, _NO_ROWS
        tokens, plan = search
        starts: IntArray | None = None  # where the pieces start, if the search was over the words
        if len(doc.document.text) + len(doc.document.title) >= WORDS_FROM:
            text, aligned, spaced = doc.search_words()
            found, starts = tokens.find_words(text, spaced)
        else:
            listed, aligned = doc.search_tokens()
            found = tokens.find(listed)
        if found is None:
            nothing = np.zeros(0, dtype=np.intp)
            found = nothing, np.zeros(1, dtype=np.intp), nothing
        present, firsts, positions = found
        if aligned:  # the body's tokens follow the title's and the line break between them
            titles = doc.title_tokens
            doc.record_presearch(present, firsts, positions - (positions > titles), self._searched, starts)
        else:
            doc.forget_presearch()
        return plan, plan.found(present)

    def candidates(self, doc: PreparedDocument) -> set[K]:
        """The topics that can match ``doc``: a superset of those :meth:`match` returns."""
        plan, found = self._candidates(doc)
        entries = [*self._always, *(plan.entries[i] for i in found.tolist())] if plan else list(self._always)
        return {key for entry in entries for key in entry.topics}

    def match(self, doc: PreparedDocument) -> list[tuple[K, Match]]:
        """The topics matching ``doc`` with their matches, in the order the topics were added."""
        plan, found = self._candidates(doc)
        rows: list[int] = []  # the matching entries (indices in the plan) and their matches
        made: list[Match] = []
        memo: dict[SharedNode, float] = {}
        if plan is not None and len(found):
            roots = plan.roots
            if doc.presearched and len(found) >= ARRAYS_FROM:
                scored, scores, found, memo = plan.score(doc, found)
                rows += scored
                made += [Match(score, None, doc, roots, i) for i, score in zip(scored, scores, strict=True)]
            shared = plan.shared
            for i in found.tolist():
                node = shared[i]
                value = memo.get(node)
                if value is None:
                    value = memo[node] = node.value(doc, memo)
                if value != FALSE:
                    rows.append(i)
                    made.append(Match(final_score(value), None, doc, roots, i))
        if plan is None:
            matches: list[tuple[int, K, Match]] = []
        elif not self._always:
            return plan.listing(self._version).order(rows, made) if rows else []
        else:
            matches = [
                (added, key, match)
                for i, match in zip(rows, made, strict=True)
                for key, added in plan.topics[i].items()
            ]
        for entry in self._always:
            value = entry.shared.value(doc, memo)
            if value != FALSE:
                match = Match(final_score(value), None, doc, (entry.query.root,))
                matches += [(added, key, match) for key, added in entry.topics.items()]
        matches.sort(key=_FIRST)
        return [(key, match) for _, key, match in matches]
