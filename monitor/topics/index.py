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
with a trigger of the next rarest, and is a candidate when each further requirement has a trigger present
too. A query requiring nothing (none compiles: every query has a positive term) would be a candidate for every
document. The (anchor, second) pairs are kept as arrays (:class:`_Leads`), so that a document's candidates
come from a few array operations over its present triggers rather than a Python loop over them.

The search hands the document where it found each trigger, grouped by trigger and already turned into token
positions, so evaluation scores most terms from there instead of looking for them again.

The topics' query trees are hash-consed (:class:`~monitor.topics.match.SharedNodes`): a sub-expression that
many topics hold (a term, an OR of an alias's names, a NEAR pair) is one shared node, evaluated once per
document, so a topic costs little more than combining its children's cached values. Only the score is worked
out then; a match's explanation and snippet come from evaluating its query in full when first read.
"""

from __future__ import annotations

from collections.abc import Container, Hashable, Iterator
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Generic, Protocol, TypeVar

import ahocorasick  # type: ignore[import-not-found]
import numpy as np

from monitor.topics.match import (
    FALSE,
    IntArray,
    Match,
    PreparedDocument,
    SharedNode,
    SharedNodes,
    final_score,
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

K = TypeVar("K", bound=Hashable)

#: trigger strings of which at least one must occur in the stream
Requirement = frozenset[str]

_FIRST = itemgetter(0)


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
    #: topic -> the order it was added in
    topics: dict[K, int]

    def meets_rest(self, present: Container[int]) -> bool:
        """Whether each further requirement has a trigger in ``present``."""
        return all(any(t in present for t in requirement) for requirement in self.rest)


def _first_added(entry: _Entry[K]) -> int:
    return min(entry.topics.values())


class _Leads(Generic[K]):
    """Which entries the triggers present in a document lead to, as arrays: one row per trigger of an entry's
    anchor and trigger of its second requirement (or :attr:`anyway` if it has none), rows grouped by anchor
    trigger. A document's candidates are then found with a few array operations, whatever their number.
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
        self.then = np.array(thens, dtype=np.intp)[order]
        self.entry = np.array(rows, dtype=np.intp)[order]
        self.with_rest = any(entry.rest for entry in self.entries)

    def found(self, present: IntArray) -> list[_Entry[K]]:
        """The entries whose anchor and second requirement have a trigger in ``present`` (trigger ids, each
        once), and their further requirements too; in the order of :attr:`entries`."""
        lo = self.start[present]
        lengths = self.start[present + 1] - lo
        ends = lengths.cumsum()
        if not ends[-1]:
            return []
        # the rows of every present anchor, one range after another
        rows = (lo - ends + lengths).repeat(lengths) + np.arange(ends[-1])
        marked = np.zeros(self.anyway + 1, dtype=np.bool_)
        marked[present] = True
        marked[self.anyway] = True
        hit = sorted(set(self.entry[rows[marked[self.then[rows]]]].tolist()))
        found = list(map(self.entries.__getitem__, hit))
        if self.with_rest:
            ids = set(present.tolist())
            found = [e for e in found if not e.rest or e.meets_rest(ids)]
        return found


class TopicIndex(Generic[K]):
    """Many compiled topics, matched against a document by evaluating only those that can match.

    Topics with the same query (the same tree, however it was written) are evaluated once. ``add`` and
    ``remove`` are cheap; the automaton is rebuilt on the next search after a new trigger was added (or after
    many were dropped), the lookup arrays after a query was added or dropped. Results come in the order the
    topics were added.
    """

    def __init__(self) -> None:
        self._topics: dict[K, tuple[int, _Entry[K]]] = {}  # topic -> (order added, entry)
        self._entries: dict[Node, _Entry[K]] = {}  # query tree -> entry
        self._shared = SharedNodes()
        self._serial = 0
        self._always: dict[_Entry[K], None] = {}
        self._trigger_ids: dict[str, int] = {}
        self._patterns: dict[int, str] = {}
        self._uses: dict[int, int] = {}
        self._next_trigger = 0
        self._automaton: _Automaton | None = None
        #: what the automaton holds: trigger string -> id (never changed, replaced on a rebuild)
        self._searched: dict[str, int] = {}
        self._stale = False
        self._leads: _Leads[K] | None = None
        self._skips: IntArray = np.zeros(0, dtype=np.intp)

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
            self._leads = None
        entry.topics[key] = self._serial
        self._topics[key] = (self._serial, entry)
        self._serial += 1

    def _new_entry(self, query: CompiledQuery) -> _Entry[K]:
        found = sorted(dict.fromkeys(requirements(query.root)), key=_cost)
        shared = self._shared.add(query.root)
        if not found:
            entry: _Entry[K] = _Entry(query, shared, (), (), (), {})
            self._always[entry] = None
            return entry
        anchor, *others = found
        others = [r for r in others if not anchor <= r]
        second = others[0] if others else frozenset[str]()
        rest = [r for r in others[1:] if not second <= r]
        ids = {pattern: self._use(pattern) for pattern in anchor.union(*others)}
        return _Entry(
            query,
            shared,
            tuple(ids[p] for p in sorted(anchor)),
            tuple(ids[p] for p in sorted(second)),
            tuple(frozenset(ids[p] for p in r) for r in rest),
            {},
        )

    def remove(self, key: K) -> None:
        """Forget the topic under ``key``; raises KeyError if there is none."""
        _, entry = self._topics.pop(key)
        del entry.topics[key]
        if entry.topics:
            return
        del self._entries[entry.query.root]
        self._leads = None
        self._shared.release(entry.shared)
        self._always.pop(entry, None)
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
            if len(self._searched) > 2 * len(self._trigger_ids) + 1000:
                self._stale = True

    def _search(self) -> tuple[_Automaton, _Leads[K], IntArray] | None:
        """The automaton over the current triggers, the lookup arrays for what they lead to, and for each
        trigger id the distance from its last character to its first token's first; each rebuilt if out of
        date."""
        if self._stale:
            self._automaton = self._leads = None
            self._searched = dict(self._trigger_ids)
            self._skips = np.zeros(self._next_trigger, dtype=np.intp)
            if self._trigger_ids:
                automaton: _Automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
                for pattern, trigger_id in self._trigger_ids.items():
                    automaton.add_word(pattern, trigger_id)
                    self._skips[trigger_id] = 2 - len(pattern)
                automaton.make_automaton()
                self._automaton = automaton
            self._stale = False
        if self._automaton is None:
            return None
        if self._leads is None:
            self._leads = _Leads(list(self._entries.values()), self._next_trigger)
            self._shared.locate(self._searched)
        return self._automaton, self._leads, self._skips

    def prepare_search(self) -> None:
        """Build the automaton and lookup arrays now rather than on the next search (to time them apart)."""
        self._search()

    def _candidate_entries(self, doc: PreparedDocument) -> list[_Entry[K]]:
        """The entries whose requirements the document meets, each once; the document keeps where the
        triggers are."""
        search = self._search()
        if search is None:
            return list(self._always)
        automaton, leads, skips = search
        found = np.fromiter(chain.from_iterable(automaton.iter(doc.stream)), dtype=np.intp)
        if not len(found):
            return list(self._always)
        # (end, trigger id) pairs: grouped by trigger, each trigger's occurrences in the order found
        order = found[1::2].argsort(kind="stable")
        ids = found[1::2][order]
        starts = found[::2][order] + skips[ids]
        new = np.ones(len(ids), dtype=np.bool_)
        np.not_equal(ids[1:], ids[:-1], out=new[1:])
        firsts = new.nonzero()[0]
        present = ids[firsts]
        doc.record_presearch(present.tolist(), [*firsts.tolist(), len(ids)], starts, self._searched)
        return [*self._always, *leads.found(present)]

    def candidates(self, doc: PreparedDocument) -> set[K]:
        """The topics that can match ``doc``: a superset of those :meth:`match` returns."""
        return {key for entry in self._candidate_entries(doc) for key in entry.topics}

    def match(self, doc: PreparedDocument) -> list[tuple[K, Match]]:
        """The topics matching ``doc`` with their matches, in the order the topics were added."""
        matches: list[tuple[int, K, Match]] = []
        memo: dict[SharedNode, float] = {}
        for entry in self._candidate_entries(doc):
            shared = entry.shared
            value = memo.get(shared)
            if value is None:
                value = memo[shared] = shared.value(doc, memo)
            if value == FALSE:
                continue
            found = Match(final_score(value), None, doc, entry.query.root)
            for key, added in entry.topics.items():
                matches.append((added, key, found))
        matches.sort(key=_FIRST)
        return [(key, found) for _, key, found in matches]
