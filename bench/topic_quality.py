"""Topic-quality benchmark: precision and recall of three "meeting" watch topics on real news texts.

The topics (Xi–Putin, Putin–Modi and Putin–Trump meetings) are written the way a user would write them, with
shared aliases (``@xi``, ``@putin``, ``@meet`` ...), compiled once and evaluated against every item of
``shared/corpus/news_texts/`` (543 full texts, mostly Kremlin pages, and 812 headline + summary feed items),
title and text. An item is a hit when the query matches with at least the topic's ``min_score``.

The expected answers are the hand-made relevance labels in ``bench/labels/*.jsonl`` (see
``bench/labels/README.md`` for the labelling rule); an item not listed there is negative. For each topic the
script prints TP/FP/FN/TN, precision and recall, and every false hit and every miss with its score, the
branches of the query that matched, the matched terms and the reason of its label.

    python bench/topic_quality.py            # every item (a few seconds)
    python bench/topic_quality.py --quick    # the labelled items and a fixed sample of the others

The last line printed is one JSON object with the figures (``xi_putin_precision``, ``xi_putin_recall``,
``target_precision_at_least_0_95`` ...). Without ``../shared/corpus`` the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

from monitor.topics import (  # noqa: E402
    CompiledQuery,
    Document,
    Match,
    PreparedDocument,
    compile_query,
    evaluate,
    prepare,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
NEWS = CORPUS / "news_texts"
LABELS = Path(__file__).resolve().parent / "labels"
TARGET = 0.95
#: --quick keeps every labelled item and about this share of the unlabelled ones (a fixed, hash-based pick)
QUICK_SAMPLE = 1 / 8

#: Aliases shared by the three topics. Names: the spellings of a leader in the corpus (English, Chinese,
#: Russian). ``putin`` also takes "Russian President" and "President of Russia" (the Kremlin pages often say
#: that instead of the name) and the feed's "Russian leader" / "Kremlin leader". Nothing here says "Chinese
#: President": in this corpus that is as often Jiang Zemin or Hu Jintao as Xi.
ALIASES: dict[str, str] = {
    "xi": 'xi OR "xi jinping" OR 习近平 OR "си цзиньпин"',
    "putin": (
        'putin OR путин* OR 普京 OR "russian president" OR "president of russia" '
        'OR "russian leader" OR "kremlin leader"'
    ),
    "modi": 'modi OR "narendra modi" OR मोदी',
    "trump": 'trump OR "donald trump"',
    # words that say two people met, talked or will: for a sentence that also names one of them
    "meet": (
        "talks OR meet OR meets OR met OR meeting OR meetings OR conversation OR consultations OR discuss* "
        'OR "telephone conversation*" OR "phone call*" OR call OR calls OR spoke OR visit* OR teleconference '
        'OR "video link" OR videoconference OR welcome* OR host* OR embrace* OR chat* OR join OR together '
        'OR "red carpet"'
    ),
    # a joint appearance, in a sentence naming both: "Putin and Xi visited / watched / took part in ..."
    "together": (
        'visited OR watched OR toured OR presented OR awarded OR "took part" OR "made statements" '
        'OR ceremony OR walk OR "plenary session"'
    ),
    # forms of address to people in the room: "President Xi Jinping, colleagues, ...", "I would like to thank
    # our colleague, President ... Xi Jinping"
    "address": 'colleague OR colleagues OR "ladies and gentlemen"',
    # answering someone who has just spoken in the same session: "as President Xi Jinping just pointed out"
    "reply": '"just said" OR "just pointed out" OR "just mentioned" OR "just spoke" OR "just now"',
    # contact between two named people, as headlines put it
    "contact": (
        '"meeting with" OR "meet with" OR "met with" OR "meeting between" OR "summit with" OR "talks with" '
        'OR "call with" OR "phone call*" OR "telephone conversation*" OR "conversation with" OR "spoke to" '
        'OR "spoke with" OR "spoke by phone" OR "face-to-face" OR "in person" OR "red carpet"'
    ),
    # titles of items that are not meetings: written messages, decrees, interviews, news conferences and
    # other question-and-answer sessions (the Direct Line, the Valdai club's annual session with Putin)
    "messages": (
        'condolences OR congratulation OR congratulations OR greetings OR "sent message" '
        'OR "executive order" OR interview OR "news conference" OR questions OR "direct line" OR valdai'
    ),
    # the Trump-Putin pair as headlines and summaries write it ("Trump-Putin summit")
    "trump_putin": '"trump putin" OR "putin trump" OR "trump and putin" OR "putin and trump"',
    # words that only date something by an event: "ahead of", "since", "on the eve of" the summit
    "anchor": '"ahead of" OR "on the eve of" OR since',
}


@dataclass(frozen=True, slots=True)
class Topic:
    """A watch topic: alternative branches ORed, then the exclusion, and the minimum score of a hit."""

    key: str  #: prefix of the JSON keys
    name: str
    labels: str  #: file under bench/labels/
    branches: tuple[tuple[str, str], ...]  #: (short name, query), for the report
    exclude: str
    min_score: float

    @property
    def query(self) -> str:
        either = " OR ".join(f"({q})" for _, q in self.branches)
        return f"({either}) AND NOT {self.exclude}"


def _meeting_branches(other: str) -> tuple[tuple[str, str], ...]:
    """Putin meeting a leader as the Kremlin pages report it: state visits, calls, joint events.

    ``he`` is the pronoun sentence right after Putin is named ("The President of Russia arrived ... He has met
    with ... Xi Jinping"); ``address`` and ``reply`` are Putin's speeches and answers at a session where the
    other leader is in the room (addressed as a colleague, or answered after he has "just said" something).
    """
    return (
        ("talk", f"SENTENCE(@putin, @{other}) AND (SENTENCE(@{other}, @meet) OR SENTENCE(@putin, @meet))"),
        ("together", f"SENTENCE(@putin, @{other}, @together)"),
        ("he", f"(@putin NEAR/30 @{other}) AND SENTENCE(he, @{other}, @meet)"),
        ("address", f"@putin AND SENTENCE(@{other}, @address)"),
        ("reply", f"@putin AND SENTENCE(@{other}, @reply)"),
    )


TOPICS: tuple[Topic, ...] = (
    Topic(
        "xi_putin",
        "Xi–Putin meeting",
        "xi_putin_meeting.jsonl",
        _meeting_branches("xi"),
        "title:(@messages)",
        0.15,
    ),
    Topic(
        "putin_modi",
        "Putin–Modi meeting",
        "putin_modi_meeting.jsonl",
        _meeting_branches("modi"),
        "title:(@messages)",
        0.15,
    ),
    Topic(
        "putin_trump",
        "Putin–Trump meeting",
        "putin_trump_meeting.jsonl",
        (
            ("both", "SENTENCE(@trump, @putin, (@contact OR summit OR summitry OR met OR conversation))"),
            ("trump-side", "@putin AND SENTENCE(@trump, (@contact OR summit))"),
            ("putin-side", "@trump AND SENTENCE(@putin, @contact)"),
            ("pair", "@trump_putin NEAR/4 (talks OR summit OR meeting OR call)"),
            # one leader's name as the meeting's modifier: "Putin Seeks Trump Talks", "Before Putin Summit"
            (
                "noun",
                '(@putin AND ("trump talks" OR "trump summit" OR "trump meeting" OR "trump call")) '
                'OR (@trump AND ("putin talks" OR "putin summit" OR "putin meeting" OR "putin call"))',
            ),
            ("call", '@trump AND @putin AND ("phone call*" OR "telephone conversation*")'),
        ),
        # the meeting only as a time anchor: "Ahead of Trump-Putin Meeting, ...", "Since Trump-Putin Summit"
        "(title:(@messages) OR envoy OR witkoff OR @anchor NEAR/3 @trump_putin)",
        0.3,
    ),
)


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    title: str
    text: str
    prepared: PreparedDocument


@dataclass(frozen=True, slots=True)
class Label:
    positive: bool
    reason: str


@dataclass(slots=True)
class Outcome:
    """One item's result for one topic."""

    item: Item
    label: Label
    match: Match | None
    hit: bool


def _compile(query: str) -> CompiledQuery:
    return compile_query(query, aliases=ALIASES)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_items(quick: bool, keep: set[str]) -> list[Item]:
    """Every article and feed item, prepared; with ``quick`` only ``keep`` and a fixed sample of the rest."""
    items: list[Item] = []
    for name in ("articles.jsonl", "feed_items.jsonl"):
        for row in _read_jsonl(NEWS / name):
            if quick and row["id"] not in keep and not _sampled(row["id"]):
                continue
            host = urlsplit(row.get("url") or "").hostname
            doc = Document(title=row["title"] or "", text=row["text"] or "", site=host, lang=row.get("lang"))
            items.append(Item(row["id"], doc.title, doc.text, prepare(doc)))
    return items


def _sampled(item_id: str) -> bool:
    return hashlib.sha1(item_id.encode()).digest()[0] < 256 * QUICK_SAMPLE


def load_labels(topic: Topic) -> dict[str, Label]:
    labels: dict[str, Label] = {}
    for row in _read_jsonl(LABELS / topic.labels):
        if row["id"] in labels:
            raise SystemExit(f"{topic.labels}: {row['id']} is labelled twice")
        labels[row["id"]] = Label(bool(row["label"]), str(row["reason"]))
    return labels


UNLISTED = Label(False, "not listed in the labels: negative")


def run_topic(topic: Topic, items: Sequence[Item], labels: Mapping[str, Label]) -> list[Outcome]:
    compiled = _compile(topic.query)
    outcomes: list[Outcome] = []
    for item in items:
        match = evaluate(compiled, item.prepared)
        hit = match is not None and match.score >= topic.min_score
        outcomes.append(Outcome(item, labels.get(item.id, UNLISTED), match, hit))
    return outcomes


def _branch_report(topic: Topic, item: Item, compiled: Mapping[str, CompiledQuery]) -> str:
    """Which branches of the query match ``item`` (with their scores), and whether the exclusion does."""
    parts: list[str] = []
    for name, _ in topic.branches:
        m = evaluate(compiled[name], item.prepared)
        parts.append(f"{name}={m.score:.2f}" if m else f"{name}=-")
    excluded = evaluate(compiled["exclude"], item.prepared) is not None
    return " ".join(parts) + (" EXCLUDED" if excluded else "")


def _why(outcome: Outcome, topic: Topic, compiled: Mapping[str, CompiledQuery]) -> str:
    m = outcome.match
    got = "no match" if m is None else f"score {m.score:.3f} (min {topic.min_score}); {m.summary()}"
    branches = _branch_report(topic, outcome.item, compiled)
    return f"{got}\n        branches: {branches}\n        label: {outcome.label.reason}"


def report(topic: Topic, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Print the topic's figures, false hits and misses; return its JSON figures."""
    tp = sum(o.hit and o.label.positive for o in outcomes)
    fp = sum(o.hit and not o.label.positive for o in outcomes)
    fn = sum(not o.hit and o.label.positive for o in outcomes)
    tn = len(outcomes) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    print(f"\n=== {topic.name} ({topic.key}) ===")
    print(f"query:     {topic.query}")
    print(f"min score: {topic.min_score}")
    print(f"items {len(outcomes)}: TP {tp}  FP {fp}  FN {fn}  TN {tn}")
    print(f"precision {precision:.3f}  recall {recall:.3f}  (target: both at least {TARGET})")
    compiled = {name: _compile(q) for name, q in topic.branches}
    compiled["exclude"] = _compile(topic.exclude)
    for kind, wanted_hit in (("false hits", True), ("misses", False)):
        bad = [o for o in outcomes if o.hit == wanted_hit and o.label.positive != wanted_hit]
        bad.sort(key=lambda o: (-(o.match.score if o.match else 0.0), o.item.id))
        print(f"-- {kind}: {len(bad)}")
        for o in bad:
            print(f"  {o.item.id}  {o.item.title[:100]}")
            print(f"        {_why(o, topic, compiled)}")
    k = topic.key
    return {
        f"{k}_tp": tp,
        f"{k}_fp": fp,
        f"{k}_fn": fn,
        f"{k}_tn": tn,
        f"{k}_precision": round(precision, 4),
        f"{k}_recall": round(recall, 4),
        f"{k}_min_score": topic.min_score,
        f"{k}_target_precision_at_least_0_95": precision >= TARGET,
        f"{k}_target_recall_at_least_0_95": recall >= TARGET,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="labelled items and a fixed sample of the rest")
    args = parser.parse_args(argv)
    if not NEWS.is_dir():
        print(f"skipped: the corpus is not there ({NEWS})")
        print(json.dumps({"skipped": True, "reason": f"no corpus at {NEWS}"}))
        return 0
    started = time.perf_counter()
    labels = {t.key: load_labels(t) for t in TOPICS}
    labelled = {i for per_topic in labels.values() for i in per_topic}
    items = load_items(args.quick, labelled)
    print(f"{len(items)} items ({'quick: labelled + sample' if args.quick else 'all'}) from {NEWS}")
    print("aliases:")
    for name, text in ALIASES.items():
        print(f"  @{name} = {text}")
    figures: dict[str, Any] = {"quick": args.quick, "items": len(items)}
    for topic in TOPICS:
        figures.update(report(topic, run_topic(topic, items, labels[topic.key])))
    keys = [t.key for t in TOPICS]
    figures["target_precision_at_least_0_95"] = all(figures[f"{k}_precision"] >= TARGET for k in keys)
    figures["target_recall_at_least_0_95"] = all(figures[f"{k}_recall"] >= TARGET for k in keys)
    figures["seconds"] = round(time.perf_counter() - started, 2)
    print()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
