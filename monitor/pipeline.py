"""The orchestrator: the stream, stage by stage.

    due feeds ─► poll (conditional GET) ─► parse ─► record new entries (stored once per canonical URL)
              ─► fetch page ─► extract (or feed text) ─► strip site chrome ─► find its story (exact or
                 near-duplicate copy) ─► match ─► store article, story and hits

Feeds and articles are handled independently: one failing feed or page is recorded where it belongs and the
rest go on. Every stage is keyed by the canonical article URL and every write is one transaction, so a crash
anywhere is recovered by running again: discovered articles are picked up where they were left.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import statistics
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any, TypeVar

from monitor import dedup
from monitor.chrome import chrome_keys, line_keys, strip_lines
from monitor.errors import FeedParseError, FetchError, HTTPStatusError, MonitorError
from monitor.extract import extract_page, from_feed_entry
from monitor.feeds import parse_feed
from monitor.fetch import Fetcher
from monitor.match import TopicMatcher, matcher_signature
from monitor.metrics import ARTICLES_PROCESSED, FEED_ERRORS, FEED_POLLS, HITS, STAGE_SECONDS
from monitor.storage import NewArticle, Storage
from monitor.types import (
    ArticleToProcess,
    ExtractedArticle,
    FeedEntry,
    FeedForPoll,
    NotModified,
    TopicMatch,
)
from monitor.urls import canonical_url, page_url, site_of

log = logging.getLogger(__name__)

#: the longest a failing feed waits between attempts; it is never given up
MAX_BACKOFF = timedelta(hours=24)
#: an article that fails is retried after this, doubling with each attempt (see MAX_ARTICLE_ATTEMPTS)
ARTICLE_RETRY_FIRST = timedelta(minutes=5)
ARTICLE_BATCH = 200

T = TypeVar("T")
Clock = Callable[[], datetime]
#: called as (stage, done, total) while a run goes on; for progress bars
Progress = Callable[[str, int, int], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll of one feed did."""

    feed: str
    #: "updated", "not_modified" or "error"
    status: str
    new_entries: int = 0
    error: str | None = None
    warning: str | None = None


@dataclass(slots=True)
class RunReport:
    """What one pass of the stream did."""

    polls: list[PollOutcome] = field(default_factory=list)
    articles: int = 0
    from_feed: int = 0
    hits: int = 0

    @property
    def failed_feeds(self) -> list[PollOutcome]:
        return [p for p in self.polls if p.status == "error"]


