"""How well, and how cheaply, monitor tells copies of one story from different stories.

The labelled set is built from real texts in ../shared/corpus: full article bodies from
``articles/aeb/ground-truth.json`` (181 pages of many outlets) and ``news_texts/articles.jsonl`` (Kremlin
texts, where many different articles cover the same event on the same day, in the same formulaic words).
Each original is republished by generated "content farm" sites: once word for word inside the farm's own
chrome (menus, Telegram and newsletter calls to action, "Source link", copyright and caption lines, and a
"Read more" line that differs per article), and once word-spun at the spin level under test, also inside
farm chrome. The spinner swaps a chosen share of the words: for a synonym where its small table has one
("Chinese" → "Chinese language", "court" → "courtroom"), else for a word drawn from the corpus's vocabulary,
which is harsher than a real spinner (it never keeps the function words a spinner keeps).

Every document goes through monitor's own last stages (``Pipeline.settle``: site chrome learned and
stripped, exact hash, MinHash LSH candidates from the database, full-text confirmation, story stored) on a
fresh SQLite database, originals first and copies in random order. Pairs are scored against the truth
(same original → same story): precision and recall per spin level.

The cost of the duplicate check is measured apart at 10,000 and 100,000 stored articles (the stored
fingerprints come from distinct texts made by mixing corpus sentences): the time per new article to
fingerprint it and find its story (exact hash, band lookup in the database, candidate comparison), after 30
untimed checks warm the caches as a running daemon's are, next to the floor: datasketch's in-memory
MinHashLSH answering the same queries over the same signatures.

Usage: .venv/bin/python bench/dedup_quality.py [--quick] [--seed N] [--database-url URL]

The last line printed is one JSON object with the figures and whether each target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import itertools
import json
import random
import re
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from datasketch import MinHash, MinHashLSH

from monitor import dedup
from monitor.config import FeedConfig, NetworkConfig
from monitor.fetch import Fetcher
from monitor.match import TopicMatcher
from monitor.pipeline import Pipeline
from monitor.storage import FeedUpdated, NewArticle, Storage, make_engine, upgrade
from monitor.storage.models import Article, ArticleBand, ArticleFingerprint, Feed, Story
from monitor.types import ExtractedArticle, FeedEntry

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SPIN_LEVELS = (0.1, 0.2, 0.3)
TARGET_PRECISION = 0.99
TARGET_RECALL = 0.95
#: spin levels the precision and recall targets apply to
TARGET_SPIN_UP_TO = 0.2
TARGET_MS_AT_100000 = 2.0
STORED_SIZES = (10_000, 100_000)
QUICK_STORED_SIZES = (10_000,)
QUERIES = 300
MIN_WORDS = 80
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

FARMS = [
    {
        "host": "dailynewshub.example",
        "head": ["Home | World | Politics | Business | Tech | Sports", "Breaking News"],
        "foot": [
            "Join our Telegram channel for the latest updates",
            "Source link",
            "© 2025 Daily News Hub. All rights reserved.",
        ],
    },
    {
        "host": "worldreport24.example",
        "head": ["Menu", "World Report 24 — News from around the globe"],
        "foot": [
            "Subscribe to our newsletter and never miss a story.",
            "Leave a Comment",
            "Copyright © World Report 24",
            "Follow us on Facebook, Twitter and Instagram",
        ],
    },
    {
        "host": "thenewsglobe.example",
        "head": ["Skip to content", "Latest | Trending | Opinion"],
        "foot": [
            "Photo: AFP / Getty Images",
            "Disclaimer: This story is auto-aggregated by a computer program and has not been created or "
            "edited by The News Globe.",
            "Source link",
        ],
    },
    {
        "host": "politicsnow.example",
        "head": ["Politics Now", "Sign in | Register"],
        "foot": [
            "Get the latest news delivered to your inbox — sign up for our daily briefing.",
            "Share this: Facebook | X | WhatsApp | Telegram",
            "All content © Politics Now Media Ltd.",
        ],
    },
    {
        "host": "asiawire.example",
        "head": ["AsiaWire", "Top Stories"],
        "foot": [
            "Join our WhatsApp group for instant updates",
            "Originally published at the source.",
            "© AsiaWire 2025",
        ],
    },
    {
        "host": "newsnow247.example",
        "head": ["News Now 24/7", "Home › World"],
        "foot": [
            "Don't miss out! Join our Telegram channel.",
            "Source link",
            "Leave a Reply Cancel reply",
            "Your email address will not be published.",
        ],
    },
]

SYNONYMS = {
    "chinese": "Chinese language",
    "foreign": "international",
    "ministry": "department",
    "court": "courtroom",
    "international": "worldwide",
    "legal": "lawful",
    "president": "head of state",
    "meeting": "assembly",
    "talks": "negotiations",
    "said": "stated",
    "says": "states",
    "country": "nation",
    "countries": "nations",
    "government": "administration",
    "important": "crucial",
    "people": "individuals",
    "new": "novel",
    "big": "large",
    "large": "huge",
    "help": "assist",
    "use": "utilise",
    "make": "create",
    "show": "display",
    "start": "begin",
    "end": "finish",
    "week": "7 days",
    "year": "12 months",
    "economic": "financial",
    "economy": "financial system",
    "cooperation": "collaboration",
    "development": "growth",
    "issues": "problems",
    "issue": "problem",
    "agreement": "settlement",
    "leaders": "heads",
    "leader": "chief",
    "united": "joined",
    "states": "states",
    "security": "safety",
    "military": "navy",
    "support": "assist",
    "work": "function",
    "good": "great",
    "first": "initial",
    "many": "numerous",
    "also": "additionally",
    "about": "roughly",
    "because": "since",
    "however": "nonetheless",
    "according": "in accordance",
    "officials": "authorities",
    "announced": "introduced",
    "increase": "enhance",
}


@dataclass(frozen=True, slots=True)
class Doc:
    key: str
    #: the original this document is a copy of (its own key for an original)
    truth: str
    host: str
    title: str
    text: str


def load_originals(limit: int | None) -> list[Doc]:
    docs = []
    truth = json.loads((CORPUS / "articles" / "aeb" / "ground-truth.json").read_text())
    for sha, page in sorted(truth.items()):
        body = page["articleBody"].strip()
        if len(body.split()) >= MIN_WORDS:
            title = _html_title(CORPUS / "articles" / "aeb" / "html" / f"{sha}.html.gz")
            docs.append(Doc(f"aeb-{sha[:12]}", f"aeb-{sha[:12]}", _host(page["url"]), title, body))
    for line in (CORPUS / "news_texts" / "articles.jsonl").read_text().splitlines():
        item = json.loads(line)
        if len(item["text"].split()) >= MIN_WORDS and item["id"].startswith("kremlin"):
            docs.append(Doc(item["id"], item["id"], "en.kremlin.ru", item["title"], item["text"]))
    # the same-day groups of one site are the hard negatives: keep all of them within the limit
    if limit is not None and len(docs) > limit:
        rng = random.Random(7)
        by_day = collections.defaultdict(list)
        for doc in docs:
            by_day[doc.key if doc.key.startswith("aeb") else _kremlin_day(doc)].append(doc)
        groups = sorted(by_day.values(), key=lambda g: (-len(g), g[0].key))
        docs = [d for g in groups[: limit // 4] for d in g]
        rest = [d for g in groups[limit // 4 :] for d in g]
        docs += rng.sample(rest, max(0, limit - len(docs)))
    return docs


_KREMLIN_DAYS: dict[str, str] = {}


def _kremlin_day(doc: Doc) -> str:
    if not _KREMLIN_DAYS:
        for line in (CORPUS / "news_texts" / "articles.jsonl").read_text().splitlines():
            item = json.loads(line)
            _KREMLIN_DAYS[item["id"]] = item["date"][:10]
    return _KREMLIN_DAYS.get(doc.key, doc.key)


def same_day_pairs(docs: list[Doc]) -> int:
    days = collections.Counter(_kremlin_day(d) for d in docs if d.key.startswith("kremlin"))
    return sum(n * (n - 1) // 2 for n in days.values())


def _html_title(path: Path) -> str:
    with gzip.open(path) as page:
        found = re.search(rb"<title[^>]*>(.*?)</title>", page.read(), re.S | re.I)
    return " ".join(found.group(1).decode("utf-8", "replace").split()) if found else ""


def _host(url: str) -> str:
    return re.sub(r"^https?://(www\.)?", "", url).split("/")[0]


def with_chrome(doc: Doc, farm: Mapping[str, object], rng: random.Random, titles: list[str], key: str) -> Doc:
    head, foot = list(farm["head"]), list(farm["foot"])  # type: ignore[call-overload]
    paragraphs = doc.text.split("\n")
    middle = len(paragraphs) // 2
    read_more = f"Read more: {rng.choice(titles)}"
    body = [*head, doc.title, *paragraphs[:middle], read_more, *paragraphs[middle:], *foot]
    return Doc(key, doc.truth, str(farm["host"]), doc.title, "\n".join(body))


def spin(text: str, share: float, rng: random.Random, vocabulary: list[str]) -> str:
    """Swap ``share`` of the words: for a synonym where the table has one, else for a random word."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        if rng.random() >= share:
            return word
        synonym = SYNONYMS.get(word.lower())
        if synonym and synonym.lower() != word.lower():
            return synonym
        return rng.choice(vocabulary)

    return re.sub(r"[^\W\d_]+", swap, text)


