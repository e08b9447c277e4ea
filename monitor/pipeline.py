"""The orchestrator: the stream, stage by stage.

    due feeds ─► poll (conditional GET) ─► parse ─► record new entries (stored once per canonical URL)
    discovered articles ─► fetch page ─► extract (process pool) ─► settle: strip site chrome ─► find its
        story (exact or near-duplicate copy) ─► match ─► store article, story and hits (many per transaction)

The article stages run concurrently, connected by bounded queues, so memory stays bounded whatever the
backlog and both cores stay busy: the database is the queue of discovered articles (read a page at a time),
at most ``FETCHERS`` articles are being fetched, ``EXTRACTING_PER_WORKER`` pages per extraction worker are
being extracted, and extracted articles wait for the settle stage in a queue of ``SETTLE_QUEUE``. The settle
stage takes whatever has arrived (up to ``SETTLE_BATCH``) and settles it in one transaction, in a thread so
that fetching goes on meanwhile.

Feeds and articles are handled independently: one failing feed or page is recorded where it belongs and the
rest go on. Every stage is keyed by the canonical article URL and a batch is one transaction, so a crash
anywhere is recovered by running again: discovered articles are picked up where they were left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any, Generic, TypeVar

from monitor import dedup
from monitor.chrome import chrome_keys, line_keys, strip_lines
from monitor.errors import (
    FeedParseError,
    FetchError,
    HTTPStatusError,
    MonitorError,
    StorageError,
    WorkerDiedError,
)
from monitor.extract import extract_page, from_feed_entry
from monitor.feeds import parse_feed
from monitor.fetch import Fetcher
from monitor.match import TopicMatcher
from monitor.metrics import ARTICLES_PROCESSED, FEED_ERRORS, FEED_POLLS, HITS, STAGE_SECONDS
from monitor.pool import ProcessPool
from monitor.storage import (
    ArticleBatch,
    FeedFailed,
    FeedNotModified,
    FeedUpdated,
    NewArticle,
    Storage,
)
from monitor.types import (
    ArticleToProcess,
    Clock,
    ExtractedArticle,
    FeedEntry,
    FeedForPoll,
    NotModified,
    ParsedFeed,
    TopicMatch,
    utc_now,
)
from monitor.urls import canonical_url, page_url, site_of

log = logging.getLogger(__name__)

#: the longest a failing feed waits between attempts; it is never given up
MAX_BACKOFF = timedelta(hours=24)
#: an article that fails is retried after this, doubling with each attempt (see MAX_ARTICLE_ATTEMPTS)
ARTICLE_RETRY_FIRST = timedelta(minutes=5)
#: discovered articles read from the database at a time
ARTICLE_PAGE = 200
#: articles being fetched at once; the fetcher's own limits (overall, per site, spacing) still apply, so
#: this only needs to be large enough that articles of one slow site do not hold up the others
FETCHERS = 64
#: feeds being polled at once; the fetcher's own limits (overall, per site, spacing) still apply, so this
#: only needs to be large enough that feeds waiting on one site do not hold up the others
POLLERS = 64
#: pages handed to each extraction worker and not back yet: one being extracted, one waiting
EXTRACTING_PER_WORKER = 2
#: extracted articles waiting to be settled, and the most settled in one transaction
SETTLE_QUEUE = 150
SETTLE_BATCH = 150
#: how long the settle stage waits for more articles to settle with the first in one transaction, while
#: others are being fetched or extracted: articles arrive one by one from extraction, and each transaction
#: costs its begin, its commit and the flush of its full-text index entries. At full speed a batch holds
#: about 100 articles, and each costs 0.18 ms of CPU less than with half a second's batches.
SETTLE_LINGER = 1.0
#: how often a running stream looks again for articles whose retry time has come
RESWEEP_SECONDS = 60.0
#: how long the compiled topics are used before the database is asked whether they changed: a topic added
#: or edited from the CLI is matched within this
TOPICS_CHECK_SECONDS = 2.0

T = TypeVar("T")
R = TypeVar("R")
#: called as (stage, done, total) while a run goes on; for progress bars
Progress = Callable[[str, int, int], None]


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


@dataclass(frozen=True, slots=True)
class Extracted:
    """An article on its way to the settle stage: its content, or why it could not be had."""

    item: ArticleToProcess
    extracted: ExtractedArticle | None
    #: why the page could not be used (the content then comes from the feed)
    fetch_error: str | None = None
    #: an unexpected failure before settling; the article is recorded as failed with it
    failure: str | None = None
    #: the text's keyed lines and fingerprint, when the worker that extracted it made them
    keys: TextKeys | None = None


@dataclass(frozen=True, slots=True)
class TextKeys:
    """What the settle stage keys an article's text by: its lines (for the site's chrome) and its
    fingerprint (for its story). Made where the page is extracted, as it is CPU work on the text alone."""

    lines: dict[str, str]
    fingerprint: dedup.Fingerprint


def text_keys(article: ExtractedArticle) -> TextKeys:
    return TextKeys(line_keys(article.text), fingerprint_of(article))


def fingerprint_of(article: ExtractedArticle) -> dedup.Fingerprint:
    return dedup.fingerprint(f"{article.title}\n{article.text}")


def extract_and_key(content: bytes, *, url: str) -> tuple[ExtractedArticle, TextKeys] | None:
    """A page extracted (see ``extract_page``), with its text keys: what a worker of the pool does."""
    extracted = extract_page(content, url=url)
    return None if extracted is None else (extracted, text_keys(extracted))


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling one article did: "page", "feed" (where its text came from) or "error"; its hits."""

    article_id: int
    source: str
    hits: int = 0


