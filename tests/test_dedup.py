"""Copies of one story: fingerprints, near-duplicates on real texts, and stories through the whole stream."""

import email
import email.policy
import json
import random
import re
import zlib
from datetime import UTC, datetime, timedelta
from html import escape

import pytest

from monitor import dedup
from monitor.config import FeedConfig, Settings, SubscriptionConfig
from monitor.demo import DEMO_MIN_SCORE, DEMO_QUERY
from monitor.digest import deliver_digest, prepare_digest, render_text
from monitor.loopback import LoopbackSite

from conftest import corpus_path, run_pipeline

START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
TALKS, TIANJIN, ORDER, OLD_TALKS = (
    "kremlin-en-57696",
    "kremlin-en-57704",
    "kremlin-en-57701",
    "kremlin-en-60381",
)
FILLERS = ("kremlin-en-57694", "kremlin-en-57695", "kremlin-en-7954", "kremlin-en-7955", "kremlin-en-7993")
FARM_CHROME = [
    "Join our Telegram channel for the latest updates",
    "Source link",
    "© 2026 Daily News Hub. All rights reserved.",
]


def texts() -> dict[str, dict[str, str]]:
    path = corpus_path("news_texts", "articles.jsonl")
    wanted = {TALKS, TIANJIN, ORDER, OLD_TALKS, *FILLERS}
    items = (json.loads(line) for line in path.read_text().splitlines())
    return {item["id"]: item for item in items if item["id"] in wanted}


def spin(text: str, share: float, seed: int = 3) -> str:
    """Swap ``share`` of the words for other words, as a content farm's spinner does."""
    rng = random.Random(seed)
    return re.sub(r"[^\W\d_]+", lambda m: "Worldwide" if rng.random() < share else m.group(0), text)


def page(item: dict[str, str], site_name: str, *, chrome=(), published=None, text=None) -> str:
    """An article page as a news site or a content farm serves it: farm chrome inside the article body."""
    paragraphs = [p for p in (text or item["text"]).split("\n") if p.strip()]
    body = "".join(f"<p>{escape(p)}</p>" for p in [*paragraphs, *chrome])
    meta = f'<meta property="article:published_time" content="{published}">' if published else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><title>{escape(item["title"])}</title>'
        f'<meta property="og:site_name" content="{site_name}">{meta}</head><body>'
        f"<nav><a href='/'>Home</a> <a href='/world'>World</a></nav>"
        f"<article><h1>{escape(item['title'])}</h1>{body}</article>"
        f"<footer>Contact us</footer></body></html>"
    )


def rss(items: list[tuple[str, str, datetime]]) -> str:
    entries = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(url)}</link><guid>{escape(url)}</guid>"
        f"<pubDate>{when.strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate></item>"
        for title, url, when in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{entries}</channel></rss>'


def run(storage, now):
    return run_pipeline(storage, lambda: now, all_feeds=True)


# -- fingerprints ---------------------------------------------------------------------------------------


def test_exact_copies_share_a_hash_whatever_the_case_and_spacing():
    text = "Vladimir Putin and Xi Jinping held talks in Beijing on energy, trade and security."
    assert (
        dedup.fingerprint(text).content_hash
        == dedup.fingerprint(text.upper().replace(" ", "  ")).content_hash
    )
    assert dedup.fingerprint(text).band_keys == ()  # too short for near-duplicates: exact copies only
    assert dedup.fingerprint("Live updates").content_hash == ""  # too short to identify anything


