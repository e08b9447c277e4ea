"""How fast many watch topics match articles: TopicIndex (presearch + evaluation) against a naive loop.

Topics are generated, deterministically, from names, places and phrases found in the shared corpus's news
texts: capitalised word sequences ("Vladimir Putin", "Sakhalin Island"), frequent word pairs ("gas
supplies") and content words, combined as users write topics: single names, phrases, AND, OR groups, NOT,
NEAR/n, prefixes, title:, SENTENCE( ) and @aliases (see :class:`TopicMaker` for the two mixes).

Throughput is measured end to end on one core (the process is pinned to one CPU): each article is prepared
(tokenised) and matched through the index, which gives every match its score; explanations and snippets
are worked out when read, so one extra figure reads every match's snippet too. Building the index is timed
apart; after it, the index is frozen out of the garbage collector's reach, as a long-running matcher should
do. The naive loop prepares each article and evaluates every topic on it; at 10,000 and 100,000 topics on
an evenly spread sample of the articles (the table says how many), and the speedup compares it with the
index on that same sample. The mean over articles is dominated by a few long transcripts (up to 200,000
characters) that match thousands of topics, so the median time per article is printed too.

Times are the CPU time of the process (``time.thread_time``), which on a quiet machine is the wall time:
on a shared one, other processes slow a run down without being counted in it. That matters most for the
speedup, whose index side is one pass of a few tens of milliseconds against seconds of the naive loop; the
wall-clock speedup is printed too.

Usage: .venv/bin/python bench/matching.py [--quick] [--mix monitoring|broad] [--seed N]

The last line printed is one JSON object with the figures and whether each target is met.
"""

from __future__ import annotations

import argparse
import collections
import gc
import itertools
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor.topics import CompiledQuery, Document, Match, TopicIndex, compile_query, evaluate, prepare

#: what is timed: the process's CPU time (see the module's docstring)
CLOCK = time.thread_time

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "news_texts"
TOPIC_COUNTS = (10, 1_000, 10_000, 100_000)
#: articles the naive loop is timed on, per topic count (all articles below the first count listed)
NAIVE_SAMPLE = {10: None, 1_000: None, 10_000: 120, 100_000: 12}
QUICK_NAIVE_SAMPLE = {10: None, 1_000: 40, 10_000: 30, 100_000: 0}
QUICK_ARTICLES = 150
QUICK_SOURCE_ARTICLES = 200
TARGET_RATE_AT_100000 = 1_000
TARGET_SLOWDOWN = 10
TARGET_SPEEDUP = 100
#: a name in more of the texts than this is too broad to be a watch topic on its own (monitoring mix)
BROAD_SHARE = 0.02

#: capitalised runs of one to three words: names of people, places, organisations
_NAME_RE = re.compile(r"\b[A-Z][a-z]+(?:-[A-Z]?[a-z]+)?(?: +[A-Z][a-z]+(?:-[A-Z]?[a-z]+)?){0,2}\b")
_LOWER_WORD_RE = re.compile(r"\b[a-z]+\b")
#: two or more adjacent lower-case words, not part of a longer word
_LOWER_RUN_RE = re.compile(r"(?<![A-Za-z])[a-z]+(?: [a-z]+)+(?![A-Za-z])")
_STOPWORD_LIST = (
    "the and that this with from have were will would there their which about been they them these those "
    "what when where also more other into than then some such only very over after before being could "
    "should said says while within without between because during under most much many must well just "
    "like made make even each both here whom whose does done cannot again first last year years time "
    "today told well great good"
)
_STOPWORDS = frozenset(_STOPWORD_LIST.split())


@dataclass(frozen=True)
class Article:
    """A text of the corpus."""

    title: str
    text: str