class Pipeline:
    """Runs the stream: polls feeds, and moves discovered articles through the article stages."""

    def __init__(
        self,
        storage: Storage,
        fetcher: Fetcher,
        *,
        clock: Clock = utc_now,
        extractor: ProcessPool | None = None,
    ) -> None:
        """``extractor``: where pages are extracted and feeds parsed (see monitor.extract.extraction_pool);
        by default a thread, which is enough for a handful of feeds and articles but uses one core."""
        self.storage, self.fetcher, self.clock, self.extractor = storage, fetcher, clock, extractor
        self._matcher: TopicMatcher | None = None
        #: the stored topics and aliases it was compiled from (Storage.topics_state)
        self._matcher_state: tuple[tuple[str | None, ...], ...] = ()
        #: when the topics are next read to see whether the matcher is current (monotonic seconds)
        self._topics_check_at = 0.0
        self._stopping = False
        self._streams: set[ArticleStream] = set()
        #: poll results go to the database together when they finish together (group commit)
        self._record_poll = GroupCommit(storage.record_polls)
        #: feeds ``poll_due`` queued or is polling (a feed is never polled twice at once), the queue, the
        #: pollers taking from it, and what tells the running stream of new articles
        self._polling: set[int] = set()
        self._to_poll: asyncio.Queue[FeedForPoll] = asyncio.Queue()
        self._pollers: list[asyncio.Task[None]] = []
        self._wake: Callable[[], None] | None = None

    def stop(self) -> None:
        """Finish the articles in hand and start no others (the rest stay queued for the next run)."""
        self._stopping = True
        for stream in self._streams:
            stream.wake()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run_once(
        self, *, feed: str | None = None, all_feeds: bool = False, progress: Progress | None = None
    ) -> RunReport:
        """Poll due feeds (or one named feed, or all) and process every discovered article, the articles
        of each feed starting as soon as its poll has recorded them; returns when all are settled."""
        now = self.clock()
        if feed is not None:
            feeds = self.storage.feeds_due(now, name=feed)
        elif all_feeds:
            feeds = self.storage.all_feeds_for_poll()
        else:
            feeds = self.storage.feeds_due(now)
        report = RunReport()
        async with self.streaming(report, progress=progress, feed_id=feeds[0].id if feed else None) as stream:
            report.polls = await self.poll_feeds(feeds, stream=stream, progress=progress)
            stream.close()
        return report

    async def poll_feeds(
        self,
        feeds: Sequence[FeedForPoll],
        *,
        stream: ArticleStream | None = None,
        progress: Progress | None = None,
    ) -> list[PollOutcome]:
        """Poll feeds, POLLERS at once (the fetcher's limits apply within them); the articles they record go
        into ``stream`` as soon as each poll has recorded them. Outcomes in the order of ``feeds``."""
        outcomes: list[PollOutcome | None] = [None] * len(feeds)
        waiting = iter(enumerate(feeds))
        done = 0

        async def poller() -> None:
            nonlocal done
            for i, feed in waiting:
                outcomes[i] = await self._poll_and_wake(feed, stream)
                done += 1
                if progress is not None:
                    progress("poll", done, len(feeds))

        await asyncio.gather(*(poller() for _ in range(min(POLLERS, len(feeds)))))
        return [o for o in outcomes if o is not None]

    async def _poll_and_wake(self, feed: FeedForPoll, stream: ArticleStream | None) -> PollOutcome:
        outcome = await self.poll_feed(feed)
        if outcome.new_entries and stream is not None:
            stream.wake()
        return outcome

    @contextlib.asynccontextmanager
    async def streaming(
        self, report: RunReport, *, progress: Progress | None = None, feed_id: int | None = None
    ) -> AsyncIterator[ArticleStream]:
        """Run the article stages while the block runs. The stream goes on until it is closed and has
        settled every due article (``ArticleStream.close``), or the pipeline is stopped and has settled
        the articles in hand; leaving the block waits for that."""
        stream = ArticleStream(self, report, progress=progress, feed_id=feed_id)
        running = asyncio.create_task(stream.run())
        try:
            yield stream
        except BaseException:
            stream.close()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            raise
        await running

    def poll_due(self, stream: ArticleStream) -> int:
        """Queue every due feed not queued or being polled already, for POLLERS pollers to take in turn
        (for the daemon's tick); the articles they record go into ``stream``. While more than POLLERS feeds
        wait, the database is not asked again: a feed coming due then joins the end of the queue anyway.
        Returns how many feeds were queued."""
        self._wake = stream.wake
        if self._stopping or self._to_poll.qsize() > POLLERS:
            return 0
        queued = 0
        for feed in self.storage.feeds_due(self.clock()):
            if feed.id not in self._polling:
                self._polling.add(feed.id)
                self._to_poll.put_nowait(feed)
                queued += 1
        while len(self._pollers) < POLLERS:
            self._pollers.append(asyncio.create_task(self._poll_queued()))
        return queued

    async def _poll_queued(self) -> None:
        while True:
            feed = await self._to_poll.get()
            try:
                outcome = await self.poll_feed(feed)
                if outcome.new_entries and self._wake is not None:
                    self._wake()
            except Exception as exc:  # a database failure: the feed is polled again when next due
                log.error(
                    "poll failed: %s",
                    exc,
                    extra={"feed": feed.name},
                    exc_info=not isinstance(exc, MonitorError),
                )
            finally:
                self._polling.discard(feed.id)

    async def cancel_polls(self) -> None:
        """Stop the pollers ``poll_due`` started (for a quick stop: a cancelled poll changed nothing, and
        its feed is polled again at the next start)."""
        for task in self._pollers:
            task.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        self._pollers.clear()

    async def poll_feed(self, feed: FeedForPoll) -> PollOutcome:
        """Fetch and parse one feed and record its new entries; failures are recorded on the feed. The
        record goes to the database with those of the polls that finish about the same time."""
        try:
            with STAGE_SECONDS.labels("poll").time():
                try:
                    result = await self.fetcher.fetch_feed(
                        feed.url, etag=feed.etag, last_modified=feed.last_modified
                    )
                finally:  # when the answer came, not when the poll began to wait for the site's turn
                    now = self.clock()
            if isinstance(result, NotModified):
                FEED_POLLS.labels("not_modified").inc()
                interval = _clamp(feed.interval * QUIET_GROWTH, feed)
                next_poll = _next_poll(now, interval, result.max_age)
                await self._record_poll(FeedNotModified(feed.id, now, next_poll, interval))
                log.info("feed not modified", extra={"feed": feed.name, "status": 304})
                return PollOutcome(feed.name, "not_modified")
            parsed, articles = await self._in_pool(
                parse_entries, result.content, url=result.final_url, content_type=result.content_type
            )
        except (FetchError, FeedParseError, WorkerDiedError) as exc:
            return await self._feed_failed(feed, exc, now)
        interval = polling_interval(feed, [e.published for e in parsed.entries], now)
        new = await self._record_poll(
            FeedUpdated(
                feed.id,
                now,
                status=result.status,
                title=parsed.title,
                etag=result.etag,
                last_modified=result.last_modified,
                final_url=result.final_url,
                articles=articles,
                next_poll_at=_next_poll(now, interval, result.max_age),
                interval=interval,
            )
        )
        FEED_POLLS.labels("updated").inc()
        if parsed.warning:
            log.info("feed is malformed but usable: %s", parsed.warning, extra={"feed": feed.name})
        log.info("feed polled", extra={"feed": feed.name, "status": result.status, "new": new})
        return PollOutcome(feed.name, "updated", new_entries=new, warning=parsed.warning)

    async def _in_pool(self, function: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """CPU work, in the extraction pool (without one, in a thread)."""
        if self.extractor is None:
            return await asyncio.to_thread(function, *args, **kwargs)
        return await self.extractor.run(function, *args, **kwargs)

    async def extract(self, item: ArticleToProcess, slots: asyncio.Semaphore) -> Extracted:
        """The article's page, fetched and extracted (holding one of ``slots`` while in the pool); or its
        feed text, with why the page could not be used. A checkpointed extraction is used as it is."""
        if item.extracted is not None:
            return Extracted(item, item.extracted, item.fetch_error)
        if item.page_url is None:
            return Extracted(item, from_feed_entry(item.entry))
        try:
            with STAGE_SECONDS.labels("fetch").time():
                page = await self.fetcher.fetch_page(item.page_url)
        except FetchError as exc:
            log.info("page not fetched, using the feed's text: %s", exc, extra={"url": item.url})
            return Extracted(item, from_feed_entry(item.entry), str(exc))
        async with slots:
            with STAGE_SECONDS.labels("extract").time():
                done = await self._in_pool(extract_and_key, page.content, url=page.final_url)
        if done is None:
            return Extracted(item, from_feed_entry(item.entry), "page has no usable article body")
        extracted, keys = done
        return Extracted(item, extracted, keys=keys)

    def settle_batch(self, batch: Sequence[Extracted]) -> list[Settled]:
        """Settle extracted articles in one transaction. If anything in it fails, each is settled again in a
        transaction of its own, so one bad article fails alone, recorded on it, and the others are stored.
        They are settled in the order they were found, not the order their extractions finished: what one
        article teaches the next (a site's chrome, a story's first copy) does not depend on which worker
        was quicker."""
        batch = sorted(batch, key=lambda e: e.item.id)
        matcher = self._current_matcher()
        ready = [e for e in batch if e.failure is None]
        settled = [self._settle_alone(e, matcher) for e in batch if e.failure is not None]
        if len(ready) > 1:
            try:
                with self.storage.article_batch() as tx:
                    now = self.clock()  # inside the batch's hit fence
                    together = [self._settle_in(tx, e, matcher, now) for e in ready]
                return settled + [_counted(s) for s in together]
            except Exception as exc:
                log.info("settling %d articles together failed (%s); settling each alone", len(ready), exc)
        return settled + [self._settle_alone(e, matcher) for e in ready]

    def _settle_in(self, tx: ArticleBatch, e: Extracted, matcher: TopicMatcher, now: datetime) -> Settled:
        if e.failure is not None or e.extracted is None:
            raise MonitorError(e.failure or "no content")
        _, matches = self.settle(
            e.item, e.extracted, matcher, fetch_error=e.fetch_error, now=now, batch=tx, keys=e.keys
        )
        return Settled(e.item.id, e.extracted.source, len(matches))

    def _settle_alone(self, e: Extracted, matcher: TopicMatcher) -> Settled:
        """One article in its own transaction; a failure is recorded on it, its extraction kept for the
        retry, and it is retried after ARTICLE_RETRY_FIRST, doubling with each attempt."""
        try:
            with self.storage.article_batch() as tx:
                return _counted(self._settle_in(tx, e, matcher, self.clock()))
        except StorageError:
            raise
        except Exception as exc:  # one article's failure is recorded on it; the stream goes on
            reason = str(exc) if isinstance(exc, MonitorError) else f"{type(exc).__name__}: {exc}"
            retry = self.clock() + ARTICLE_RETRY_FIRST * (1 << min(e.item.attempts, 10))
            with self.storage.article_batch() as tx:
                if e.extracted is not None:
                    tx.checkpoint(e.item.id, e.extracted, fetch_error=e.fetch_error)
                tx.record_error(e.item.id, error=reason, retry_at=retry)
            log.error(
                "article failed: %s",
                reason,
                extra={"url": e.item.url},
                exc_info=not isinstance(exc, MonitorError),
            )
            return _counted(Settled(e.item.id, "error"))

    def settle(
        self,
        item: ArticleToProcess,
        extracted: ExtractedArticle,
        matcher: TopicMatcher,
        *,
        fetch_error: str | None,
        now: datetime,
        batch: ArticleBatch,
        keys: TextKeys | None = None,
    ) -> tuple[int, list[TopicMatch]]:
        """An extracted article's last stages, in ``batch``'s transaction: strip its site's chrome → find
        its story → match → store it with its story and hits. Returns the story id and the hits. ``keys``:
        the text's keys as extracted, if the worker made them (the fingerprint is made again only if the
        site's chrome was stripped)."""
        with STAGE_SECONDS.labels("dedup").time():
            keys = keys or text_keys(extracted)
            lines = keys.lines
            cleaned = self._without_chrome(batch, extracted, site_of(item.url), lines)
            fingerprint = keys.fingerprint if cleaned is extracted else fingerprint_of(cleaned)
            extracted = cleaned
            story = self.story_of(batch, item.id, item.url, fingerprint)
        with STAGE_SECONDS.labels("match").time():
            matches = matcher.match(extracted, url=item.url, feed=item.feed_name)
        with STAGE_SECONDS.labels("store").time():
            saved = batch.save_article(
                item.id,
                extracted=extracted,
                matches=matches,
                fetch_error=fetch_error,
                now=now,
                fingerprint=fingerprint,
                story_id=story,
                lines=lines,
            )
            for earlier in batch.archived_by_id(saved.recleaned):  # they lost chrome lines just learned
                found = matcher.match(earlier.extracted, url=earlier.url, feed=earlier.feed)
                batch.rematch(earlier.id, found, now)
        for match in matches:
            log.info("hit", extra={"url": item.url, "topic": match.topic_id, "score": match.score})
        return saved.story_id, matches

    @staticmethod
    def _without_chrome(
        batch: ArticleBatch, article: ExtractedArticle, site: str, lines: dict[str, str]
    ) -> ExtractedArticle:
        """The article without the lines its site repeats around every article."""
        chrome = chrome_keys(batch.lines_seen(site, lines))
        return replace(article, text=strip_lines(article.text, chrome)) if chrome else article

    @staticmethod
    def story_of(
        batch: ArticleBatch, article_id: int, url: str, fingerprint: dedup.Fingerprint
    ) -> int | None:
        """The stored story this article is a copy of: the same text, else a near-duplicate (see
        :func:`dedup.find_story`). None: it starts a story of its own."""
        exact, near = batch.copy_candidates(
            fingerprint.content_hash, fingerprint.band_keys, exclude=article_id
        )
        if exact is not None:
            return exact
        return dedup.find_story(fingerprint, near, site=site_of(url), load_texts=batch.article_texts)

    def _current_matcher(self) -> TopicMatcher:
        """The compiled topics, rebuilt only when a topic or an alias was added, removed or changed (which
        is looked at every TOPICS_CHECK_SECONDS, and whenever a stream starts)."""
        if self._matcher is not None and time.monotonic() < self._topics_check_at:
            return self._matcher
        state = self.storage.topics_state()
        if self._matcher is None or state != self._matcher_state:
            # a change between reading the state and the topics only makes the next check rebuild again
            self._matcher = TopicMatcher(self.storage.topics(), self.storage.aliases())
            self._matcher_state = state
        self._topics_check_at = time.monotonic() + TOPICS_CHECK_SECONDS
        return self._matcher

    async def _feed_failed(self, feed: FeedForPoll, exc: MonitorError, now: datetime) -> PollOutcome:
        """Record the error on the feed; back off exponentially (honouring Retry-After), never give up."""
        FEED_POLLS.labels("error").inc()
        FEED_ERRORS.labels(exc.kind if isinstance(exc, FetchError | FeedParseError) else "other").inc()
        status = exc.status if isinstance(exc, HTTPStatusError) else None
        if status == 410:  # Gone: the publisher says so; polling on would only hammer it
            reason = "410 Gone: the publisher removed this feed; change its url in feeds.yaml to poll again"
            await self._record_poll(FeedFailed(feed.id, now, str(exc), status, now, disabled_reason=reason))
            log.warning("feed disabled: %s", exc, extra={"feed": feed.name, "status": status})
            return PollOutcome(feed.name, "error", error=f"{exc} (feed disabled)")
        delay = feed_backoff(feed.interval, feed.consecutive_errors, exc)
        await self._record_poll(FeedFailed(feed.id, now, str(exc), status, now + delay))
        log.warning("feed failed: %s", exc, extra={"feed": feed.name, "status": status})
        return PollOutcome(feed.name, "error", error=str(exc))


class GroupCommit(Generic[T, R]):
    """Writes that callers await one by one, sent to the database together: a write waits ``linger``
    seconds for company and takes up to ``most`` items. It runs in the event loop's thread: handing small
    writes to a thread cost more in switching between threads than the writes themselves (polls: 0.5 against
    0.2 ms of CPU a feed). If a write fails, its items are written again one by one, so that only the one
    at fault fails (raised to its caller)."""

    def __init__(self, write: Callable[[list[T]], list[R]], *, most: int = 500, linger: float = 0.02) -> None:
        self._write, self._most, self._linger = write, most, linger
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_pending())
        return await done

    async def _write_pending(self) -> None:
        try:
            await asyncio.sleep(self._linger)
            while self._pending:
                batch, self._pending = self._pending[: self._most], self._pending[self._most :]
                try:
                    results = self._write([item for item, _ in batch])
                except Exception:
                    results = None
                if results is not None:
                    for (_, done), result in zip(batch, results, strict=True):
                        if not done.done():  # its caller may have been cancelled meanwhile
                            done.set_result(result)
                    continue
                for item, done in batch:
                    try:
                        [result] = self._write([item])
                    except Exception as exc:
                        if not done.done():
                            done.set_exception(exc)
                    else:
                        if not done.done():
                            done.set_result(result)
        finally:
            self._writer = None