class Pipeline:
    """Runs the stream over the feeds that are due, then over every article waiting to be processed."""

    def __init__(
        self, storage: Storage, fetcher: Fetcher, *, clock: Clock = utc_now, extractor: Executor | None = None
    ) -> None:
        """``extractor``: where pages are extracted (see monitor.extract.extraction_pool); by default a
        thread, which is enough for a handful of articles but uses one core."""
        self.storage, self.fetcher, self.clock, self.extractor = storage, fetcher, clock, extractor
        self._matcher: TopicMatcher | None = None
        self._stopping = False

    def stop(self) -> None:
        """Finish the articles in hand and start no others (the rest stay queued for the next run)."""
        self._stopping = True

    async def run_once(
        self, *, feed: str | None = None, all_feeds: bool = False, progress: Progress | None = None
    ) -> RunReport:
        """Poll due feeds (or one named feed, or all), then process every discovered article."""
        now = self.clock()
        if feed is not None:
            feeds = self.storage.feeds_due(now, name=feed)
        elif all_feeds:
            feeds = self.storage.all_feeds_for_poll()
        else:
            feeds = self.storage.feeds_due(now)
        report = RunReport()
        report.polls = await self._gather("poll", [self.poll_feed(f) for f in feeds], progress)
        await self.process_articles(report, progress=progress, feed_id=feeds[0].id if feed else None)
        return report

    async def poll_feed(self, feed: FeedForPoll) -> PollOutcome:
        """Fetch and parse one feed and record its new entries; failures are recorded on the feed."""
        now = self.clock()
        try:
            with STAGE_SECONDS.labels("poll").time():
                result = await self.fetcher.fetch_feed(
                    feed.url, etag=feed.etag, last_modified=feed.last_modified
                )
            if isinstance(result, NotModified):
                FEED_POLLS.labels("not_modified").inc()
                interval = _clamp(feed.interval * QUIET_GROWTH, feed)
                self.storage.record_not_modified(
                    feed.id,
                    status=304,
                    now=now,
                    next_poll_at=_next_poll(now, interval, result.max_age),
                    interval=interval,
                )
                log.info("feed not modified", extra={"feed": feed.name, "status": 304})
                return PollOutcome(feed.name, "not_modified")
            parsed = parse_feed(result.content, url=result.final_url, content_type=result.content_type)
        except (FetchError, FeedParseError) as exc:
            return self._feed_failed(feed, exc, now)
        articles = [_new_article(e, result.final_url) for e in parsed.entries]
        interval = polling_interval(feed, [e.published for e in parsed.entries], now)
        new = self.storage.record_poll(
            feed.id,
            status=result.status,
            title=parsed.title,
            etag=result.etag,
            last_modified=result.last_modified,
            final_url=result.final_url,
            articles=articles,
            now=now,
            next_poll_at=_next_poll(now, interval, result.max_age),
            interval=interval,
        )
        FEED_POLLS.labels("updated").inc()
        if parsed.warning:
            log.info("feed is malformed but usable: %s", parsed.warning, extra={"feed": feed.name})
        log.info("feed polled", extra={"feed": feed.name, "status": result.status, "new": new})
        return PollOutcome(feed.name, "updated", new_entries=new, warning=parsed.warning)

    async def process_articles(
        self, report: RunReport, *, progress: Progress | None = None, feed_id: int | None = None
    ) -> None:
        """Fetch, extract, match and store every discovered article that is due, in batches."""
        matcher = self._current_matcher()
        while not self._stopping and (
            batch := self.storage.articles_to_process(self.clock(), limit=ARTICLE_BATCH, feed_id=feed_id)
        ):
            results = await self._gather(
                "articles", [self.process_article(a, matcher) for a in batch], progress
            )
            for hits, source in results:
                if source == "skipped":
                    continue
                report.articles += 1
                report.hits += hits
                report.from_feed += source == "feed"

    async def process_article(self, item: ArticleToProcess, matcher: TopicMatcher) -> tuple[int, str]:
        """One article: fetch → extract (or feed text) → checkpoint → settle; returns (hits, text source).
        An article whose extraction was checkpointed before is only settled."""
        if self._stopping:  # waiting for the fetcher's limits; it stays queued
            return 0, "skipped"
        now = self.clock()
        try:
            extracted, fetch_error = item.extracted, item.fetch_error
            if extracted is None:
                extracted, fetch_error = await self._extract(item)
                self.storage.save_extracted(item.id, extracted, fetch_error=fetch_error)
            _, matches = self.settle(item, extracted, matcher, fetch_error=fetch_error, now=now)
        except Exception as exc:  # one article's failure is recorded on it; the stream goes on
            reason = str(exc) if isinstance(exc, MonitorError) else f"{type(exc).__name__}: {exc}"
            retry = now + ARTICLE_RETRY_FIRST * (1 << min(item.attempts, 10))
            self.storage.record_article_error(item.id, error=reason, retry_at=retry)
            log.error(
                "article failed: %s",
                reason,
                extra={"url": item.url},
                exc_info=not isinstance(exc, MonitorError),
            )
            ARTICLES_PROCESSED.labels("error").inc()
            return 0, "error"
        ARTICLES_PROCESSED.labels(extracted.source).inc()
        HITS.inc(len(matches))
        for match in matches:
            log.info("hit", extra={"url": item.url, "topic": match.topic_id, "score": match.score})
        return len(matches), extracted.source

    async def _extract(self, item: ArticleToProcess) -> tuple[ExtractedArticle, str | None]:
        """The article's page, extracted; or its feed text, with why the page could not be used."""
        if item.page_url is None:
            return from_feed_entry(item.entry), None
        try:
            with STAGE_SECONDS.labels("fetch").time():
                page = await self.fetcher.fetch_page(item.page_url)
        except FetchError as exc:
            log.info("page not fetched, using the feed's text: %s", exc, extra={"url": item.url})
            return from_feed_entry(item.entry), str(exc)
        with STAGE_SECONDS.labels("extract").time():
            extracted = await asyncio.get_running_loop().run_in_executor(
                self.extractor, functools.partial(extract_page, page.content, url=page.final_url)
            )
        if extracted is None:
            return from_feed_entry(item.entry), "page has no usable article body"
        return extracted, None

    def settle(
        self,
        item: ArticleToProcess,
        extracted: ExtractedArticle,
        matcher: TopicMatcher,
        *,
        fetch_error: str | None,
        now: datetime,
    ) -> tuple[int, list[TopicMatch]]:
        """An extracted article's last stages: strip its site's chrome → find its story → match → store it
        with its story and hits in one transaction. Returns the story id and the hits."""
        with STAGE_SECONDS.labels("dedup").time():
            lines = line_keys(extracted.text)
            extracted = self._without_chrome(extracted, site_of(item.url), lines)
            fingerprint = dedup.fingerprint(f"{extracted.title}\n{extracted.text}")
            story = self.story_of(item.id, item.url, fingerprint)
        with STAGE_SECONDS.labels("match").time():
            matches = matcher.match(extracted, url=item.url, feed=item.feed_name)
        with STAGE_SECONDS.labels("store").time():
            saved = self.storage.save_article(
                item.id,
                extracted=extracted,
                matches=matches,
                fetch_error=fetch_error,
                now=now,
                fingerprint=fingerprint,
                story_id=story,
                lines=lines,
            )
        for earlier in self.storage.archived_by_id(saved.recleaned):  # they lost chrome lines just learned
            found = matcher.match(earlier.extracted, url=earlier.url, feed=earlier.feed)
            self.storage.rematch(earlier.id, found, now)
        return saved.story_id, matches

    def _without_chrome(
        self, article: ExtractedArticle, site: str, lines: dict[str, str]
    ) -> ExtractedArticle:
        """The article without the lines its site repeats around every article."""
        chrome = chrome_keys(self.storage.site_lines_seen(site, lines))
        return replace(article, text=strip_lines(article.text, chrome)) if chrome else article

    def story_of(self, article_id: int, url: str, fingerprint: dedup.Fingerprint) -> int | None:
        """The stored story this article is a copy of: the same text, else a near-duplicate (see
        :func:`dedup.find_story`). None: it starts a story of its own."""
        exact, near = self.storage.copy_candidates(
            fingerprint.content_hash, fingerprint.band_keys, exclude=article_id
        )
        if exact is not None:
            return exact
        return dedup.find_story(fingerprint, near, site=site_of(url), load_texts=self.storage.article_texts)

    def _current_matcher(self) -> TopicMatcher:
        """The compiled topics, rebuilt only when a topic or an alias was added, removed or changed."""
        topics, aliases = self.storage.topics(), self.storage.aliases()
        if self._matcher is None or self._matcher.signature != matcher_signature(topics, aliases):
            self._matcher = TopicMatcher(topics, aliases)
        return self._matcher

    def _feed_failed(self, feed: FeedForPoll, exc: MonitorError, now: datetime) -> PollOutcome:
        """Record the error on the feed; back off exponentially (honouring Retry-After), never give up."""
        FEED_POLLS.labels("error").inc()
        FEED_ERRORS.labels(exc.kind if isinstance(exc, FetchError | FeedParseError) else "other").inc()
        status = exc.status if isinstance(exc, HTTPStatusError) else None
        if status == 410:  # Gone: the publisher says so; polling on would only hammer it
            self.storage.record_feed_error(feed.id, error=str(exc), status=status, now=now, next_poll_at=now)
            reason = "410 Gone: the publisher removed this feed; change its url in feeds.yaml to poll again"
            self.storage.disable_feed(feed.id, reason=reason, now=now)
            log.warning("feed disabled: %s", exc, extra={"feed": feed.name, "status": status})
            return PollOutcome(feed.name, "error", error=f"{exc} (feed disabled)")
        delay = feed_backoff(feed.interval, feed.consecutive_errors, exc)
        self.storage.record_feed_error(
            feed.id, error=str(exc), status=status, now=now, next_poll_at=now + delay
        )
        log.warning("feed failed: %s", exc, extra={"feed": feed.name, "status": status})
        return PollOutcome(feed.name, "error", error=str(exc))

    @staticmethod
    async def _gather(stage: str, jobs: list[Coroutine[Any, Any, T]], progress: Progress | None) -> list[T]:
        """Run jobs concurrently (the fetcher bounds the network work), reporting each completion."""
        done = 0

        async def tracked(job: Coroutine[Any, Any, T]) -> T:
            nonlocal done
            result = await job
            done += 1
            if progress is not None:
                progress(stage, done, len(jobs))
            return result

        return list(await asyncio.gather(*(tracked(job) for job in jobs)))