@dataclass(frozen=True)
class Vocabulary:
    """What topics are made of, found in the corpus texts."""

    names: list[str]  #: capitalised runs, as written
    narrow_names: list[str]  #: names in at most ``BROAD_SHARE`` of the texts
    phrases: list[str]  #: frequent lower-case word pairs
    words: list[str]  #: frequent lower-case content words

    @property
    def stems(self) -> list[str]:
        """One-word names of six letters or more, to cut into prefixes (``Medved*``)."""
        return [n for n in self.names if n.isalpha() and len(n) >= 6]


def load(name: str) -> list[Article]:
    with (CORPUS / name).open(encoding="utf-8") as lines:
        return [Article(r.get("title") or "", r.get("text") or "") for r in map(json.loads, lines)]


def vocabulary(texts: Sequence[str]) -> Vocabulary:
    """Names, phrases and words from ``texts``, most frequent first (ties in order of appearance)."""
    lower: collections.Counter[str] = collections.Counter()
    names: collections.Counter[str] = collections.Counter()
    texts_with: collections.Counter[str] = collections.Counter()
    pairs: collections.Counter[str] = collections.Counter()
    for text in texts:
        lower.update(_LOWER_WORD_RE.findall(text))
        for run in _LOWER_RUN_RE.findall(text):
            pairs.update(f"{a} {b}" for a, b in itertools.pairwise(run.split()))
        in_text = _NAME_RE.findall(text)
        names.update(in_text)
        texts_with.update(set(in_text))
    # a capitalised run whose first word is common in lower case is a sentence start, not a name
    name_list = [n for n, _ in names.most_common() if lower[n.split()[0].lower()] < 3]
    narrow = [n for n in name_list if texts_with[n] <= BROAD_SHARE * len(texts)]
    phrase_list = [
        p
        for p, k in pairs.most_common()
        if k >= 3 and all(len(w) >= 4 and w not in _STOPWORDS for w in p.split())
    ]
    word_list = [w for w, k in lower.most_common() if k >= 3 and len(w) >= 5 and w not in _STOPWORDS]
    return Vocabulary(name_list, narrow, phrase_list, word_list)


class TopicMaker:
    """Generates topic queries, one template at a time, like people write them.

    The ``monitoring`` mix is what a watch list looks like: most topics pair a subject (a name, a group of
    names, a phrase, a prefix, an alias) with a qualifier (another name, a context word, NEAR, SENTENCE,
    title:), and a name found in more than ``BROAD_SHARE`` of the texts (Russia, Putin, Moscow in this
    Kremlin-heavy corpus) is never a topic on its own, since it would be in most of the digest. The ``broad``
    mix drops both habits: a third of its topics are single names or OR-groups of any names.
    """

    def __init__(self, vocab: Vocabulary, seed: int, mix: str = "monitoring") -> None:
        self.vocab = vocab
        self.random = random.Random(seed)
        self.stems = vocab.stems
        self.aliases: dict[str, str] = {}
        for i in range(200):
            self.aliases[f"group{i}"] = " OR ".join(self.name() for _ in range(self.random.randint(2, 4)))
        near = (3, 5, 10)
        self.templates: list[tuple[int, Callable[[], str]]] = [
            (14, lambda: f"{self.name()} AND {self.name()}"),
            (12, lambda: f"{self.name()} {self.context()}"),
            (8, lambda: f"({self.name()} OR {self.name()}) AND {self.context()}"),
            (6, lambda: f"{self.name()} {self.context()} -{self.context()}"),
            (7, lambda: f"{self.name()} NEAR/{self.random.choice(near)} {self.name()}"),
            (3, lambda: f"{self.name()} NEAR/{self.random.choice(near)} {self.context()}"),
            (6, lambda: f"{self.prefix()} AND {self.name()}"),
            (4, lambda: f"title:{self.name()} AND {self.context()}"),
            (5, lambda: f"SENTENCE({self.name()}, {self.context()})"),
            (5, lambda: f"@group{self.random.randrange(200)} AND {self.context()}"),
            (4, lambda: f'"{self.phrase()}" AND {self.name()}'),
            (4, lambda: f"{self.name()} ({self.context()} OR {self.context()})"),
        ]
        if mix == "monitoring":
            self.templates += [
                (10, lambda: self.name(self.vocab.narrow_names)),
                (
                    4,
                    lambda: f"({self.name(self.vocab.narrow_names)} OR {self.name(self.vocab.narrow_names)})",
                ),
                (3, lambda: f"title:{self.name(self.vocab.narrow_names)}"),
                (3, lambda: f'"{self.phrase()}"'),
            ]
        else:
            self.templates += [
                (18, lambda: self.name()),
                (10, lambda: f"({self.name()} OR {self.name()} OR {self.name()})"),
                (5, lambda: f"title:{self.name()}"),
                (8, lambda: f'"{self.phrase()}"'),
            ]
        self.weights = [w for w, _ in self.templates]

    def name(self, names: Sequence[str] | None = None) -> str:
        name = self.random.choice(names or self.vocab.names)
        return f'"{name}"' if " " in name else name

    def phrase(self) -> str:
        return self.random.choice(self.vocab.phrases)

    def context(self) -> str:
        if self.random.random() < 0.3:
            return f'"{self.phrase()}"'
        return self.random.choice(self.vocab.words)

    def prefix(self) -> str:
        word = self.random.choice(self.stems)
        return word[: max(4, len(word) - 2)] + "*"

    def make(self, count: int) -> list[CompiledQuery]:
        queries: list[CompiledQuery] = []
        while len(queries) < count:
            (template,) = self.random.choices([t for _, t in self.templates], self.weights)
            queries.append(compile_query(template(), self.aliases))
        return queries