class ArticleStream:
    """The article stages of a running pipeline: discovered articles (read from the database) → fetch and
    extract (``FETCHERS`` at once) → settle (batched), connected by bounded queues.

    Closed (``close``), it ends once every due article has been settled; stopped (``Pipeline.stop``), once
    the articles in hand are; until then it waits for new articles (``wake``) and looks again every
    RESWEEP_SECONDS for failed ones whose retry time has come.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        report: RunReport,
        *,
        progress: Progress | None = None,
        feed_id: int | None = None,
    ) -> None:
        self.pipeline, self.report, self.progress, self.feed_id = pipeline, report, progress, feed_id
        self._to_extract: asyncio.Queue[ArticleToProcess | None] = asyncio.Queue(maxsize=FETCHERS)
        self._to_settle: asyncio.Queue[Extracted | None] = asyncio.Queue(maxsize=SETTLE_QUEUE)
        workers = pipeline.extractor.size if pipeline.extractor is not None else 1
        #: pages in the pool at once: each worker has its next page waiting while it extracts one
        self._extracting = asyncio.Semaphore(EXTRACTING_PER_WORKER * workers)
        #: articles taken from the database and not settled yet
        self._in_hand: set[int] = set()
        self._woken = asyncio.Event()
        self._closed = False
        self._taken = self._settled = 0
        self._failure: StorageError | None = None

    def wake(self) -> None:
        """New articles were recorded: look for them now."""
        self._woken.set()

    def close(self) -> None:
        """No more articles are coming from polls: finish with what is due now."""
        self._closed = True
        self._woken.set()

    async def run(self) -> None:
        """Run the stages until closed and done, or stopped; a database failure that made it stop (the
        articles it could not store stay queued there) is raised at the end."""
        fetchers = [asyncio.create_task(self._extract_articles()) for _ in range(FETCHERS)]
        settler = asyncio.create_task(self._settle_articles())
        self.pipeline._streams.add(self)
        self.pipeline._topics_check_at = 0.0  # topics changed while no stream ran are seen at once
        try:
            await self._discover()
        finally:
            self.pipeline._streams.discard(self)
            for _ in fetchers:
                await self._to_extract.put(None)
            await asyncio.gather(*fetchers)
            await self._to_settle.put(None)
            await settler
        if self._failure is not None:
            raise self._failure

    async def _discover(self) -> None:
        """Put every due article not in hand on the fetch queue, sweeping the database a page at a time;
        then wait to be woken (or for RESWEEP_SECONDS) and sweep again."""
        while not self.pipeline.stopping and self._failure is None:
            closed = self._closed
            self._woken.clear()
            if await self._sweep() or not closed:
                if not self._woken.is_set() and not self._closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._woken.wait(), RESWEEP_SECONDS)
                continue
            return

    async def _sweep(self) -> int:
        """Take every due article not in hand, a page at a time (sites taking turns within a page, so that
        fetchers waiting on one site's limits do not hold up the others); returns how many."""
        taken = 0
        while not self.pipeline.stopping and self._failure is None:
            page = self.pipeline.storage.articles_to_process(
                self.pipeline.clock(), limit=ARTICLE_PAGE, feed_id=self.feed_id, exclude=self._in_hand
            )
            if not page:
                break
            for item in page:
                self._in_hand.add(item.id)
                self._taken += 1
                taken += 1
                await self._to_extract.put(item)
        return taken

    async def _extract_articles(self) -> None:
        while (item := await self._to_extract.get()) is not None:
            if self.pipeline.stopping:  # not started: it stays queued in the database
                self._in_hand.discard(item.id)
                continue
            try:
                extracted = await self.pipeline.extract(item, self._extracting)
            except Exception as exc:  # a broken pool, a bug: recorded on the article by the settle stage
                extracted = Extracted(item, None, failure=f"{type(exc).__name__}: {exc}")
            await self._to_settle.put(extracted)

    async def _settle_articles(self) -> None:
        ended = False
        while not ended:
            first = await self._to_settle.get()
            if first is None:
                return
            batch, ended = await self._gather_batch(first)
            try:
                settled = await asyncio.to_thread(self.pipeline.settle_batch, batch)
            except StorageError as exc:  # the database is out of reach: they stay queued there
                log.error("could not store %d articles, they stay queued: %s", len(batch), exc)
                self._failure = exc
                self._in_hand.difference_update(e.item.id for e in batch)
                continue
            for outcome in settled:
                self._in_hand.discard(outcome.article_id)
                self._count(outcome)

    async def _gather_batch(self, first: Extracted) -> tuple[list[Extracted], bool]:
        """``first`` and the articles extracted within SETTLE_LINGER after it (at most SETTLE_BATCH in
        all), and whether the end of the stream came with them. It waits only while other articles are
        being fetched or extracted: a lone article is settled at once."""
        batch = [first]
        until = asyncio.get_running_loop().time() + SETTLE_LINGER
        while len(batch) < SETTLE_BATCH and not self.pipeline.stopping:
            if self._to_settle.empty():
                if len(self._in_hand) <= len(batch):  # nothing else is on its way
                    break
                wait = until - asyncio.get_running_loop().time()
                if wait <= 0:
                    break
                try:
                    async with asyncio.timeout(wait):  # no task of its own, unlike wait_for
                        more = await self._to_settle.get()
                except TimeoutError:
                    break
            else:
                more = self._to_settle.get_nowait()
            if more is None:
                return batch, True
            batch.append(more)
        return batch, False

    def _count(self, outcome: Settled) -> None:
        self._settled += 1
        self.report.articles += 1
        self.report.hits += outcome.hits
        self.report.from_feed += outcome.source == "feed"
        if self.progress is not None:
            self.progress("articles", self._settled, self._taken)


def _counted(settled: Settled) -> Settled:
    """Count a settled article in the metrics."""
    ARTICLES_PROCESSED.labels(settled.source).inc()
    HITS.inc(settled.hits)
    return settled


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


def parse_entries(
    content: bytes, *, url: str, content_type: str | None
) -> tuple[ParsedFeed, list[NewArticle]]:
    """A fetched feed parsed, and the article each entry is stored as: the CPU work of a poll, done in the
    process pool (feedparser, and canonical URLs through courlan)."""
    parsed = parse_feed(content, url=url, content_type=content_type)
    return parsed, [_new_article(e, url) for e in parsed.entries]


def _new_article(entry: FeedEntry, feed_url: str) -> NewArticle:
    """The canonical URL an entry's article is stored under, and where its page is fetched from. An entry
    without a link has no page: it gets a stable pseudo-URL under its feed, and only its feed text."""
    if entry.url:
        return NewArticle(entry=entry, url=canonical_url(entry.url), page_url=page_url(entry.url))
    pseudo = f"{canonical_url(feed_url)}#entry-{sha256(entry.key.encode()).hexdigest()[:16]}"
    return NewArticle(entry=entry, url=pseudo, page_url=None)