def test_near_duplicates_on_real_texts():
    found = texts()
    talks, tianjin = found[TALKS], found[TIANJIN]
    original = f"{talks['title']}\n{talks['text']}"
    with_chrome = "\n".join(["Menu", original, *FARM_CHROME])
    mine = dedup.fingerprint(original)
    stored = dedup.Candidate(article_id=1, story_id=7, signature=mine.signature, site="en.kremlin.ru")
    compared = []

    def story(text, site):
        def load(ids):
            compared.extend(ids)
            return {1: original}

        return dedup.find_story(dedup.fingerprint(text), [stored], site=site, load_texts=load)

    assert story(with_chrome, "farm.example") == 7 and compared == []  # far above the threshold: no text read
    assert story(spin(original, 0.2), "farm.example") == 7 and compared == [1]  # confirmed on the texts
    # the same leaders, the same day, the same site's formulaic words: a different story
    assert story(f"{tianjin['title']}\n{tianjin['text']}", "farm.example") is None
    # a site's own articles must overlap far more: its template paragraphs make them look alike
    assert story(with_chrome, "en.kremlin.ru") == 7
    assert story(spin(original, 0.2), "en.kremlin.ru") is None
    # and the LSH bands make the spun copy a candidate in the first place
    assert set(mine.band_keys) & set(dedup.fingerprint(spin(original, 0.2)).band_keys)


def test_signatures_are_the_ones_datasketch_made_for_the_stored_articles():
    """monitor computes MinHash itself (see dedup.minhash); signatures already stored were made with
    datasketch's MinHash (2.0, scheme affine32, crc32 of each shingle), and must stay comparable."""
    datasketch = pytest.importorskip("datasketch")
    template = datasketch.MinHash(num_perm=dedup.NUM_PERM, seed=dedup._SEED, scheme="affine32")
    lines = corpus_path("news_texts", "articles.jsonl").read_text().splitlines()
    for found in map(json.loads, lines[:300]):
        text = f"{found['title']}\n{found['text']}"
        mine = dedup.fingerprint(text)
        if not mine.signature:
            continue
        theirs = datasketch.MinHash(
            num_perm=dedup.NUM_PERM,
            seed=dedup._SEED,
            hashfunc=zlib.crc32,
            permutations=template.permutations,
            scheme=template.scheme,
        )
        theirs.update_batch([s.encode("utf-8") for s in dedup.shingles(dedup.tokens(text))])
        assert mine.signature == theirs.hashvalues.astype("<u4").tobytes()


# -- stories through the stream -------------------------------------------------------------------------


@pytest.fixture
def farms():
    with LoopbackSite("127.0.0.2") as one, LoopbackSite("127.0.0.3") as two:
        yield one, two