def spread(items: Sequence[Article], count: int | None) -> list[Article]:
    """``count`` items taken evenly across ``items`` (so long and short articles both come in)."""
    if count is None or count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def build(queries: Sequence[CompiledQuery]) -> tuple[TopicIndex[int], float]:
    """The index of ``queries``, automaton built, and the seconds that took.

    The index's objects are then moved out of the garbage collector's reach (``gc.freeze``), as a
    long-running matcher does once its topics are loaded: otherwise every full collection walks them all.
    """
    gc.unfreeze()
    gc.collect()
    started = CLOCK()
    index: TopicIndex[int] = TopicIndex()
    for i, query in enumerate(queries):
        index.add(i, query)
    index.prepare_search()
    seconds = CLOCK() - started
    gc.collect()
    gc.freeze()
    return index, seconds


def documents(articles: Sequence[Article]) -> list[Document]:
    return [Document(title=a.title, text=a.text) for a in articles]


def time_index(
    index: TopicIndex[int], docs: Sequence[Document], *, read_snippets: bool = False
) -> tuple[float, int, list[float], float]:
    """Seconds to prepare and match every document, the number of matches, each document's seconds, and the
    wall-clock seconds of it all."""
    found = 0
    each: list[float] = []
    wall = time.perf_counter()
    for doc in docs:
        started = CLOCK()
        matches = index.match(prepare(doc))
        if read_snippets:
            for _, match in matches:
                _ = match.snippet
        each.append(CLOCK() - started)
        found += len(matches)
    return sum(each), found, each, time.perf_counter() - wall


def time_naive(
    queries: Sequence[CompiledQuery], docs: Sequence[Document]
) -> tuple[float, int, list[float], float]:
    """Seconds to prepare every document and evaluate every query on it, the number of matches, each
    document's seconds, and the wall-clock seconds of it all."""
    found = 0
    each: list[float] = []
    wall = time.perf_counter()
    for doc in docs:
        started = CLOCK()
        prepared = prepare(doc)
        found += sum(evaluate(q, prepared) is not None for q in queries)
        each.append(CLOCK() - started)
    return sum(each), found, each, time.perf_counter() - wall