def build_set(originals: list[Doc], share: float, seed: int) -> list[Doc]:
    rng = random.Random(seed)
    titles = [d.title for d in originals]
    vocabulary = sorted({w for d in originals[:200] for w in re.findall(r"[a-z]{3,}", d.text)})
    copies = []
    for doc in originals:
        farm_a, farm_b = rng.sample(FARMS, 2)
        copies.append(with_chrome(doc, farm_a, rng, titles, f"{doc.key}/copy"))
        spun = Doc(doc.key, doc.truth, doc.host, spin(doc.title, share, rng, vocabulary), "")
        spun = Doc(doc.key, doc.truth, doc.host, spun.title, spin(doc.text, share, rng, vocabulary))
        copies.append(with_chrome(spun, farm_b, rng, titles, f"{doc.key}/spun"))
    rng.shuffle(copies)
    return originals + copies


def run_stream(docs: list[Doc], database_url: str) -> dict[str, int]:
    """Every document through Pipeline.settle on a fresh database; returns each document's story id."""
    engine = make_engine(database_url)
    upgrade(engine)
    storage = Storage(engine)
    storage.sync_feeds([FeedConfig(name="bench", url="https://bench.example/feed.xml")], NOW)
    [feed] = storage.feeds_due(NOW)
    entries = [
        NewArticle(
            FeedEntry(key=d.key, url=_url(d), title=d.title, summary="", author=None, published=NOW),
            _url(d),
            _url(d),
        )
        for d in docs
    ]
    storage.record_polls(
        [
            FeedUpdated(
                feed.id,
                NOW,
                status=200,
                title=None,
                etag=None,
                last_modified=None,
                final_url=feed.url,
                articles=entries,
                next_poll_at=NOW,
            )
        ]
    )
    items = {i.url: i for i in storage.articles_to_process(NOW, limit=len(docs) + 1)}
    pipeline = Pipeline(storage, Fetcher(NetworkConfig()))
    matcher = TopicMatcher([], {})
    stories = {}
    for doc in docs:
        extracted = ExtractedArticle(doc.title, doc.text, None, None, "en", None, "page")
        with storage.article_batch() as batch:
            story, _ = pipeline.settle(
                items[_url(doc)], extracted, matcher, fetch_error=None, now=NOW, batch=batch
            )
        stories[doc.key] = story
    engine.dispose()
    return stories