#: how many of a feed's newest entries its publishing rhythm is judged by
RHYTHM_ENTRIES = 20
#: each poll that finds nothing new (a 304) lengthens the interval by this much, up to the feed's longest
QUIET_GROWTH = 1.25


def polling_interval(feed: FeedForPoll, published: Sequence[datetime | None], now: datetime) -> timedelta:
    """How often to poll a feed, from when its newest entries were published: half the typical gap between
    them (so a new item waits half a gap on average), or half the time since the newest when the feed has
    gone quiet; within the feed's bounds. A feed with a fixed interval keeps it."""
    dates = sorted({d for d in published if d is not None and d <= now}, reverse=True)[:RHYTHM_ENTRIES]
    if feed.min_interval == feed.max_interval or len(dates) < 3:
        return _clamp(feed.interval, feed)
    typical = timedelta(
        seconds=statistics.median(
            (newer - older).total_seconds() for newer, older in itertools.pairwise(dates)
        )
    )
    return _clamp(max(typical, (now - dates[0]) / 2) / 2, feed)


def _clamp(interval: timedelta, feed: FeedForPoll) -> timedelta:
    return min(max(interval, feed.min_interval), feed.max_interval)


def _next_poll(now: datetime, interval: timedelta, max_age: float | None = None) -> datetime:
    """The next poll, jittered by ±10% so that feeds added together do not poll in lock-step, and not
    before the answer's freshness (Cache-Control max-age) runs out: polling sooner would get the same."""
    wait = interval * random.uniform(1 - JITTER, 1 + JITTER)
    if max_age is not None:
        wait = max(wait, min(timedelta(seconds=max_age), MAX_BACKOFF))
    return now + wait