def same_results(index: TopicIndex[int], queries: Sequence[CompiledQuery], docs: Sequence[Document]) -> bool:
    for doc in docs:
        alone, prepared = prepare(doc), prepare(doc)
        naive = [(i, m) for i, q in enumerate(queries) if (m := evaluate(q, alone)) is not None]
        if [(i, _key(m)) for i, m in naive] != [(i, _key(m)) for i, m in index.match(prepared)]:
            return False
    return True


def _key(match: Match) -> tuple[object, ...]:
    return match.score, tuple(match.matched), match.snippet


def mean_candidates(index: TopicIndex[int], docs: Sequence[Document]) -> float:
    return sum(len(index.candidates(prepare(doc))) for doc in docs) / len(docs)


def one_core() -> str:
    """Pin this process to one CPU so the figures are single-core ones."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity here)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer articles and naive samples (< 60 s)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--mix",
        choices=("monitoring", "broad"),
        default="monitoring",
        help="how topics are made (see TopicMaker); 'broad' makes many more topics match each article",
    )
    args = parser.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"skipped: the shared corpus is not at {CORPUS} (it lives beside the repository)")
        print(json.dumps({"skipped": f"no corpus at {CORPUS}"}))
        return 0
    run_started = time.perf_counter()
    pinned = one_core()
    articles = load("articles.jsonl")
    feed_items = load("feed_items.jsonl")
    measured = spread(articles, QUICK_ARTICLES if args.quick else None)
    source = spread(articles, QUICK_SOURCE_ARTICLES) if args.quick else articles
    # bodies only: headlines in Title Case would make every capitalised word look like a name
    vocab = vocabulary([a.text for a in [*source, *feed_items]])
    started = time.perf_counter()
    queries = TopicMaker(vocab, args.seed, args.mix).make(TOPIC_COUNTS[-1])
    compile_seconds = time.perf_counter() - started
    docs = documents(measured)
    chars = sum(len(a.title) + len(a.text) for a in measured)
    print(
        f"{len(measured)} articles ({chars / len(measured):,.0f} characters on average), {pinned}; "
        f"{args.mix} topics from {len(vocab.names):,} names ({len(vocab.narrow_names):,} narrow), "
        f"{len(vocab.phrases):,} phrases and {len(vocab.words):,} words of {len(source)} articles and "
        f"{len(feed_items)} feed items; {len(queries):,} topics compiled in {compile_seconds:.1f} s"
    )
    print("examples: " + " | ".join(q.source for q in queries[:8]))
    prepare_seconds, *_ = time_index(TopicIndex(), docs)
    print(f"prepare() alone: {len(docs) / prepare_seconds:,.0f} articles/s")
    naive_sample = QUICK_NAIVE_SAMPLE if args.quick else NAIVE_SAMPLE
    results: dict[str, object] = {
        "quick": args.quick,
        "mix": args.mix,
        "articles": len(docs),
        "seed": args.seed,
    }
    results["prepare_articles_per_s"] = round(len(docs) / prepare_seconds, 1)
    header = (
        f"{'topics':>8} {'build s':>8} {'articles/s':>11} {'median ms':>10} {'p90 ms':>7} {'candidates':>11} "
        f"{'matches':>8} {'naive/s':>9} {'naive on':>9} {'speedup':>8}"
    )
    print(header)
    print("-" * len(header))
    for count in TOPIC_COUNTS:
        topics = queries[:count]
        index, build_seconds = build(topics)
        seconds, found, each, _ = time_index(index, docs)
        rate = len(docs) / seconds
        each.sort()
        median, p90 = each[len(each) // 2] * 1000, each[int(len(each) * 0.9)] * 1000
        candidates = mean_candidates(index, docs)
        results[f"articles_per_s_{count}"] = round(rate, 1)
        results[f"build_seconds_{count}"] = round(build_seconds, 3)
        results[f"median_ms_{count}"] = round(median, 3)
        results[f"candidates_per_article_{count}"] = round(candidates, 1)
        results[f"matches_per_article_{count}"] = round(found / len(docs), 2)
        naive_cell = speedup_cell = sample_cell = "-"
        sample_size = naive_sample[count]
        if sample_size != 0:
            sample = documents(spread(measured, sample_size))
            naive_seconds, naive_found, naive_each, naive_wall = time_naive(topics, sample)
            index_seconds, index_found, index_each, index_wall = time_index(index, sample)
            if naive_found != index_found or not same_results(index, topics, sample[:8]):
                print(f"MISMATCH at {count} topics: naive found {naive_found}, the index {index_found}")
                results[f"mismatch_{count}"] = True
            naive_rate = len(sample) / naive_seconds
            speedup = naive_seconds / index_seconds
            results[f"naive_articles_per_s_{count}"] = round(naive_rate, 2)
            results[f"speedup_vs_naive_{count}"] = round(speedup, 1)
            results[f"wall_clock_speedup_vs_naive_{count}"] = round(naive_wall / index_wall, 1)
            ratios = sorted(n / i for n, i in zip(naive_each, index_each, strict=True))
            results[f"median_article_speedup_vs_naive_{count}"] = round(ratios[len(ratios) // 2], 1)
            results[f"naive_sample_articles_{count}"] = len(sample)
            naive_cell, speedup_cell, sample_cell = f"{naive_rate:,.1f}", f"{speedup:,.0f}x", f"{len(sample)}"
        print(
            f"{count:>8,} {build_seconds:>8.2f} {rate:>11,.0f} {median:>10.2f} {p90:>7.2f} "
            f"{candidates:>11,.1f} {found / len(docs):>8.2f} "
            f"{naive_cell:>9} {sample_cell:>9} {speedup_cell:>8}"
        )
        if count == TOPIC_COUNTS[-1]:
            with_snippets, *_ = time_index(index, docs, read_snippets=True)
            results["articles_per_s_100000_reading_every_snippet"] = round(len(docs) / with_snippets, 1)
            feed_docs = documents(feed_items)
            feed_seconds, *_ = time_index(index, feed_docs)
            results["feed_items_per_s_100000"] = round(len(feed_docs) / feed_seconds, 1)
            snippet_rate, feed_rate = len(docs) / with_snippets, len(feed_docs) / feed_seconds
            print(
                f"at {count:,} topics: {snippet_rate:,.0f} articles/s when every match's snippet is read "
                f"too; {feed_rate:,.0f} feed items/s ({len(feed_docs)} short texts)"
            )
        del index
    rate_10, rate_100k = results["articles_per_s_10"], results["articles_per_s_100000"]
    assert isinstance(rate_10, float) and isinstance(rate_100k, float)
    slowdown = rate_10 / rate_100k
    speedup_10k = results.get("speedup_vs_naive_10000")
    results["slowdown_100000_vs_10"] = round(slowdown, 2)
    results["target_1000_per_s_at_100000"] = rate_100k >= TARGET_RATE_AT_100000
    results["target_slowdown_at_most_10x"] = slowdown <= TARGET_SLOWDOWN
    results["target_100x_vs_naive_at_10000"] = (
        isinstance(speedup_10k, float) and speedup_10k >= TARGET_SPEEDUP
    )
    results["seconds"] = round(time.perf_counter() - run_started, 1)
    print(
        "articles/s: prepare + match of every article, one core, in CPU time; naive: every topic evaluated "
        "on every article of an evenly spread sample ('naive on'), the index timed on the same sample for "
        "the speedup."
    )
    print(
        f"slowdown from 10 to 100,000 topics: {slowdown:.1f}x; speedup over the naive loop at 10,000 topics "
        f"in wall-clock time: {results.get('wall_clock_speedup_vs_naive_10000')}x, for the median article: "
        f"{results.get('median_article_speedup_vs_naive_10000')}x; took {results['seconds']} s"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