def _url(doc: Doc) -> str:
    return f"https://{doc.host}/{doc.key.replace('/', '-')}"


def pair_scores(docs: list[Doc], stories: dict[str, int]) -> dict[str, float]:
    truth_pairs = predicted_pairs = both = 0
    for a, b in itertools.combinations(docs, 2):
        same_truth, same_story = a.truth == b.truth, stories[a.key] == stories[b.key]
        truth_pairs += same_truth
        predicted_pairs += same_story
        both += same_truth and same_story
    return {
        "precision": both / predicted_pairs if predicted_pairs else 1.0,
        "recall": both / truth_pairs if truth_pairs else 1.0,
        "false_pairs": predicted_pairs - both,
        "missed_pairs": truth_pairs - both,
    }


def mixed_texts(originals: list[Doc], count: int, seed: int) -> list[str]:
    """Distinct article-like texts made by mixing corpus sentences (for filling the database)."""
    rng = random.Random(seed)
    sentences = [s for d in originals for s in re.split(r"(?<=[.!?])\s+", d.text) if len(s.split()) >= 6]
    return [" ".join(rng.sample(sentences, 25)) for _ in range(count)]


def fill_database(database_url: str, texts: list[str]) -> tuple[Storage, list[dedup.Fingerprint]]:
    """Store ``texts`` as processed articles with their fingerprints, in bulk (Core inserts)."""
    engine = make_engine(database_url)
    upgrade(engine)
    storage = Storage(engine)
    storage.sync_feeds([FeedConfig(name="fill", url="https://fill.example/feed.xml")], NOW)
    prints = [dedup.fingerprint(t) for t in texts]
    with engine.begin() as conn:
        feed_id = conn.execute(sa.select(Feed.id)).scalar_one()  # type: ignore[call-overload]
        for start in range(0, len(texts), 5_000):
            chunk = range(start, min(start + 5_000, len(texts)))
            conn.execute(
                sa.insert(Story),
                [
                    {"id": i + 1, "representative_id": i + 1, "created_at": NOW, "updated_at": NOW}
                    for i in chunk
                ],
            )
            conn.execute(
                sa.insert(Article),
                [
                    {
                        "id": i + 1,
                        "url_hash": f"{i:064d}",
                        "url": f"https://fill.example/{i}",
                        "page_url": f"https://fill.example/{i}",
                        "site": "fill.example",
                        "feed_id": feed_id,
                        "state": "matched",
                        "attempts": 1,
                        "title": "",
                        "feed_summary": "",
                        "text": texts[i],
                        "text_source": "page",
                        "content_hash": prints[i].content_hash,
                        "story_id": i + 1,
                        "discovered_at": NOW,
                        "next_attempt_at": NOW,
                    }
                    for i in chunk
                ],
            )
            conn.execute(
                sa.insert(ArticleFingerprint),
                [
                    {
                        "article_id": i + 1,
                        "story_id": i + 1,
                        "site": "fill.example",
                        "signature": prints[i].signature,
                    }
                    for i in chunk
                ],
            )
            conn.execute(
                sa.insert(ArticleBand),
                [{"band_key": k, "article_id": i + 1} for i in chunk for k in prints[i].band_keys],
            )
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('stories', 'id'), 10000000)")
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('articles', 'id'), 10000000)")
    with engine.begin() as conn:  # planner statistics, as autovacuum would gather after a bulk load
        conn.exec_driver_sql("ANALYZE")
    return storage, prints


