"""The stream end to end on real feeds and pages from ../shared/corpus, served on loopback."""

import asyncio
import itertools
import os
import re
import signal
from datetime import UTC, datetime, timedelta

import pytest

from monitor import pipeline as pipeline_module
from monitor.config import FeedConfig
from monitor.demo import DEMO_MIN_SCORE, DEMO_QUERY, PLACEHOLDER, SITE
from monitor.errors import FeedParseError, FetchError, HTTPStatusError
from monitor.extract import extraction_pool
from monitor.fetch import Fetcher
from monitor.match import TopicMatcher
from monitor.pipeline import GroupCommit, Pipeline, feed_backoff, polling_interval
from monitor.storage import Storage, make_engine, upgrade
from monitor.storage.storage import MAX_ARTICLE_ATTEMPTS
from monitor.types import FeedForPoll

from conftest import LOOPBACK, corpus_path, serve_kremlin
from conftest import run_pipeline as run


class Clock:
    """An injected clock that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_wsj_replay_stores_exactly_the_new_items_and_honours_304(storage, site):
    polls = sorted(corpus_path("feeds", "timeseries", "wsj_world").glob("*.xml"))
    assert len(polls) == 56
    clock = Clock()
    storage.sync_feeds([FeedConfig(name="wsj", url=site.url("/wsj.xml"))], clock.now)
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, clock.now)
    seen: set[str] = set()
    for number, path in enumerate(polls):
        # the archive.is links lead nowhere here: point them at loopback paths that answer 404
        body = path.read_bytes().replace(
            b"https://archive.is/newest/https://www.wsj.com/", site.base_url.encode() + b"/gone/"
        )
        site.put("/wsj.xml", body, "application/rss+xml")
        guids = set(re.findall(r"<guid[^>]*>([^<]+)</guid>", body.decode()))
        clock.now += timedelta(hours=4)
        report = run(storage, clock, feed="wsj")
        [outcome] = report.polls
        if number and body == polls[number - 1].read_bytes().replace(
            b"https://archive.is/newest/https://www.wsj.com/", site.base_url.encode() + b"/gone/"
        ):
            assert outcome.status == "not_modified"
        else:
            assert outcome.status == "updated", outcome.error
        assert outcome.new_entries == len(guids - seen), path.name
        assert report.articles == len(guids - seen)
        seen |= guids
        clock.now += timedelta(minutes=30)
        again = run(storage, clock, feed="wsj")
        assert [p.status for p in again.polls] == ["not_modified"] and again.articles == 0
        assert site.requests[-1][1].get("if-none-match")  # the 304 came from a conditional GET

    [status] = storage.feed_statuses()
    assert status.articles == len(seen) > 100 and status.consecutive_errors == 0
    assert storage.article_count() == {"matched": len(seen)}
    hits = storage.hits()
    assert all(h.text_source == "feed" for h in hits)  # every page was a 404: matched on the feed's text
    titles = {h.title for h in hits}
    assert "Kim and Putin to Join Xi in Show of Unity at Beijing Military Parade" in titles
    assert all(re.search(r"\bXi\b", h.title + h.snippet) and "Putin" in h.title + h.snippet for h in hits)


def test_kremlin_pages_are_extracted_and_matched(storage, site):
    truth = serve_kremlin(site)
    clock = Clock()
    storage.sync_feeds(
        [
            FeedConfig(name="kremlin", url=site.url("/kremlin.atom")),
            FeedConfig(name="selection", url=site.url("/selection.rss")),
        ],
        clock.now,
    )
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, clock.now)
    report = run(storage, clock, all_feeds=True)
    assert [p.status for p in report.polls] == ["updated", "updated"]
    assert report.articles == 42 and report.from_feed == 0

    hits = {h.url.rsplit("/", 1)[1]: h for h in storage.hits()}
    about_them = {pid for pid, t in truth.items() if t["roles"] == ["xi_putin"]}
    assert set(hits) == about_them, {pid: truth[pid]["title"] for pid in set(hits) ^ about_them}
    for pid, hit in hits.items():
        assert hit.title == truth[pid]["title"]
        assert hit.source == "President of Russia"
        assert "«" in hit.snippet and hit.matched
    # the extracted bodies are the pages' text, not their navigation
    talks = hits["17725"]
    assert talks.published is not None and talks.published.year == 2013


def test_a_crash_before_processing_is_resumed(storage, site):
    """Entries recorded by a poll whose process died are processed by the next run, once."""
    serve_kremlin(site)
    clock = Clock()
    storage.sync_feeds([FeedConfig(name="kremlin", url=site.url("/kremlin.atom"))], clock.now)

    async def poll_only():
        async with Fetcher(LOOPBACK) as fetcher:
            pipeline = Pipeline(storage, fetcher, clock=clock)
            [feed] = storage.feeds_due(clock.now)
            return await pipeline.poll_feed(feed)

    assert asyncio.run(poll_only()).new_entries == 20  # ... and the process "dies" here
    assert storage.article_count() == {"discovered": 20}
    report = run(storage, clock)  # not due yet: no poll, but the waiting articles are processed
    assert report.polls == [] and report.articles == 20
    assert storage.article_count() == {"matched": 20}
    assert run(storage, clock).articles == 0


def _served_corpus_feeds(site):
    """Every file in corpus/feeds/, served with the HTTP headers its test comment asks for."""
    root = corpus_path("feeds")
    feeds = []
    for number, path in enumerate(sorted(p for p in root.rglob("*") if p.is_file())):
        body = path.read_bytes()
        header = re.search(rb"Header:\s*Content-type:\s*([^\r\n]+)", body[:2000], re.IGNORECASE)
        content_type = header.group(1).decode().strip() if header else "application/xml"
        url = site.put(f"/feeds/{number}", body, content_type)
        feeds.append((FeedConfig(name=f"f{number}", url=url), path.relative_to(root)))
    return feeds


def test_every_corpus_feed_goes_through_the_poll_stage(storage, site):
    feeds = _served_corpus_feeds(site)
    clock = Clock()
    storage.sync_feeds([f for f, _ in feeds], clock.now)
    names = {f.name: path for f, path in feeds}

    async def poll_all():
        async with Fetcher(LOOPBACK) as fetcher:
            pipeline = Pipeline(storage, fetcher, clock=clock)
            return await asyncio.gather(*(pipeline.poll_feed(f) for f in storage.feeds_due(clock.now)))

    outcomes = asyncio.run(poll_all())
    assert len(outcomes) == len(feeds) > 300
    failed = {names[o.feed]: o.error for o in outcomes if o.status == "error"}
    for path, error in failed.items():
        assert error and "not a usable feed" in error, (path, error)
    assert sorted(str(p) for p in failed) == [  # the five documents that are broken XML with no entries
        "feedparser/encoding/bozo_invalid-bytes-with-bom.xml",
        "feedparser/illformed/aaa_illformed.xml",
        "feedparser/illformed/rss_empty_document.xml",
        "feedparser/illformed/rss_incomplete_cdata.xml",
        "feedparser/illformed/undeclared_namespace.xml",
    ]
    assert all("malformed XML at line" in error for error in failed.values())
    statuses = {s.name: s for s in storage.feed_statuses()}
    for outcome in outcomes:
        status = statuses[outcome.feed]
        assert (status.consecutive_errors == 1) == (outcome.status == "error")
        assert status.last_error == outcome.error
    news = [o for o in outcomes if str(names[o.feed]).startswith("news/")]
    assert all(o.status == "updated" and o.new_entries > 0 for o in news), news


TRUNCATED = (
    b"<rss version='2.0'><channel><title>T</title><item><title>Whole</title><link>http://x/a</link></item>"
)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "the response body is empty"),
        (b"\x00\x01\x02binary\xff\xfe" * 100, "not a usable feed"),
        (b"<html><body>Hi</body></html>", "an HTML page, not an RSS/Atom feed"),
        (b"<rss><channel><item><title>unclosed", "malformed XML at line"),
        (TRUNCATED + b"<item><title>cut", None),  # broken, but one whole entry: used, with a warning
    ],
)
def test_an_unusable_feed_fails_alone(storage, site, body, problem):
    clock = Clock()
    bad = site.put("/bad.xml", body, "application/xml")
    good = site.put("/good.xml", corpus_path("feeds", "news", "rss-parser", "guardian.rss").read_bytes())
    storage.sync_feeds([FeedConfig(name="bad", url=bad), FeedConfig(name="good", url=good)], clock.now)

    async def poll_all():
        async with Fetcher(LOOPBACK) as fetcher:
            pipeline = Pipeline(storage, fetcher, clock=clock)
            return {
                o.feed: o
                for o in await asyncio.gather(*(pipeline.poll_feed(f) for f in storage.feeds_due(clock.now)))
            }

    outcomes = asyncio.run(poll_all())
    assert outcomes["good"].status == "updated" and outcomes["good"].new_entries == 55
    [feed] = [s for s in storage.feed_statuses() if s.name == "bad"]
    if problem is None:
        assert outcomes["bad"].status == "updated" and outcomes["bad"].new_entries == 1
        assert "no element found" in outcomes["bad"].warning and feed.consecutive_errors == 0
    else:
        assert outcomes["bad"].status == "error" and bad in outcomes["bad"].error
        assert problem in outcomes["bad"].error and feed.last_error == outcomes["bad"].error
        assert feed.next_poll_at > clock.now and feed.consecutive_errors == 1


def test_a_topic_added_while_the_stream_runs_is_matched_and_the_topics_compile_only_when_changed(
    storage, site, monkeypatch
):
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    clock = Clock()
    storage.sync_feeds(
        [
            FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml")),
            FeedConfig(name="harbourpost", url=site.url("/harbourpost/atom.xml")),
        ],
        clock.now,
    )
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, clock.now)
    monkeypatch.setattr(pipeline_module, "TOPICS_CHECK_SECONDS", 0.0)  # look at every batch
    compiled = 0
    original = TopicMatcher.__init__

    def counted(self, *args, **kwargs):
        nonlocal compiled
        compiled += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(TopicMatcher, "__init__", counted)

    async def two_polls_in_one_stream() -> int:
        async with Fetcher(LOOPBACK) as fetcher:
            pipeline = Pipeline(storage, fetcher, clock=clock)
            report = pipeline_module.RunReport()
            [eastwire, harbourpost] = sorted(storage.all_feeds_for_poll(), key=lambda f: f.name)
            async with pipeline.streaming(report) as stream:
                await pipeline.poll_feeds([eastwire], stream=stream)
                while report.articles < 5:
                    await asyncio.sleep(0.05)
                storage.add_topic("lula", "lula", 0.1, clock.now)  # as `monitor topic add` would
                await pipeline.poll_feeds([harbourpost], stream=stream)
                stream.close()
            return report.articles

    assert asyncio.run(two_polls_in_one_stream()) == 10
    assert [h.title for h in storage.hits(topic="lula")] == [
        "Xi and Lula sign soybean, rail and satellite agreements in Brasília"
    ]
    assert compiled == 2  # once at the start, once after the topic was added


def test_an_article_that_breaks_the_matcher_is_retried_and_the_rest_go_on(storage, site, monkeypatch):
    """A bug cannot be made real on purpose, so this one is injected: the only stand-in in this file."""
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    clock = Clock()
    storage.sync_feeds([FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml"))], clock.now)
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, clock.now)
    original = TopicMatcher.match

    def breaks_on_wildfires(self, article, **kwargs):
        if "wildfire" in article.title.lower():
            raise RuntimeError("matcher bug")
        return original(self, article, **kwargs)

    monkeypatch.setattr(TopicMatcher, "match", breaks_on_wildfires)
    report = run(storage, clock, all_feeds=True)
    assert report.articles == 5 and len(storage.hits()) == 1
    assert storage.article_count() == {"matched": 4, "failed": 1}
    [failed] = storage.unfinished_articles()
    assert failed.attempts == 1 and failed.error == "RuntimeError: matcher bug"
    assert failed.next_attempt_at == clock.now + timedelta(minutes=5)
    pages_fetched = len(site.requests)
    assert run(storage, clock).articles == 0  # not before its retry time
    clock.now += timedelta(minutes=6)
    assert run(storage, clock).articles == 1  # retried from its stored extraction...
    assert len(site.requests) == pages_fetched  # ...without fetching the page again
    [failed] = storage.unfinished_articles()
    assert failed.attempts == 2 and failed.next_attempt_at == clock.now + timedelta(minutes=10)
    monkeypatch.undo()  # the bug is fixed
    clock.now += timedelta(minutes=11)
    assert run(storage, clock).articles == 1
    assert storage.article_count() == {"matched": 5} and storage.unfinished_articles() == []


def test_an_article_that_keeps_failing_is_given_up_visibly(storage, site, monkeypatch):
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    clock = Clock()
    storage.sync_feeds([FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml"))], clock.now)
    monkeypatch.setattr(Pipeline, "settle", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
    for _ in range(MAX_ARTICLE_ATTEMPTS):
        assert run(storage, clock, all_feeds=True).articles == 5
        clock.now += timedelta(days=1)
    assert run(storage, clock).articles == 0
    given_up = storage.unfinished_articles()
    assert [(a.state, a.attempts, a.next_attempt_at, a.error) for a in given_up] == [
        ("failed", MAX_ARTICLE_ATTEMPTS, None, "RuntimeError: bug")
    ] * 5


def test_a_feed_that_is_gone_is_disabled_with_its_reason_and_the_others_go_on(storage, site):
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    gone = site.put("/gone.xml", b"this feed has been removed", status=410)
    clock = Clock()
    storage.sync_feeds(
        [
            FeedConfig(name="gone", url=gone),
            FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml")),
        ],
        clock.now,
    )
    report = run(storage, clock, all_feeds=True)
    outcomes = {p.feed: p for p in report.polls}
    assert outcomes["eastwire"].status == "updated" and outcomes["eastwire"].new_entries > 0
    assert outcomes["gone"].status == "error" and "410" in outcomes["gone"].error
    assert "feed disabled" in outcomes["gone"].error

    statuses = {f.name: f for f in storage.feed_statuses()}
    assert statuses["gone"].disabled_reason.startswith("410 Gone")
    asked = sum(path == "/gone.xml" for path, _ in site.requests)
    clock.now += timedelta(days=2)
    again = run(storage, clock, all_feeds=True)
    assert [p.feed for p in again.polls] == ["eastwire"]  # not asked again, not silently either
    assert sum(path == "/gone.xml" for path, _ in site.requests) == asked

    moved = site.put("/moved.xml", (SITE / "harbourpost" / "atom.xml").read_bytes())
    storage.sync_feeds(
        [FeedConfig(name="gone", url=moved), FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml"))],
        clock.now,
    )
    statuses = {f.name: f for f in storage.feed_statuses()}
    assert statuses["gone"].disabled_reason is None  # a new address is polled afresh
    assert "gone" in [f.name for f in storage.feeds_due(clock.now)]


@pytest.mark.parametrize(
    ("error", "low", "high"),
    [
        (HTTPStatusError("https://f.example/rss", 503), 0.45, 0.55),  # passing trouble: half the interval
        (HTTPStatusError("https://f.example/rss", 429), 0.45, 0.55),
        (FetchError("https://f.example/rss", "timed out", kind="timeout"), 0.45, 0.55),
        (FetchError("https://f.example/rss", "refused", kind="refused"), 0.45, 0.55),
        (HTTPStatusError("https://f.example/rss", 404), 1.8, 2.2),  # needs a person: twice the interval
        (FetchError("https://f.example/rss", "no such host", kind="dns"), 1.8, 2.2),
        (FeedParseError("https://f.example/rss", "not a feed"), 1.8, 2.2),
    ],
)
def test_feed_backoff_is_weighted_by_the_kind_of_failure(error, low, high):
    interval = timedelta(minutes=30)
    for failures_before in range(4):
        delays = [feed_backoff(interval, failures_before, error) / interval for _ in range(50)]
        doubling = 2**failures_before
        assert low * doubling <= min(delays) and max(delays) <= high * doubling
        assert max(delays) > min(delays)  # jittered, so that feeds failing together spread out
    assert feed_backoff(interval, 40, error) == timedelta(hours=24)  # capped, never given up


def test_feed_backoff_honours_retry_after():
    busy = HTTPStatusError("https://f.example/rss", 503, retry_after=7200)
    assert feed_backoff(timedelta(minutes=5), 0, busy) == timedelta(hours=2)
    assert feed_backoff(timedelta(hours=1), 0, HTTPStatusError("https://f.example/rss", 429, 10)) > timedelta(
        minutes=25
    )  # a Retry-After shorter than the backoff does not make it sooner
    assert feed_backoff(timedelta(minutes=5), 0, HTTPStatusError("u", 503, retry_after=10**9)) == timedelta(
        hours=24
    )


def test_a_failing_feed_is_retried_later_and_later_but_never_dropped(storage, site):
    site.put("/feed.xml", "down for maintenance", "text/plain", status=503)
    clock = Clock()
    storage.sync_feeds([FeedConfig(name="busy", url=site.url("/feed.xml"), interval="10m")], clock.now)
    waits = []
    for _ in range(6):
        assert [f.name for f in storage.feeds_due(clock.now)] == ["busy"]
        run(storage, clock)
        [status] = storage.feed_statuses()
        waits.append((status.next_poll_at - clock.now) / timedelta(minutes=10))
        clock.now = status.next_poll_at
    assert 0.45 <= waits[0] <= 0.55 and all(1.6 < b / a < 2.5 for a, b in itertools.pairwise(waits))
    assert status.consecutive_errors == 6 and status.failing_since == Clock().now and status.active


def _feed(interval=timedelta(minutes=30), low=timedelta(minutes=5), high=timedelta(hours=24)):
    return FeedForPoll(1, "f", "https://f.example/rss", None, None, interval, 0, low, high)


def test_the_polling_interval_follows_how_often_a_feed_publishes():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    hourly = [now - timedelta(minutes=10) - timedelta(hours=h) for h in range(12)]
    assert polling_interval(_feed(), hourly, now) == timedelta(minutes=30)  # half the typical gap
    gone_quiet = [d - timedelta(days=2) for d in hourly]
    assert polling_interval(_feed(), gone_quiet, now) == timedelta(hours=12, minutes=2, seconds=30)
    busy = [now - timedelta(minutes=m) for m in range(20)]
    assert polling_interval(_feed(), busy, now) == timedelta(minutes=5)  # not below the feed's shortest
    assert polling_interval(_feed(), [None, None, now], now) == timedelta(minutes=30)  # too little to judge
    fixed = _feed(timedelta(minutes=15), timedelta(minutes=15), timedelta(minutes=15))
    assert polling_interval(fixed, busy, now) == timedelta(minutes=15)


def test_the_wsj_world_feed_is_polled_about_as_often_as_it_publishes():
    from monitor.feeds import parse_feed

    root = corpus_path("feeds", "timeseries", "wsj_world")
    intervals = []
    for path in sorted(root.glob("*.xml"))[::8]:
        now = datetime.strptime(path.stem, "%Y-%m-%dT%H%M%SZ").replace(tzinfo=UTC)
        entries = parse_feed(path.read_bytes(), url="https://feeds.wsj.example/world").entries
        intervals.append(polling_interval(_feed(), [e.published for e in entries], now))
    assert all(timedelta(minutes=5) <= i <= timedelta(hours=6) for i in intervals), intervals


def test_a_feed_is_not_polled_again_while_its_answer_is_fresh(storage):
    from test_fetch import Server, reply

    feed = (SITE / "eastwire" / "feed.xml").read_bytes()
    clock = Clock()
    with Server() as server:
        url = server.route("/feed.xml", reply(200, feed, {"Cache-Control": "max-age=7200"}))
        storage.sync_feeds([FeedConfig(name="cached", url=url, interval="10m")], clock.now)
        run(storage, clock)
    [status] = storage.feed_statuses()
    assert status.next_poll_at - clock.now == timedelta(hours=2)  # not after 10 minutes: it would be the same


def test_pages_extracted_in_a_process_pool_give_the_same_articles(storage, site, tmp_path, monkeypatch):
    """`monitor run` and `monitor poll` extract in processes (one per core); a thread is the default."""
    serve_kremlin(site)
    clock = Clock()
    # one batch each: which lines are site chrome depends on which articles were settled before
    monkeypatch.setattr(pipeline_module, "SETTLE_LINGER", 600.0)
    pooled = Storage(make_engine(f"sqlite:///{tmp_path / 'pooled.db'}"))
    upgrade(pooled.engine)
    for db in (storage, pooled):
        db.sync_feeds([FeedConfig(name="kremlin", url=site.url("/selection.rss"))], clock.now)
    run(storage, clock)

    async def run_in_processes():
        with extraction_pool(2) as pool:
            async with Fetcher(LOOPBACK) as fetcher:
                return await Pipeline(pooled, fetcher, clock=clock, extractor=pool).run_once()

    assert asyncio.run(run_in_processes()).articles == 22

    def texts(db):
        return {a.url: (a.title, a.text) for a in db.archived_by_id(list(range(1, 100)))}

    assert len(texts(pooled)) == 22 and texts(pooled) == texts(storage)


def test_a_worker_that_died_fails_one_poll_and_the_next_poll_goes_on(storage, site):
    """A worker killed (the OOM killer, a crash in a C extension) fails the feed parse it would have run,
    recorded on the feed like any failure; it is replaced, and the next poll is stored in full."""
    serve_kremlin(site)
    clock = Clock()
    storage.sync_feeds([FeedConfig(name="kremlin", url=site.url("/selection.rss"))], clock.now)

    async def poll(pool):
        async with Fetcher(LOOPBACK) as fetcher:
            return await Pipeline(storage, fetcher, clock=clock, extractor=pool).run_once(all_feeds=True)

    with extraction_pool(1) as pool:
        [killed] = pool.pids
        os.kill(killed, signal.SIGKILL)
        first = asyncio.run(poll(pool))
        [status] = storage.feed_statuses()
        assert first.articles == 0 and f"extraction worker {killed} died" in (status.last_error or "")
        second = asyncio.run(poll(pool))
        assert second.articles == 22 and pool.pids != [killed]


def test_each_worker_has_its_next_page_waiting_while_it_extracts_one(storage, site):
    """With a pool of two, four pages are in the pool at once: a worker that finishes a page starts the
    next without waiting for the event loop to hand it over."""
    serve_kremlin(site)
    clock = Clock()
    storage.sync_feeds([FeedConfig(name="kremlin", url=site.url("/selection.rss"))], clock.now)
    in_pool, peak = 0, 0

    with extraction_pool(2) as pool:
        run_in_pool = pool.run

        async def counted(function, *args, **kwargs):
            nonlocal in_pool, peak
            in_pool += 1
            peak = max(peak, in_pool)
            try:
                return await run_in_pool(function, *args, **kwargs)
            finally:
                in_pool -= 1

        pool.run = counted

        async def poll():
            async with Fetcher(LOOPBACK) as fetcher:
                return await Pipeline(storage, fetcher, clock=clock, extractor=pool).run_once(all_feeds=True)

        assert asyncio.run(poll()).articles == 22
    assert peak == pipeline_module.EXTRACTING_PER_WORKER * 2


def test_articles_extracted_close_together_are_settled_in_one_transaction(storage, site, monkeypatch):
    serve_kremlin(site)
    storage.sync_feeds([FeedConfig(name="kremlin", url=site.url("/selection.rss"))], Clock().now)
    sizes: list[int] = []
    original = Pipeline.settle_batch

    def counting(self, batch):
        sizes.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(Pipeline, "settle_batch", counting)
    assert run(storage, Clock()).articles == 22
    assert sum(sizes) == 22 and len(sizes) < 22  # each waited SETTLE_LINGER for company


def test_articles_are_settled_in_the_order_they_were_found_whichever_worker_finished_first(
    storage, site, monkeypatch
):
    """The Kremlin marks cuts in transcripts with a line "<…>"; 7 of these 22 articles have it, spread
    out. Settled first, as the workers might finish them, those 7 would make it look like site chrome."""
    serve_kremlin(site)
    storage.sync_feeds([FeedConfig(name="kremlin", url=site.url("/selection.rss"))], Clock().now)
    monkeypatch.setattr(pipeline_module, "SETTLE_LINGER", 600.0)  # the 22 in one batch
    original = Pipeline.settle_batch

    def cuts_finished_first(self, batch):
        return original(self, sorted(batch, key=lambda e: "\n<…>" not in e.extracted.text))

    monkeypatch.setattr(Pipeline, "settle_batch", cuts_finished_first)
    assert run(storage, Clock()).articles == 22
    texts = [a.text for a in storage.archived_by_id(list(range(1, 23)))]
    assert sum(text.endswith("\n<…>") for text in texts) == 7


def test_the_last_articles_in_hand_are_settled_without_waiting_for_company(storage, site, monkeypatch):
    """In the daemon's open stream the settle stage waits for company only while other articles are on
    their way: once the articles of a poll are all extracted, their hits are stored at once."""
    serve_kremlin(site)
    clock = Clock()
    storage.sync_feeds([FeedConfig(name="kremlin", url=site.url("/selection.rss"))], clock.now)
    monkeypatch.setattr(pipeline_module, "SETTLE_LINGER", 600.0)

    async def poll_in_open_stream() -> int:
        async with Fetcher(LOOPBACK) as fetcher:
            pipeline = Pipeline(storage, fetcher, clock=clock)
            report = pipeline_module.RunReport()
            async with pipeline.streaming(report) as stream:
                await pipeline.poll_feeds(storage.all_feeds_for_poll(), stream=stream)
                async with asyncio.timeout(60):  # SETTLE_LINGER would hold the last batch for 600 s
                    while report.articles < 22:
                        await asyncio.sleep(0.05)
                settled = report.articles
                stream.close()
            return settled

    assert asyncio.run(poll_in_open_stream()) == 22


def test_group_commit_writes_together_and_a_bad_item_fails_alone():
    calls: list[list[str]] = []

    def write(items: list[str]) -> list[str]:
        calls.append(items)
        if "bad" in items:
            raise ValueError("cannot store bad")
        return [item.upper() for item in items]

    async def scenario():
        record = GroupCommit(write, linger=0.01)
        return await asyncio.gather(*(record(i) for i in ("a", "bad", "c")), return_exceptions=True)

    a, bad, c = asyncio.run(scenario())
    assert (a, c) == ("A", "C") and isinstance(bad, ValueError)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]  # together, then each alone


def test_polls_run_on_a_fixed_number_of_pollers_and_keep_the_order_of_the_feeds(storage, site, monkeypatch):
    monkeypatch.setattr(pipeline_module, "POLLERS", 3)
    for n in range(8):
        site.put(f"/f{n}.xml", b"not a feed at all", "text/plain")
    storage.sync_feeds([FeedConfig(name=f"f{n}", url=site.url(f"/f{n}.xml")) for n in range(8)], Clock().now)
    at_once = most = 0
    original = Pipeline.poll_feed

    async def counting(self, feed):
        nonlocal at_once, most
        at_once += 1
        most = max(most, at_once)
        try:
            return await original(self, feed)
        finally:
            at_once -= 1

    monkeypatch.setattr(Pipeline, "poll_feed", counting)
    report = run(storage, Clock(), all_feeds=True)
    assert most == 3
    assert [p.feed for p in report.polls] == [f"f{n}" for n in range(8)]
    # the parse runs in the executor; its error still reaches the feed with its own message
    assert all(p.status == "error" and "not a usable feed" in p.error for p in report.polls)