def test_copies_become_one_story_shown_once_with_its_sources(storage, site, farms, smtp):
    found = texts()
    farm, spinner = farms
    sink, port = smtp
    storage.sync_feeds(
        [
            FeedConfig(name="wire", url=site.url("/feed.xml")),
            FeedConfig(name="farm", url=farm.url("/feed.xml")),
            FeedConfig(name="spinner", url=spinner.url("/feed.xml")),
        ],
        START,
    )
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, START)
    subscription = SubscriptionConfig(name="desk", recipients=["desk@example.org"], topics=["xi-putin"])
    storage.sync_subscriptions([subscription], START)
    talks_url = site.put("/talks.html", page(found[TALKS], "Wire"), "text/html")
    site.put("/feed.xml", rss([(found[TALKS]["title"], talks_url, START)]), "application/rss+xml")
    farm_items = []
    for i, key in enumerate((*FILLERS, TALKS)):  # the farm reposts a few stories inside its chrome
        url = farm.put(f"/{i}.html", page(found[key], "Daily News Hub", chrome=FARM_CHROME), "text/html")
        farm_items.append((found[key]["title"], url, START + timedelta(minutes=5)))
    # the farm's feed also links the wire's own page, with its tracking parameters
    farm_items.append((found[TALKS]["title"], f"{talks_url}?utm_source=farm&utm_medium=rss", START))
    farm.put("/feed.xml", rss(farm_items), "application/rss+xml")
    spun_url = spinner.put(
        "/spun.html", page(found[TALKS], "Spin Times", text=spin(found[TALKS]["text"], 0.2)), "text/html"
    )
    reposted = START + timedelta(minutes=30)
    spinner.put("/feed.xml", rss([(found[TALKS]["title"], spun_url, reposted)]), "application/rss+xml")

    now = START + timedelta(hours=1)
    run(storage, now)
    assert storage.article_count() == {"matched": 8}  # the wire page, reached by two URLs, is stored once
    [story] = storage.stories(topic="xi-putin")
    assert {c.source for c in story.copies} == {"Wire", "Daily News Hub", "Spin Times"}
    assert story.copies[0].source == "Wire"  # the original: earliest, with its page text
    farm_story = storage.get_story(story.id).copies[1]
    assert "Telegram" not in storage.article_texts([farm_story.article_id])[farm_story.article_id]

    digest = prepare_digest(storage, subscription, now=now)
    [section] = digest.sections
    [entry] = section.stories
    assert entry.hit.source == "Wire" and [c.source for c in entry.also] == ["Daily News Hub", "Spin Times"]
    assert "Also reported by: Daily News Hub, Spin Times" in render_text(digest)
    assert deliver_digest(storage, subscription, _settings(port), now=now).status == "sent"

    # later: one more copy of the story already sent, and a new story
    later = now + timedelta(hours=5)
    copy_url = spinner.put("/copy2.html", page(found[TALKS], "Spin Times", chrome=["Read us on Telegram"]))
    tianjin_url = site.put("/tianjin.html", page(found[TIANJIN], "Wire"), "text/html")
    site.put(
        "/feed.xml",
        rss([(found[TALKS]["title"], talks_url, START), (found[TIANJIN]["title"], tianjin_url, later)]),
        "application/rss+xml",
    )
    spinner.put(
        "/feed.xml",
        rss([(found[TALKS]["title"], spun_url, reposted), (found[TALKS]["title"] + " (2)", copy_url, later)]),
        "application/rss+xml",
    )
    run(storage, later)
    [section] = prepare_digest(storage, subscription, now=later + timedelta(hours=1)).sections
    result = deliver_digest(storage, subscription, _settings(port), now=later + timedelta(hours=1))
    assert result.status == "sent" and len(sink.messages) == 2
    assert [s.hit.title for s in section.stories] == [found[TIANJIN]["title"]]  # the old story is not resent
    [update] = section.updates
    assert update.sources == ["Spin Times"] and update.title == found[TALKS]["title"]
    message = email.message_from_bytes(sink.messages[1], policy=email.policy.default)
    plain = message.get_body(("plain",)).get_content()
    assert "More sources on stories already sent" in plain and "1 more (Spin Times)" in plain
    assert prepare_digest(storage, subscription, now=later + timedelta(hours=2)).hit_ids == []


def test_a_stale_repost_is_labelled_and_left_out_by_default(storage, site, farms):
    found = texts()
    farm, _ = farms
    storage.sync_feeds([FeedConfig(name="farm", url=farm.url("/feed.xml"))], START)
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, START)
    default = SubscriptionConfig(name="desk", recipients=["desk@example.org"], topics=["xi-putin"])
    everything = SubscriptionConfig(
        name="archive", recipients=["a@example.org"], topics=["xi-putin"], exclude_reposts_older_than=None
    )
    storage.sync_subscriptions([default, everything], START)
    old = farm.put("/old.html", page(found[OLD_TALKS], "Farm", published="2019-04-26T09:30:00+03:00"))
    fresh = farm.put("/fresh.html", page(found[TALKS], "Farm", published=START.isoformat()))
    now = START + timedelta(hours=1)
    farm.put(
        "/feed.xml",
        rss([(found[OLD_TALKS]["title"], old, now), (found[TALKS]["title"], fresh, now)]),
        "application/rss+xml",
    )
    run(storage, now)
    hits = {h.url: h for h in storage.hits()}
    assert hits[old].republished_from == datetime(2019, 4, 26, tzinfo=UTC)  # htmldate gives the day
    assert hits[fresh].republished_from is None

    digest = prepare_digest(storage, default, now=now)
    assert [s.hit.url for s in digest.sections[0].stories] == [fresh]
    assert digest.skipped_hit_ids == [hits[old].id]  # carried, so never owed again
    shown = prepare_digest(storage, everything, now=now)
    assert len(shown.sections[0].stories) == 2
    assert "republished, originally 26 Apr 2019" in render_text(shown)


def _settings(port: int) -> Settings:
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_sender="m@example.org",
        smtp_security="none",
        smtp_timeout=5,
    )