def time_checks(storage: Storage, queries: list[str]) -> list[float]:
    """Milliseconds per new article to fingerprint it and find its story, as the pipeline does."""
    timings = []
    for text in queries:
        started = time.perf_counter()
        fingerprint = dedup.fingerprint(text)
        with storage.article_batch() as batch:
            Pipeline.story_of(batch, 0, "https://new.example/a", fingerprint)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def time_floor(prints: list[dedup.Fingerprint], queries: list[str]) -> list[float]:
    """The same queries against datasketch's in-memory MinHashLSH holding the same signatures."""
    lsh = MinHashLSH(num_perm=dedup.NUM_PERM, params=(dedup.BANDS, dedup.ROWS))
    template = MinHash(num_perm=dedup.NUM_PERM, seed=dedup._SEED)
    for i, fingerprint in enumerate(prints):
        if fingerprint.signature:
            values = np.frombuffer(fingerprint.signature, dtype="<u4").astype("uint64")
            lsh.insert(i, MinHash(hashvalues=values, seed=dedup._SEED, scheme=template.scheme))
    timings = []
    for text in queries:
        started = time.perf_counter()
        minhash = MinHash(num_perm=dedup.NUM_PERM, seed=dedup._SEED, hashfunc=zlib.crc32)
        minhash.update_batch([s.encode() for s in dedup.shingles(dedup.tokens(text))])
        lsh.query(minhash)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (under 60 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="run on this (empty) database instead of SQLite files")
    args = parser.parse_args()
    if not CORPUS.exists():
        sys.exit(f"needs the shared corpus at {CORPUS}")

    originals = load_originals(120 if args.quick else None)
    print(
        f"{len(originals)} originals ({same_day_pairs(originals)} pairs of different same-day Kremlin "
        f"texts), each with a chrome copy and a spun copy on {len(FARMS)} farm sites"
    )
    workdir = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    results: dict[str, object] = {}
    print(
        f"\n{'spin':>5} {'documents':>10} {'precision':>10} {'recall':>8} {'false pairs':>12} {'missed':>8}"
    )
    for share in SPIN_LEVELS:
        docs = build_set(originals, share, args.seed)
        url = args.database_url or f"sqlite:///{workdir / f'spin{share}.db'}"
        if args.database_url:
            _reset(url)
        scores = pair_scores(docs, run_stream(docs, url))
        results[f"spin_{int(share * 100)}"] = scores
        print(
            f"{share:>5.0%} {len(docs):>10} {scores['precision']:>10.3f} {scores['recall']:>8.3f} "
            f"{scores['false_pairs']:>12} {scores['missed_pairs']:>8}"
        )

    print(f"\n{'stored':>8} {'ms/article mean':>16} {'p95':>6} {'floor ms':>9} {'ratio':>6}")
    queries_from = load_originals(None)
    rng = random.Random(args.seed)
    for size in QUICK_STORED_SIZES if args.quick else STORED_SIZES:
        url = args.database_url or f"sqlite:///{workdir / f'stored{size}.db'}"
        if args.database_url:
            _reset(url)
        texts = mixed_texts(queries_from, size, args.seed)
        storage, prints = fill_database(url, texts)
        # half are copies of stored texts (spun 10%), half new texts
        vocabulary = sorted({w for t in texts[:50] for w in re.findall(r"[a-z]{3,}", t)})
        queries = [spin(t, 0.1, rng, vocabulary) for t in rng.sample(texts, QUERIES // 2)]
        queries += mixed_texts(queries_from, QUERIES // 2, args.seed + 1)
        time_checks(storage, mixed_texts(queries_from, 30, args.seed + 2))  # warm caches, as in a daemon
        timings = time_checks(storage, queries)
        floor = time_floor(prints, queries)
        mean, floor_mean = statistics.mean(timings), statistics.mean(floor)
        p95 = sorted(timings)[int(0.95 * len(timings))]
        results[f"ms_per_article_at_{size}"] = round(mean, 3)
        results[f"floor_ms_at_{size}"] = round(floor_mean, 3)
        print(f"{size:>8} {mean:>16.2f} {p95:>6.2f} {floor_mean:>9.2f} {mean / floor_mean:>5.1f}×")
        storage.engine.dispose()

    targets = {
        "precision_at_least_0.99_up_to_20pct_spin": all(
            results[f"spin_{p}"]["precision"] >= TARGET_PRECISION  # type: ignore[index]
            for p in (10, 20)
        ),
        "recall_at_least_0.95_up_to_20pct_spin": all(
            results[f"spin_{p}"]["recall"] >= TARGET_RECALL  # type: ignore[index]
            for p in (10, 20)
        ),
    }
    if "ms_per_article_at_100000" in results:
        at_100000 = float(results["ms_per_article_at_100000"])  # type: ignore[arg-type]
        targets["under_2ms_per_article_at_100000"] = at_100000 < TARGET_MS_AT_100000
    print(json.dumps({"quick": args.quick, **results, "targets_met": targets}))


def _reset(url: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
