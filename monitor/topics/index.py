"""The presearcher: of many topics, the few that can match a document, found in one pass over its text.

As in Lucene's Monitor, each query is reduced to *triggers*: strings at least one of which must occur in a
document's token stream (:attr:`PreparedDocument.stream`, tokens with a space on both sides) for the query
to be true: ``" xi jinping "`` for a phrase, ``" putin"`` for the prefix ``putin*``. One Aho–Corasick
automaton over every topic's triggers finds the ones present; only the topics they point to are evaluated.

A query's *requirements* are sets of triggers, one of each set to be present:

* a term requires its own trigger;
* AND, NEAR and SENTENCE need all their children, so they keep all their children's requirements;
* OR requires one set: the union of one requirement of each child (nothing if a child requires nothing);
* NOT and field filters require nothing, so an AND leans on its other children;
* ``title:`` and ``@alias`` require what their child does (the title is part of the stream).

A topic is found through a trigger of its *anchor*, the requirement whose triggers look rarest, together
with a trigger of the next rarest (found by intersecting the present triggers with those paired with the
anchor's), and is a candidate when each further requirement has a trigger present too. A query requiring
nothing (none compiles: every query has a positive term) would be a candidate for every document.

The search hands the document where it found each trigger, so evaluation reads most terms' positions from
there instead of looking for them again.

The topics' query trees are hash-consed (:class:`~monitor.topics.match.SharedNodes`): a sub-expression that
many topics hold (a term, an OR of an alias's names, a NEAR pair) is one shared node, evaluated once per
document, so a topic costs little more than combining its children's cached values. Only the score is worked
out then; a match's explanation and snippet come from evaluating its query in full when first read.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Generic, Protocol, TypeVar

import ahocorasick  # type: ignore[import-not-found]

from monitor.topics.match import Match, PreparedDocument, SharedNode, SharedNodes, shared_score, trigger
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

K = TypeVar("K", bound=Hashable)
_V = TypeVar("_V")

#: trigger strings of which at least one must occur in the stream
Requirement = frozenset[str]

_FIRST = itemgetter(0)
_MISS = object()


def _forget(entries_by_trigger: dict[int, dict[int, _V]], trigger_id: int, entry_id: int) -> None:
    entries = entries_by_trigger[trigger_id]
    del entries[entry_id]
    if not entries:
        del entries_by_trigger[trigger_id]


class _Automaton(Protocol):
    """The part of ``ahocorasick.Automaton`` used here (the module ships no type information)."""

    def add_word(self, key: str, value: int, /) -> bool: ...

    def make_automaton(self) -> None: ...

    def iter(self, string: str, /) -> Iterator[tuple[int, int]]: ...


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


@dataclass(slots=True)
class _Entry(Generic[K]):
    """One distinct query, the topics that have it, and how it is found: through a trigger of its anchor
    and, if it requires more, one of its second requirement; the further ones are checked then."""

    query: CompiledQuery
    #: the query's tree in the index's shared sub-expressions
    shared: SharedNode
    anchor: tuple[int, ...]
    second: tuple[int, ...]
    rest: tuple[frozenset[int], ...]
    #: topic -> the order it was added in
    topics: dict[K, int]


class TopicIndex(Generic[K]):
    """Many compiled topics, matched against a document by evaluating only those that can match.

    Topics with the same query (the same tree, however it was written) are evaluated once. ``add`` and
    ``remove`` are cheap; the automaton is rebuilt on the next search after a new trigger was added (or after
    many were dropped). Results come in the order the topics were added.
    """

    def __init__(self) -> None:
        self._topics: dict[K, tuple[int, int]] = {}  # topic -> (order added, entry id)
        self._entries: dict[int, _Entry[K]] = {}
        self._entry_ids: dict[Node, int] = {}
        self._shared = SharedNodes()
        self._serial = 0
        #: anchor trigger -> the entries requiring nothing more, found through it
        self._single: dict[int, dict[int, None]] = {}
        #: anchor trigger -> second trigger -> the entries found through the two, with their further ones
        self._paired: dict[int, dict[int, dict[int, tuple[frozenset[int], ...]]]] = {}
        self._always: dict[int, None] = {}
        self._trigger_ids: dict[str, int] = {}
        self._patterns: dict[int, str] = {}
        self._uses: dict[int, int] = {}
        self._next_entry = 0
        self._next_trigger = 0
        self._automaton: _Automaton | None = None
        #: what the automaton holds: trigger id -> string, and the strings
        self._searched: dict[int, str] = {}
        self._searched_strings: set[str] = set()
        self._in_automaton = 0
        self._stale = False

    def __len__(self) -> int:
        return len(self._topics)

    def __contains__(self, key: object) -> bool:
        return key in self._topics

    def add(self, key: K, query: CompiledQuery) -> None:
        """Index ``query`` under ``key``, replacing the query indexed under it before, if any."""
        if key in self._topics:
            self.remove(key)
        entry_id = self._entry_ids.get(query.root)
        if entry_id is None:
            entry_id = self._entry_ids[query.root] = self._next_entry
            self._next_entry += 1
            self._entries[entry_id] = self._new_entry(entry_id, query)
        self._entries[entry_id].topics[key] = self._serial
        self._topics[key] = (self._serial, entry_id)
        self._serial += 1

    def _new_entry(self, entry_id: int, query: CompiledQuery) -> _Entry[K]:
        found = sorted(dict.fromkeys(requirements(query.root)), key=_cost)
        shared = self._shared.add(query.root)
        if not found:
            self._always[entry_id] = None
            return _Entry(query, shared, (), (), (), {})
        anchor, *others = found
        others = [r for r in others if not anchor <= r]
        second = others[0] if others else frozenset[str]()
        rest = [r for r in others[1:] if not second <= r]
        ids = {pattern: self._use(pattern) for pattern in anchor.union(*others)}
        entry: _Entry[K] = _Entry(
            query,
            shared,
            tuple(ids[p] for p in sorted(anchor)),
            tuple(ids[p] for p in sorted(second)),
            tuple(frozenset(ids[p] for p in r) for r in rest),
            {},
        )
        for first in entry.anchor:
            if not entry.second:
                self._single.setdefault(first, {})[entry_id] = None
            for then in entry.second:
                self._paired.setdefault(first, {}).setdefault(then, {})[entry_id] = entry.rest
        return entry

    def remove(self, key: K) -> None:
        """Forget the topic under ``key``; raises KeyError if there is none."""
        _, entry_id = self._topics.pop(key)
        entry = self._entries[entry_id]
        del entry.topics[key]
        if entry.topics:
            return
        del self._entries[entry_id]
        del self._entry_ids[entry.query.root]
        self._shared.release(entry.shared)
        self._always.pop(entry_id, None)
        for first in entry.anchor:
            if not entry.second:
                _forget(self._single, first, entry_id)
            for then in entry.second:
                _forget(self._paired[first], then, entry_id)
                if not self._paired[first]:
                    del self._paired[first]
        for trigger_id in {*entry.anchor, *entry.second, *(t for r in entry.rest for t in r)}:
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
            # a dropped trigger left in the automaton points to no topic; rebuild once most are such
            if self._in_automaton > 2 * len(self._trigger_ids) + 1000:
                self._stale = True

    def _search(self) -> _Automaton | None:
        """The automaton over the current triggers, rebuilt if triggers were added since it was built."""
        if self._stale:
            self._automaton = None
            self._searched = dict(self._patterns)
            self._searched_strings = set(self._trigger_ids)
            if self._trigger_ids:
                automaton: _Automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
                for pattern, trigger_id in self._trigger_ids.items():
                    automaton.add_word(pattern, trigger_id)
                automaton.make_automaton()
                self._automaton = automaton
            self._in_automaton = len(self._trigger_ids)
            self._stale = False
        return self._automaton

    def prepare_search(self) -> None:
        """Build the automaton now rather than on the next search (to time the two apart)."""
        self._search()

    def _candidate_entries(self, doc: PreparedDocument) -> set[int]:
        """The entries whose requirements the document meets; the document keeps where the triggers are."""
        found = set(self._always)
        automaton = self._search()
        if automaton is None:
            return found
        occurrences: dict[int, list[int]] = {}
        for end, trigger_id in automaton.iter(doc.stream):
            ends = occurrences.get(trigger_id)
            if ends is None:
                occurrences[trigger_id] = [end]
            else:
                ends.append(end)
        patterns = self._searched
        doc.record_presearch({patterns[t]: ends for t, ends in occurrences.items()}, self._searched_strings)
        present = set(occurrences)
        single, paired = self._single, self._paired
        for first in present:
            alone = single.get(first)
            if alone is not None:
                found.update(alone)
            pairs = paired.get(first)
            if pairs is None:
                continue
            for then in pairs.keys() & present:
                for entry_id, rest in pairs[then].items():
                    for requirement in rest:
                        if requirement.isdisjoint(present):
                            break
                    else:
                        found.add(entry_id)
        return found

    def candidates(self, doc: PreparedDocument) -> set[K]:
        """The topics that can match ``doc``: a superset of those :meth:`match` returns."""
        return {key for entry_id in self._candidate_entries(doc) for key in self._entries[entry_id].topics}

    def match(self, doc: PreparedDocument) -> list[tuple[K, Match]]:
        """The topics matching ``doc`` with their matches, in the order the topics were added."""
        matches: list[tuple[int, K, Match]] = []
        memo: dict[SharedNode, float | None] = {}
        entries, miss = self._entries, _MISS
        for entry_id in self._candidate_entries(doc):
            entry = entries[entry_id]
            value = memo.get(entry.shared, miss)
            if value is miss:
                value = shared_score(entry.shared, doc, memo)
            if value is None:
                continue
            found = Match(round(min(1.0, max(0.0, value)), 3), None, doc, entry.query.root)  # type: ignore[call-overload]
            topics = entry.topics
            if len(topics) == 1:
                for key, added in topics.items():
                    matches.append((added, key, found))
            else:
                matches += [(added, key, found) for key, added in topics.items()]
        matches.sort(key=_FIRST)
        return [(key, found) for _, key, found in matches]