#: kinds of failure that usually pass by themselves (a busy, restarting or slow server): retried sooner
TRANSIENT_KINDS = frozenset({"refused", "connect", "connect_timeout", "network", "timeout"})
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: how the backoff is weighted: a passing trouble is retried at half the feed's interval, doubling; one that
#: needs a person (the feed moved or broke, its host no longer resolves) at twice it, doubling
TRANSIENT_WEIGHT, PERSISTENT_WEIGHT = 0.5, 2.0
JITTER = 0.1


def feed_backoff(interval: timedelta, failures_before: int, exc: MonitorError) -> timedelta:
    """How long a feed waits after a failure: weighted exponential backoff, capped at MAX_BACKOFF, with
    ±10% jitter so that feeds failing together do not retry together; never sooner than the server's
    Retry-After. A feed is never given up."""
    transient = (
        exc.status in TRANSIENT_STATUSES
        if isinstance(exc, HTTPStatusError)
        else isinstance(exc, FetchError) and exc.kind in TRANSIENT_KINDS
    )
    weight = TRANSIENT_WEIGHT if transient else PERSISTENT_WEIGHT
    delay = interval * weight * (1 << min(failures_before, 16)) * random.uniform(1 - JITTER, 1 + JITTER)
    if isinstance(exc, HTTPStatusError) and exc.retry_after:
        delay = max(delay, timedelta(seconds=exc.retry_after))
    return min(delay, MAX_BACKOFF)


def _new_article(entry: FeedEntry, feed_url: str) -> NewArticle:
    """The canonical URL an entry's article is stored under, and where its page is fetched from. An entry
    without a link has no page: it gets a stable pseudo-URL under its feed, and only its feed text."""
    if entry.url:
        return NewArticle(entry=entry, url=canonical_url(entry.url), page_url=page_url(entry.url))
    pseudo = f"{canonical_url(feed_url)}#entry-{sha256(entry.key.encode()).hexdigest()[:16]}"
    return NewArticle(entry=entry, url=pseudo, page_url=None)
