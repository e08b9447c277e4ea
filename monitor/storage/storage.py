"""The Storage boundary: every read and write the stream, the digests and the CLI make, named by intent.

Each method is one transaction. Database errors come out as ``StorageError``; rows never leave this module,
only the plain values defined here and in ``monitor.types``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from monitor.config import DEFAULT_POLL_INTERVAL, FeedConfig, SubscriptionConfig
from monitor.errors import AlreadyExistsError, NotFoundError, QueryError, StorageError
from monitor.storage.articles import (
    ARTICLES,
    DISCOVERED,
    EXTRACTED,
    FAILED,
    FEEDS,
    MATCHED,
    ArchivedArticle,
    ArticleBatch,
    SavedArticle,
    representative_rank,
)
from monitor.storage.models import (
    Alias,
    Article,
    ArticleBand,
    ArticleFingerprint,
    Delivery,
    Digest,
    DigestItem,
    Feed,
    Hit,
    SiteLine,
    Story,
    Subscription,
    Topic,
    UTCDateTime,
)
from monitor.storage.polls import PollResult, record_polls
from monitor.types import ArticleToProcess, Clock, ExtractedArticle, FeedEntry, FeedForPoll, TopicMatch

#: an article whose content was pruned: kept as a row so its feed entries are not discovered again
PRUNED = "pruned"
UNFINISHED = (DISCOVERED, EXTRACTED, FAILED)
MAX_ARTICLE_ATTEMPTS = 5
#: what ``articles_to_process`` reads of an article
_TO_PROCESS_COLUMNS = (
    "id",
    "url",
    "page_url",
    "attempts",
    "state",
    "last_error",
    "title",
    "feed_summary",
    "author",
    "published_at",
    "text",
    "text_source",
    "site_name",
    "language",
    "page_published_at",
)
#: how many of the oldest due articles take turns by site (see ``Storage.articles_to_process``)
TURN_WINDOW = 2000
#: digest states: stored with its message and being sent (or retried), sent, or empty (nothing to send)
DIGEST_SENDING, DIGEST_SENT, DIGEST_EMPTY = "sending", "sent", "empty"
#: digests that carry their hits: the subscription's next window starts after them
DIGEST_CARRYING = (DIGEST_SENDING, DIGEST_SENT, DIGEST_EMPTY)
#: what a digest row is: a daily or weekly digest, or an alert of one topic as it happens
KIND_DIGEST, KIND_ALERT = "digest", "alert"
#: delivery states: in the outbox (never taken yet, or failed and waiting for its next attempt), or sent
DELIVERY_PENDING, DELIVERY_SENT = "pending", "sent"


_TOPICS: sa.Table = Topic.__table__  # type: ignore[attr-defined]
_ALIASES: sa.Table = Alias.__table__  # type: ignore[attr-defined]
_TOPIC_ROWS = sa.select(*(sa.cast(column, sa.Text) for column in _TOPICS.c))
_ALIAS_ROWS = sa.select(_ALIASES.c.name, _ALIASES.c.query)
#: what the poll stage needs of each feed that may be polled, in FeedForPoll's order (intervals in seconds)
_FOR_POLL = sa.select(
    FEEDS.c.id,
    FEEDS.c.name,
    FEEDS.c.url,
    FEEDS.c.etag,
    FEEDS.c.last_modified,
    FEEDS.c.interval_seconds,
    FEEDS.c.consecutive_errors,
    FEEDS.c.min_interval_seconds,
    FEEDS.c.max_interval_seconds,
).where(FEEDS.c.active, FEEDS.c.disabled_reason.is_(None))


def _feed_for_poll(row: Any) -> FeedForPoll:
    return FeedForPoll(
        id=row.id,
        name=row.name,
        url=row.url,
        etag=row.etag,
        last_modified=row.last_modified,
        interval=timedelta(seconds=row.interval_seconds),
        consecutive_errors=row.consecutive_errors,
        min_interval=timedelta(seconds=row.min_interval_seconds),
        max_interval=timedelta(seconds=row.max_interval_seconds),
    )


def _representative_rank(article: Article) -> tuple[bool, datetime]:
    return representative_rank(article.text_source, article.published_at or article.discovered_at)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as the matcher needs it."""

    id: int
    name: str
    query: str
    min_score: float
    version: int
    created_at: datetime
    updated_at: datetime
    languages: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredHit:
    id: int
    score: float
    #: a sent digest carried it
    delivered: bool


@dataclass(frozen=True, slots=True)
class OutboxDelivery:
    """One channel's delivery of a digest or alert that no server has confirmed yet."""

    id: int
    digest_id: int
    subscription: str
    #: "digest" or "alert"
    kind: str
    topic: str | None
    #: "email" or "webhook"
    channel: str
    #: exactly what is sent: the RFC 5322 message or the JSON body
    payload: str
    message_id: str | None
    hit_count: int
    attempts: int
    error: str | None
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class DigestRecord:
    """A digest as recorded: what it covered and how its delivery went."""

    #: "sending" (in the outbox, see attempts/error/next_attempt_at), "sent" or "empty"
    status: str
    window_start: datetime
    window_end: datetime
    hits: int
    sent_at: datetime | None
    #: of its channels still in the outbox: the most failed attempts, the last error, the next attempt
    attempts: int
    error: str | None
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class PublishedDigest:
    """A digest or alert with its content, as the Atom feed and the JSON export show it."""

    id: int
    kind: str
    topic: str | None
    status: str
    created_at: datetime
    #: the JSON document (see monitor.digest.document)
    document: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A stored article found by full-text search, best first."""

    article_id: int
    url: str
    title: str
    feed: str
    published_at: datetime | None
    story_id: int | None
    #: where the words occur, marked «like this»
    snippet: str


@dataclass(slots=True)
class PruneReport:
    """What pruning removed (or, in a dry run, would remove)."""

    articles: int = 0
    hits: int = 0
    stories_removed: int = 0
    stories_reassigned: int = 0
    site_lines: int = 0
    #: old articles kept because a digest still owes one of their hits
    kept_owed: int = 0
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class UnfinishedArticle:
    """An article not matched yet: waiting, or failed with why and when it is tried again."""

    id: int
    url: str
    feed: str
    state: str
    attempts: int
    error: str | None
    #: None once it has failed MAX_ARTICLE_ATTEMPTS times: it is no longer retried
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """A feed's polling state, for `monitor feeds list`."""

    name: str
    url: str
    active: bool
    title: str | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_status: int | None
    consecutive_errors: int
    failing_since: datetime | None
    last_error: str | None
    next_poll_at: datetime
    articles: int
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class HitView:
    """A stored hit with its article, for listing and digests."""

    id: int
    topic: str
    article_id: int
    #: the page's URL (or the canonical URL of an entry without a page)
    url: str
    title: str
    source: str
    published: datetime | None
    score: float
    matched: list[str]
    snippet: str
    text_source: str | None
    created_at: datetime
    explanation: list[dict[str, Any]]
    topic_version: int
    story_id: int | None = None
    #: the original publication date when the article is a stale repost
    republished_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoryCopy:
    """One copy of a story: where it appeared."""

    article_id: int
    title: str
    source: str
    url: str
    published: datetime | None
    republished_from: datetime | None


@dataclass(frozen=True, slots=True)
class StoryView:
    """A story: its representative copy first, then the others, oldest first; and the topics it hit."""

    id: int
    title: str
    first_published: datetime | None
    copies: list[StoryCopy]
    topics: list[str]


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Database failures as one StorageError, with the first line of the driver's message."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"database error: {str(exc).splitlines()[0]}") from exc


#: the PostgreSQL advisory lock key of the hit fence ("moni")
HIT_FENCE_KEY = 0x6D6F6E69


def _hit_fence(conn: sa.Connection, *, exclusive: bool) -> None:
    """Order the stamping of hits against the digests that read them, across threads and processes.

    A transaction that stores hits takes the fence shared before it reads the clock for their stamp and
    holds it until it commits; a digest takes it exclusively before it reads the hits stamped up to its
    time. So the digest waits for every transaction that may have stamped a hit at or before that time
    and then sees all of them: a hit's stamp says which digest carries it. (Without the fence, a batch
    stamped before a digest and committed after it left its hits to the next digest, outside their window.)
    PostgreSQL: an advisory transaction lock. SQLite: its one write lock, taken by BEGIN IMMEDIATE, which
    must be the transaction's first statement.
    """
    if conn.dialect.name == "postgresql":
        lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.execute(sa.text(f"SELECT {lock}(:key)"), {"key": HIT_FENCE_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Storage:
    """All database access of monitor."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with _storage_errors(), Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A plain connection in a transaction, for the stream's batched writes (Core statements)."""
        with _storage_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A plain connection for hot read-only lookups, without the ORM session's bookkeeping."""
        with _storage_errors(), self.engine.connect() as conn:
            yield conn

    # -- feeds ---------------------------------------------------------------------------------------

    def sync_feeds(self, feeds: Sequence[FeedConfig], now: datetime) -> None:
        """Make the feeds table follow feeds.yaml: add new, update changed, deactivate removed feeds."""
        wanted = {f.name: f for f in feeds}
        with self._session() as session:
            existing = {f.name: f for f in session.exec(select(Feed)).all()}
            for name, config in wanted.items():
                row = existing.get(name)
                shortest, longest = (int(b.total_seconds()) for b in config.interval_bounds)
                if row is None:
                    session.add(
                        Feed(
                            name=name,
                            url=config.url,
                            interval_seconds=min(
                                max(int(DEFAULT_POLL_INTERVAL.total_seconds()), shortest), longest
                            ),
                            min_interval_seconds=shortest,
                            max_interval_seconds=longest,
                            tags=list(config.tags),
                            next_poll_at=now,
                            created_at=now,
                        )
                    )
                    continue
                if row.url != config.url:  # a new address: polled afresh, even if the old one was gone
                    row.url, row.etag, row.last_modified, row.next_poll_at = config.url, None, None, now
                    row.disabled_reason = None
                row.interval_seconds = min(max(row.interval_seconds, shortest), longest)
                row.min_interval_seconds, row.max_interval_seconds = shortest, longest
                row.tags, row.active = list(config.tags), True
                session.add(row)
            for name, row in existing.items():
                if name not in wanted and row.active:
                    row.active = False
                    session.add(row)

    def feeds_due(self, now: datetime, *, name: str | None = None) -> list[FeedForPoll]:
        """Active feeds whose next poll time has come, soonest first (or the one named, due or not)."""
        query = _FOR_POLL
        if name is not None:
            query = query.where(FEEDS.c.name == name)
        else:
            query = query.where(FEEDS.c.next_poll_at <= now).order_by(FEEDS.c.next_poll_at)
        with self._read() as conn:
            feeds = [_feed_for_poll(row) for row in conn.execute(query)]
        if name is not None and not feeds:
            raise NotFoundError("feed", name)
        return feeds

    def all_feeds_for_poll(self) -> list[FeedForPoll]:
        with self._read() as conn:
            rows = conn.execute(_FOR_POLL.order_by(FEEDS.c.name))
            return [_feed_for_poll(row) for row in rows]

    def record_polls(self, results: Sequence[PollResult]) -> list[int]:
        """Record polls in one transaction (see ``monitor.storage.polls``); returns, for each, how many of
        its entries were new to its feed."""
        with self._write() as conn:
            return record_polls(conn, results)

    def feed_statuses(self) -> list[FeedStatus]:
        counts = select(Article.feed_id, sa.func.count().label("n")).group_by(col(Article.feed_id)).subquery()
        query = (
            select(Feed, counts.c.n)
            .outerjoin(counts, counts.c.feed_id == Feed.id)
            .order_by(col(Feed.active).desc(), col(Feed.name))
        )
        with self._session() as session:
            return [
                FeedStatus(
                    name=f.name,
                    url=f.url,
                    active=f.active,
                    title=f.title,
                    last_polled_at=f.last_polled_at,
                    last_success_at=f.last_success_at,
                    last_status=f.last_status,
                    consecutive_errors=f.consecutive_errors,
                    failing_since=f.failing_since,
                    last_error=f.last_error,
                    next_poll_at=f.next_poll_at,
                    articles=n or 0,
                    disabled_reason=f.disabled_reason,
                )
                for f, n in session.exec(query).all()
            ]

    @staticmethod
    def _article(session: Session, article_id: int) -> Article:
        article = session.get(Article, article_id)
        if article is None:
            raise NotFoundError("article", str(article_id))
        return article

    @staticmethod
    def _feed(session: Session, feed_id: int) -> Feed:
        feed = session.get(Feed, feed_id)
        if feed is None:
            raise NotFoundError("feed", str(feed_id))
        return feed

    # -- articles ------------------------------------------------------------------------------------

    def articles_to_process(
        self,
        now: datetime,
        *,
        limit: int = 500,
        feed_id: int | None = None,
        exclude: Collection[int] = (),
    ) -> list[ArticleToProcess]:
        """Unfinished articles due for (another) attempt (but those in ``exclude``): how a crash or failure
        resumes. Among the oldest TURN_WINDOW, sites take turns: each site's oldest first, then each site's
        second oldest, and so on, so that one site's backlog does not keep the others waiting behind its
        politeness limits. An article whose extraction was stored comes with it, to be matched without
        fetching again."""
        due = [
            col(Article.state).in_(UNFINISHED),
            col(Article.next_attempt_at) <= now,
            col(Article.attempts) < MAX_ARTICLE_ATTEMPTS,
        ]
        if feed_id is not None:
            due.append(col(Article.feed_id) == feed_id)
        if exclude:
            due.append(col(Article.id).not_in(list(exclude)))
        oldest = (
            select(col(Article.id).label("id"), col(Article.site).label("site"))
            .where(*due)
            .order_by(col(Article.id))
            .limit(max(limit, TURN_WINDOW))
            .subquery()
        )
        turn = sa.func.row_number().over(partition_by=oldest.c.site, order_by=oldest.c.id)
        turns = select(oldest.c.id, turn.label("turn")).subquery()
        a = ARTICLES.c
        query = (  # columns, not Article objects: building those cost more than the query
            sa.select(*(a[name] for name in _TO_PROCESS_COLUMNS), FEEDS.c.name.label("feed_name"))
            .join(turns, turns.c.id == a.id)
            .join(FEEDS, FEEDS.c.id == a.feed_id)
            .order_by(turns.c.turn, a.id)
            .limit(limit)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [self._to_process(row) for row in rows]

    @staticmethod
    def _to_process(a: Any) -> ArticleToProcess:  # a row of _TO_PROCESS_COLUMNS and the feed_name
        extracted = None
        if a.text is not None:
            extracted = ExtractedArticle(
                title=a.title,
                text=a.text,
                author=a.author,
                site_name=a.site_name,
                language=a.language,
                published=a.page_published_at,
                source="feed" if a.text_source == "feed" else "page",
            )
        return ArticleToProcess(
            id=a.id or 0,
            url=a.url,
            page_url=a.page_url,
            feed_name=a.feed_name,
            attempts=a.attempts,
            entry=FeedEntry(
                key=a.url,
                url=a.url,
                title=a.title,
                summary=a.feed_summary,
                author=a.author,
                published=a.published_at,
            ),
            extracted=extracted,
            fetch_error=a.last_error if a.state == EXTRACTED else None,
        )

    @contextmanager
    def article_batch(self) -> Iterator[ArticleBatch]:
        """One transaction for settling many articles (see ``ArticleBatch``): committed when the block
        ends, rolled back whole if it raises. It holds the hit fence (``_hit_fence``): read the clock for
        the hits' stamp inside the block."""
        with self._write() as conn:
            _hit_fence(conn, exclusive=False)
            yield ArticleBatch(conn)

    def save_article(self, article_id: int, **details: Any) -> SavedArticle:
        """``ArticleBatch.save_article`` in a transaction of its own."""
        with self.article_batch() as batch:
            return batch.save_article(article_id, **details)

    def article_texts(self, article_ids: Sequence[int]) -> dict[int, str]:
        """Title and text of articles, as their fingerprints were taken."""
        with self._read() as conn:
            return ArticleBatch(conn).article_texts(article_ids)

    def archived_by_id(self, article_ids: Sequence[int]) -> list[ArchivedArticle]:
        with self._read() as conn:
            return ArticleBatch(conn).archived_by_id(article_ids)

    def unfinished_articles(self, *, limit: int = 100) -> list[UnfinishedArticle]:
        """Articles not matched yet, failed ones first, then oldest first."""
        query = (
            select(Article, Feed.name)
            .join(Feed, col(Feed.id) == Article.feed_id)
            .where(col(Article.state).in_(UNFINISHED))
            .order_by(sa.case((col(Article.state) == FAILED, 0), else_=1), col(Article.id))
            .limit(limit)
        )
        with self._session() as session:
            return [
                UnfinishedArticle(
                    id=a.id or 0,
                    url=a.url,
                    feed=feed,
                    state=a.state,
                    attempts=a.attempts,
                    error=a.last_error if a.state == FAILED else None,
                    next_attempt_at=a.next_attempt_at if a.attempts < MAX_ARTICLE_ATTEMPTS else None,
                )
                for a, feed in session.exec(query).all()
            ]

    def search(self, query: str, *, limit: int = 20, since: datetime | None = None) -> list[SearchResult]:
        """Stored articles matching a web-search style query (words, "phrases", OR, -word, prefix*),
        ranked with title matches first, with a snippet. SQLite uses FTS5, PostgreSQL a tsvector index."""
        terms = _search_terms(query)
        recent = "" if since is None else " AND a.discovered_at >= :since"
        with self._read() as conn:
            if conn.dialect.name == "sqlite":
                sql = sa.text(
                    "SELECT a.id, a.url, a.title, f.name, a.published_at, a.story_id,"
                    " snippet(articles_fts, 1, '«', '»', ' … ', 24) AS snippet"
                    " FROM articles_fts JOIN articles a ON a.id = articles_fts.rowid"
                    " JOIN feeds f ON f.id = a.feed_id"
                    f" WHERE articles_fts MATCH :q{recent}"
                    " ORDER BY bm25(articles_fts, 10.0, 1.0) LIMIT :limit"
                )
                params: dict[str, Any] = {"q": _fts5_query(terms)}
            else:
                sql = sa.text(
                    "SELECT a.id, a.url, a.title, f.name, a.published_at, a.story_id,"
                    " ts_headline('simple', coalesce(a.text, a.feed_summary), q,"
                    " 'StartSel=«, StopSel=», MaxFragments=2, MaxWords=24, MinWords=8') AS snippet"
                    " FROM articles a JOIN feeds f ON f.id = a.feed_id,"
                    " to_tsquery('simple', :q) AS q"
                    f" WHERE a.search_vector @@ q{recent}"
                    " ORDER BY ts_rank_cd('{0, 0, 0.1, 1}', a.search_vector, q, 1) DESC, a.id DESC"
                    " LIMIT :limit"
                )
                params = {"q": _tsquery(terms)}
            if since is not None:
                sql = sql.bindparams(sa.bindparam("since", type_=UTCDateTime()))
            typed = sql.columns(
                *(sa.column(c) for c in ("id", "url", "title", "name")),
                sa.column("published_at", UTCDateTime()),
                *(sa.column(c) for c in ("story_id", "snippet")),
            )
            try:
                rows = conn.execute(
                    typed, {**params, "limit": limit, **({"since": since} if since else {})}
                ).all()
            except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:  # syntax let through
                raise QueryError(query, 1, f"cannot search for this: {exc.orig}") from None
        return [
            SearchResult(
                article_id=row[0],
                url=row[1],
                title=row[2],
                feed=row[3],
                published_at=row[4],
                story_id=row[5],
                snippet=" ".join((row[6] or "").split()),
            )
            for row in rows
        ]

    def prune(
        self, *, before: datetime, owed_hit_ids: Collection[int], dry_run: bool = False, batch: int = 500
    ) -> PruneReport:
        """Remove what is stored about articles discovered before ``before`` (matched, or failed for good),
        except those with a hit in ``owed_hit_ids`` (hits an undelivered digest still needs): their text,
        hits, fingerprints and story membership. The article row stays, as ``pruned`` with its URL and
        title, so a feed that still lists it does not bring it back as new. A story keeps its remaining
        copies (the best becomes its representative) or goes when none remain. Lines of site chrome seen in
        one article only, before ``before``, go too. Batched, one transaction each; a dry run rolls back."""
        report = PruneReport(dry_run=dry_run)
        with self._session() as session:  # hits of a digest still being sent are owed as well
            owed = set(owed_hit_ids) | set(
                session.exec(
                    select(DigestItem.hit_id)
                    .join(Digest, col(Digest.id) == DigestItem.digest_id)
                    .where(Digest.status == DIGEST_SENDING)
                ).all()
            )
        prunable = sa.and_(
            col(Article.discovered_at) < before,
            sa.or_(
                col(Article.state) == MATCHED,
                sa.and_(col(Article.state) == FAILED, col(Article.attempts) >= MAX_ARTICLE_ATTEMPTS),
            ),
        )
        last_id = 0
        while True:
            with self._session() as session:
                batch_ids = session.exec(
                    select(Article.id)
                    .where(prunable, col(Article.id) > last_id)
                    .order_by(col(Article.id))
                    .limit(batch)
                ).all()
                if not batch_ids:
                    break
                last_id = batch_ids[-1] or 0
                hits_of: dict[int, list[int]] = {a or 0: [] for a in batch_ids}
                for hit_id, article_id in session.exec(
                    select(Hit.id, Hit.article_id).where(col(Hit.article_id).in_(batch_ids))
                ).all():
                    hits_of[article_id].append(hit_id or 0)
                kept = {a for a, hits in hits_of.items() if owed.intersection(hits)}
                report.kept_owed += len(kept)
                ids = [a for a in hits_of if a not in kept]
                self._prune_articles(session, ids, [h for a in ids for h in hits_of[a]], report)
                if dry_run:
                    session.rollback()
        with self._session() as session:
            lines = sa.delete(SiteLine).where(
                col(SiteLine.articles) <= 1, col(SiteLine.first_seen_at) < before
            )
            report.site_lines = session.execute(lines).rowcount  # type: ignore[attr-defined]
            if dry_run:
                session.rollback()
        return report

    @staticmethod
    def _prune_articles(session: Session, ids: list[int], hit_ids: list[int], report: PruneReport) -> None:
        if not ids:
            return
        if hit_ids:
            session.execute(sa.delete(DigestItem).where(col(DigestItem.hit_id).in_(hit_ids)))
            session.execute(sa.delete(Hit).where(col(Hit.id).in_(hit_ids)))
        session.execute(sa.delete(ArticleBand).where(col(ArticleBand.article_id).in_(ids)))
        session.execute(sa.delete(ArticleFingerprint).where(col(ArticleFingerprint.article_id).in_(ids)))
        stories = set(
            session.exec(
                select(Article.story_id).where(col(Article.id).in_(ids), col(Article.story_id).is_not(None))
            ).all()
        )
        session.execute(
            sa.update(Article)
            .where(col(Article.id).in_(ids))
            .values(state=PRUNED, text=None, feed_summary="", story_id=None, content_hash=None)
        )
        for story_id in stories:
            story = session.get(Story, story_id)
            if story is None:
                continue
            remaining = session.exec(select(Article).where(Article.story_id == story_id)).all()
            if not remaining:
                session.delete(story)
                report.stories_removed += 1
            elif story.representative_id in ids:
                story.representative_id = min(remaining, key=_representative_rank).id or 0
                session.add(story)
                report.stories_reassigned += 1
        report.articles += len(ids)
        report.hits += len(hit_ids)

    def article_count(self) -> dict[str, int]:
        with self._session() as session:
            rows = session.exec(select(Article.state, sa.func.count()).group_by(col(Article.state))).all()
        return dict(rows)

    # -- topics --------------------------------------------------------------------------------------

    def add_topic(
        self,
        name: str,
        query: str,
        min_score: float,
        now: datetime,
        *,
        languages: Sequence[str] = (),
        feeds: Sequence[str] = (),
        sites: Sequence[str] = (),
    ) -> TopicSpec:
        with self._session() as session:
            if session.exec(select(Topic).where(Topic.name == name)).first() is not None:
                raise AlreadyExistsError("topic", name)
            topic = Topic(
                name=name,
                query=query,
                min_score=min_score,
                languages=list(languages),
                feeds=list(feeds),
                sites=list(sites),
                created_at=now,
                updated_at=now,
            )
            session.add(topic)
            session.flush()
            return self._topic_spec(topic)

    def edit_topic(
        self,
        name: str,
        now: datetime,
        *,
        query: str | None = None,
        min_score: float | None = None,
        languages: Sequence[str] | None = None,
        feeds: Sequence[str] | None = None,
        sites: Sequence[str] | None = None,
    ) -> TopicSpec:
        """Change a topic; any change bumps its version, which the hits it produces from now on record."""
        with self._session() as session:
            topic = self._topic(session, name)
            before = self._topic_spec(topic)
            if query is not None:
                topic.query = query
            if min_score is not None:
                topic.min_score = min_score
            for field, value in (("languages", languages), ("feeds", feeds), ("sites", sites)):
                if value is not None:
                    setattr(topic, field, list(value))
            if self._topic_spec(topic) != before:
                topic.version += 1
                topic.updated_at = now
            session.add(topic)
            return self._topic_spec(topic)

    def bump_topic_versions(self, names: Sequence[str], now: datetime) -> None:
        """Mark topics changed (an alias they use was redefined)."""
        with self._session() as session:
            for topic in session.exec(select(Topic).where(col(Topic.name).in_(list(names)))).all():
                topic.version += 1
                topic.updated_at = now
                session.add(topic)

    # -- aliases -------------------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """Every alias: name → query text."""
        with self._session() as session:
            return {a.name: a.query for a in session.exec(select(Alias).order_by(col(Alias.name))).all()}

    def set_alias(self, name: str, query: str, now: datetime) -> bool:
        """Define or redefine an alias; returns True when it is new."""
        with self._session() as session:
            alias = session.exec(select(Alias).where(Alias.name == name)).first()
            created = alias is None
            if alias is None:
                alias = Alias(name=name, query=query, created_at=now, updated_at=now)
            else:
                alias.query, alias.updated_at = query, now
            session.add(alias)
            return created

    def remove_alias(self, name: str) -> None:
        with self._session() as session:
            alias = session.exec(select(Alias).where(Alias.name == name)).first()
            if alias is None:
                raise NotFoundError("alias", name)
            session.delete(alias)

    def remove_topic(self, name: str) -> None:
        """Delete a topic and its hits (and their places in past digests)."""
        with self._session() as session:
            topic = self._topic(session, name)
            hit_ids = select(Hit.id).where(Hit.topic_id == topic.id)
            session.execute(sa.delete(DigestItem).where(col(DigestItem.hit_id).in_(hit_ids)))
            session.execute(sa.delete(Hit).where(col(Hit.topic_id) == topic.id))
            session.delete(topic)

    def get_topic(self, name: str) -> TopicSpec:
        with self._session() as session:
            return self._topic_spec(self._topic(session, name))

    def topics(self) -> list[TopicSpec]:
        with self._session() as session:
            return [self._topic_spec(t) for t in session.exec(select(Topic).order_by(col(Topic.name))).all()]

    def topics_state(self) -> tuple[tuple[str | None, ...], ...]:
        """Every topic and alias, each row's columns as text: equal until one is added, changed or removed.
        The running stream asks every few seconds whether its compiled topics are current; reading 10,000
        topics this way takes 28 ms of CPU, as TopicSpecs through the ORM 234 ms."""
        with self._read() as conn:
            rows: list[tuple[str | None, ...]] = [("topic", *r) for r in conn.execute(_TOPIC_ROWS)]
            rows += [("alias", *r) for r in conn.execute(_ALIAS_ROWS)]
        return tuple(sorted(rows))  # sorted here: databases collate text differently

    def topic_hit_counts(self) -> dict[str, int]:
        query = select(Topic.name, sa.func.count(col(Hit.id))).outerjoin(Hit).group_by(col(Topic.name))
        with self._session() as session:
            return dict(session.exec(query).all())

    @staticmethod
    def _topic(session: Session, name: str) -> Topic:
        topic = session.exec(select(Topic).where(Topic.name == name)).first()
        if topic is None:
            raise NotFoundError("topic", name)
        return topic

    @staticmethod
    def _topic_spec(t: Topic) -> TopicSpec:
        return TopicSpec(
            id=t.id or 0,
            name=t.name,
            query=t.query,
            min_score=t.min_score,
            version=t.version,
            created_at=t.created_at,
            updated_at=t.updated_at,
            languages=tuple(t.languages),
            feeds=tuple(t.feeds),
            sites=tuple(t.sites),
        )

    # -- hits ----------------------------------------------------------------------------------------

    def hits(
        self, *, topic: str | None = None, since: datetime | None = None, limit: int = 1000
    ) -> list[HitView]:
        """Stored hits, newest first."""
        query = (
            self._hit_query()
            .order_by(col(Hit.created_at).desc(), col(Hit.score).desc(), col(Hit.id).desc())
            .limit(limit)
        )
        if topic is not None:
            query = query.where(Topic.name == topic)
        if since is not None:
            query = query.where(col(Hit.created_at) >= since)
        with self._session() as session:
            if topic is not None:
                self._topic(session, topic)
            return [self._hit_view(*row) for row in session.exec(query).all()]

    @staticmethod
    def _hit_query() -> Any:
        return (
            select(Hit, Topic.name, Article, Feed.name)
            .join(Topic, col(Topic.id) == Hit.topic_id)
            .join(Article, col(Article.id) == Hit.article_id)
            .join(Feed, col(Feed.id) == Article.feed_id)
        )

    @staticmethod
    def _hit_view(hit: Hit, topic: str, article: Article, feed_name: str) -> HitView:
        return HitView(
            id=hit.id or 0,
            topic=topic,
            article_id=article.id or 0,
            url=article.page_url or article.url,
            title=article.title,
            source=article.site_name or feed_name,
            published=article.published_at,
            score=hit.score,
            matched=list(hit.matched),
            snippet=hit.snippet,
            text_source=article.text_source,
            created_at=hit.created_at,
            explanation=list(hit.explanation),
            topic_version=hit.topic_version,
            story_id=article.story_id,
            republished_from=article.republished_from,
        )

    def get_hit(self, hit_id: int) -> HitView:
        with self._session() as session:
            row = session.exec(self._hit_query().where(Hit.id == hit_id)).first()
            if row is None:
                raise NotFoundError("hit", str(hit_id))
            return self._hit_view(*row)

    # -- stories -------------------------------------------------------------------------------------

    def story_copies(self, story_ids: Collection[int]) -> dict[int, list[StoryCopy]]:
        """Every copy of each story, its representative first, then by publication date."""
        if not story_ids:
            return {}
        query = (
            select(Article, Feed.name, Story.representative_id)
            .join(Feed, col(Feed.id) == Article.feed_id)
            .join(Story, col(Story.id) == Article.story_id)
            .where(col(Article.story_id).in_(list(story_ids)))
        )
        copies: dict[int, list[tuple[bool, datetime, StoryCopy]]] = {}
        with self._session() as session:
            for article, feed_name, representative in session.exec(query).all():
                copy = StoryCopy(
                    article_id=article.id or 0,
                    title=article.title,
                    source=article.site_name or feed_name,
                    url=article.page_url or article.url,
                    published=article.published_at,
                    republished_from=article.republished_from,
                )
                rank = (article.id != representative, article.published_at or article.discovered_at)
                copies.setdefault(article.story_id or 0, []).append((*rank, copy))
        return {story: [c for *_, c in sorted(found, key=lambda x: x[:2])] for story, found in copies.items()}

    def stories(
        self, *, topic: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[StoryView]:
        """Stories with at least one hit (of ``topic``, if given), newest first."""
        query = (
            select(Story.id, sa.func.min(Hit.created_at))
            .join(Article, col(Article.story_id) == Story.id)
            .join(Hit, col(Hit.article_id) == Article.id)
            .join(Topic, col(Topic.id) == Hit.topic_id)
            .group_by(col(Story.id))
            .order_by(sa.func.min(Hit.created_at).desc(), col(Story.id).desc())
        )
        with self._session() as session:
            if topic is not None:
                self._topic(session, topic)
                query = query.where(Topic.name == topic)
            if since is not None:
                query = query.having(sa.func.min(Hit.created_at) >= since)
            if limit is not None:
                query = query.limit(limit)
            found = [story_id or 0 for story_id, _ in session.exec(query).all()]
        return self._story_views(found)

    def get_story(self, story_id: int) -> StoryView:
        with self._session() as session:
            if session.get(Story, story_id) is None:
                raise NotFoundError("story", str(story_id))
        return self._story_views([story_id])[0]

    def _story_views(self, ids: Sequence[int]) -> list[StoryView]:
        copies = self.story_copies(ids)
        query = (
            select(Article.story_id, Topic.name)
            .join(Hit, col(Hit.article_id) == Article.id)
            .join(Topic, col(Topic.id) == Hit.topic_id)
            .where(col(Article.story_id).in_(ids))
            .distinct()
        )
        with self._session() as session:
            topics: dict[int, list[str]] = {}
            for story_id, name in session.exec(query).all():
                topics.setdefault(story_id or 0, []).append(name)
            firsts = dict(
                session.exec(select(Story.id, Story.first_published_at).where(col(Story.id).in_(ids))).all()
            )
        return [
            StoryView(
                id=story_id,
                title=copies[story_id][0].title if copies.get(story_id) else "",
                first_published=firsts.get(story_id),
                copies=copies.get(story_id, []),
                topics=sorted(topics.get(story_id, [])),
            )
            for story_id in ids
        ]

    # -- backtests -----------------------------------------------------------------------------------

    def count_archived_articles(self, since: datetime | None) -> int:
        query = select(sa.func.count()).select_from(Article).where(Article.state == MATCHED)
        if since is not None:
            query = query.where(col(Article.discovered_at) >= since)
        with self._session() as session:
            return int(session.exec(query).one())

    def archived_articles(
        self, since: datetime | None, *, batch: int = 500
    ) -> Iterator[list[ArchivedArticle]]:
        """Processed articles (discovered at or after ``since``), in batches of plain values, oldest first."""
        last_id = 0
        while True:
            query = (
                select(Article, Feed.name)
                .join(Feed, col(Feed.id) == Article.feed_id)
                .where(Article.state == MATCHED, col(Article.id) > last_id)
                .order_by(col(Article.id))
                .limit(batch)
            )
            if since is not None:
                query = query.where(col(Article.discovered_at) >= since)
            with self._session() as session:
                rows = session.exec(query).all()
            if not rows:
                return
            last_id = rows[-1][0].id or 0
            yield [self._archived(a, feed) for a, feed in rows]

    @staticmethod
    def _archived(a: Article, feed: str) -> ArchivedArticle:
        return ArchivedArticle(
            id=a.id or 0,
            url=a.url,
            title=a.title,
            text=a.text or a.feed_summary,
            language=a.language,
            feed=feed,
        )

    def topic_hits(self, topic_id: int) -> dict[int, StoredHit]:
        """The stored hits of a topic by article id, with whether a sent digest carried them."""
        delivered = (
            select(DigestItem.hit_id)
            .join(Digest, col(Digest.id) == DigestItem.digest_id)
            .where(Digest.status == DIGEST_SENT)
        )
        query = select(Hit, col(Hit.id).in_(delivered)).where(Hit.topic_id == topic_id)
        with self._session() as session:
            return {
                h.article_id: StoredHit(id=h.id or 0, score=h.score, delivered=bool(sent))
                for h, sent in session.exec(query).all()
            }

    def apply_backtest(
        self, topic_id: int, *, matches: dict[int, TopicMatch], remove: Sequence[int], clock: Clock
    ) -> None:
        """Store or refresh the hits of re-matched articles and delete hits that no longer match, at once;
        new hits are stamped with ``clock`` read inside the hit fence."""
        with self._session() as session:
            _hit_fence(session.connection(), exclusive=False)
            now = clock()
            if remove:
                session.execute(sa.delete(DigestItem).where(col(DigestItem.hit_id).in_(list(remove))))
                session.execute(sa.delete(Hit).where(col(Hit.id).in_(list(remove))))
            batch = ArticleBatch(session.connection())
            for article_id, match in matches.items():
                batch.store_hits(article_id, [match], now)

    # -- subscriptions and digests -------------------------------------------------------------------

    def sync_subscriptions(self, subscriptions: Sequence[SubscriptionConfig], now: datetime) -> None:
        """Record subscriptions first seen now; their first digest starts from this moment."""
        with self._session() as session:
            known = set(session.exec(select(Subscription.name)).all())
            for sub in subscriptions:
                if sub.name not in known:
                    session.add(Subscription(name=sub.name, created_at=now))

    @staticmethod
    def _last_window_end(session: Session, subscription_id: int, kind: str, topic: str | None) -> Any:
        query = select(sa.func.max(Digest.window_end)).where(
            Digest.subscription_id == subscription_id,
            col(Digest.status).in_(DIGEST_CARRYING),
            Digest.kind == kind,
        )
        if topic is not None:
            query = query.where(Digest.topic == topic)
        return session.exec(query).one()

    def undelivered_hits(
        self,
        subscription: SubscriptionConfig,
        *,
        until: datetime,
        topics: Sequence[str] | None = None,
        kind: str = KIND_DIGEST,
    ) -> tuple[datetime, list[HitView]]:
        """The hits a subscription's next digest (or, with ``kind`` alert, its next alert of the one topic in
        ``topics``) carries, and where its window starts.

        A hit is due when it is of one of ``topics`` (default: all the subscription's), scores at least its
        minimum, was stored after the subscription began and up to ``until``, and nothing of this
        subscription carries it: no digest or alert (one sent, one still being sent, or an empty one: that
        carries what needed no sending, stale reposts and more sources of stories already sent).
        Selecting by "not yet carried" rather than by time window alone means a hit committed late never
        loses anything; a digest whose sending failed keeps its hits for its retry, so none is sent twice.
        """
        wanted = list(subscription.topics if topics is None else topics)
        with self._session() as session:
            _hit_fence(session.connection(), exclusive=True)  # hits stamped up to ``until`` are committed
            sub = self._subscription(session, subscription.name)
            topic = wanted[0] if kind == KIND_ALERT and wanted else None
            last_end = self._last_window_end(session, sub.id or 0, kind, topic)
            carried = (
                select(DigestItem.hit_id)
                .join(Digest, col(Digest.id) == DigestItem.digest_id)
                .where(Digest.subscription_id == sub.id, col(Digest.status).in_(DIGEST_CARRYING))
            )
            query = (
                self._hit_query()
                .where(
                    col(Topic.name).in_(wanted),
                    col(Hit.score) >= subscription.min_score,
                    col(Hit.created_at) > sub.created_at,
                    col(Hit.created_at) <= until,
                    col(Hit.id).not_in(carried),
                )
                .order_by(col(Topic.name), col(Hit.score).desc(), col(Hit.created_at))
            )
            hits = [self._hit_view(*row) for row in session.exec(query).all()] if wanted else []
            return (last_end or sub.created_at), hits

    def stories_delivered(self, subscription: str, story_ids: Collection[int]) -> set[int]:
        """Which of these stories a sent digest or alert of the subscription already carried (through any
        copy)."""
        if not story_ids:
            return set()
        with self._session() as session:
            sub = self._subscription(session, subscription)
            query = (
                select(Article.story_id)
                .join(Hit, col(Hit.article_id) == Article.id)
                .join(DigestItem, col(DigestItem.hit_id) == Hit.id)
                .join(Digest, col(Digest.id) == DigestItem.digest_id)
                .where(
                    Digest.subscription_id == sub.id,
                    col(Digest.status).in_((DIGEST_SENT, DIGEST_SENDING)),
                    col(Article.story_id).in_(list(story_ids)),
                )
                .distinct()
            )
            return {story for story in session.exec(query).all() if story is not None}

    def article_leads(self, article_ids: Collection[int]) -> dict[int, tuple[str, str, str | None]]:
        """Each article's text, feed summary and site, for the digest's summary lines."""
        if not article_ids:
            return {}
        table: sa.Table = Article.__table__  # type: ignore[attr-defined]
        articles = table.c
        query = sa.select(articles.id, articles.text, articles.feed_summary, articles.site).where(
            articles.id.in_(list(article_ids))
        )
        with self._read() as conn:
            return {i: (text or "", summary or "", site) for i, text, summary, site in conn.execute(query)}

    def repeated_site_lines(self, host: str, keys: Collection[str], *, at_least: int) -> set[str]:
        """Which of these line keys the site showed in at least ``at_least`` of its articles (its furniture,
        for a digest's summaries, before it is frequent enough to count as chrome)."""
        if not keys:
            return set()
        table: sa.Table = SiteLine.__table__  # type: ignore[attr-defined]
        query = sa.select(table.c.line_key).where(
            table.c.host == host, table.c.line_key.in_(list(keys)), table.c.articles >= at_least
        )
        with self._read() as conn:
            return set(conn.execute(query).scalars())

    def record_digest(
        self,
        subscription: str,
        *,
        status: str,
        window_start: datetime,
        window_end: datetime,
        hit_ids: Sequence[int],
        now: datetime,
        kind: str = KIND_DIGEST,
        topic: str | None = None,
        message_id: str | None = None,
        document: str | None = None,
        deliveries: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Record a digest (or alert) and the hits it carries: ``empty`` (nothing to send), or ``sending``
        with its content and one delivery per channel, ``(channel, payload)``, to be sent now (see
        :meth:`delivery_sent`, :meth:`delivery_failed`), all in one transaction."""
        with self._session() as session:
            sub = self._subscription(session, subscription)
            digest = Digest(
                subscription_id=sub.id or 0,
                kind=kind,
                topic=topic,
                status=status,
                window_start=window_start,
                window_end=window_end,
                hit_count=len(hit_ids),
                message_id=message_id,
                document=document,
                created_at=now,
                sent_at=now if status == DIGEST_SENT else None,
            )
            session.add(digest)
            session.flush()
            session.add_all(DigestItem(digest_id=digest.id or 0, hit_id=h) for h in hit_ids)
            session.add_all(
                Delivery(
                    digest_id=digest.id or 0,
                    channel=channel,
                    status=DELIVERY_PENDING,
                    payload=payload,
                    next_attempt_at=now,
                    created_at=now,
                )
                for channel, payload in deliveries
            )
            return digest.id or 0

    def delivery_sent(self, delivery_id: int, now: datetime) -> bool:
        """The server took this channel's delivery; once every channel did, the digest is sent (its hits
        delivered). Returns whether the digest is now sent."""
        with self._session() as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                raise NotFoundError("delivery", str(delivery_id))
            delivery.status, delivery.sent_at, delivery.next_attempt_at = DELIVERY_SENT, now, None
            session.add(delivery)
            session.flush()
            left = session.exec(
                select(sa.func.count())
                .select_from(Delivery)
                .where(Delivery.digest_id == delivery.digest_id, Delivery.status == DELIVERY_PENDING)
            ).one()
            if left:
                return False
            digest = self._digest(session, delivery.digest_id)
            digest.status, digest.sent_at = DIGEST_SENT, now
            session.add(digest)
            return True

    def delivery_failed(self, delivery_id: int, *, error: str, retry_at: datetime) -> None:
        """Sending failed: the delivery stays in the outbox, its digest's hits undelivered, until
        ``retry_at``."""
        with self._session() as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                raise NotFoundError("delivery", str(delivery_id))
            delivery.attempts += 1
            delivery.error, delivery.next_attempt_at = error, retry_at
            session.add(delivery)

    def outbox(
        self, subscription: str | None = None, *, kind: str | None = None, topic: str | None = None
    ) -> list[OutboxDelivery]:
        """Deliveries stored for sending and not confirmed sent (of one subscription, kind or alert topic,
        or all), oldest first."""
        query = (
            select(Delivery, Digest, Subscription.name)
            .join(Digest, col(Digest.id) == Delivery.digest_id)
            .join(Subscription, col(Subscription.id) == Digest.subscription_id)
            .where(Delivery.status == DELIVERY_PENDING)
            .order_by(col(Delivery.digest_id), col(Delivery.id))
        )
        if subscription is not None:
            query = query.where(Subscription.name == subscription)
        if kind is not None:
            query = query.where(Digest.kind == kind)
        if topic is not None:
            query = query.where(Digest.topic == topic)
        with self._session() as session:
            return [
                OutboxDelivery(
                    id=d.id or 0,
                    digest_id=digest.id or 0,
                    subscription=name,
                    kind=digest.kind,
                    topic=digest.topic,
                    channel=d.channel,
                    payload=d.payload,
                    message_id=digest.message_id,
                    hit_count=digest.hit_count,
                    attempts=d.attempts,
                    error=d.error,
                    next_attempt_at=d.next_attempt_at or d.created_at,
                )
                for d, digest, name in session.exec(query).all()
            ]

    def outbox_size(self) -> int:
        """How many deliveries wait in the outbox (without reading what they carry)."""
        with self._session() as session:
            return int(
                session.exec(
                    select(sa.func.count()).select_from(Delivery).where(Delivery.status == DELIVERY_PENDING)
                ).one()
            )

    @staticmethod
    def _digest(session: Session, digest_id: int) -> Digest:
        digest = session.get(Digest, digest_id)
        if digest is None:
            raise NotFoundError("digest", str(digest_id))
        return digest

    def last_digest_time(self, subscription: str) -> datetime | None:
        """Where the subscription's last daily or weekly digest window ended (sent, empty, or still being
        sent); alerts do not count."""
        with self._session() as session:
            sub = self._subscription(session, subscription)
            return self._last_window_end(session, sub.id or 0, KIND_DIGEST, None)  # type: ignore[no-any-return]

    def last_digests(self) -> dict[str, DigestRecord]:
        """Each subscription's latest daily or weekly digest, by subscription name."""
        latest = (
            select(sa.func.max(Digest.id))
            .where(Digest.kind == KIND_DIGEST)
            .group_by(col(Digest.subscription_id))
        )
        query = (
            select(Digest, Subscription.name)
            .join(Subscription, col(Subscription.id) == Digest.subscription_id)
            .where(col(Digest.id).in_(latest))
        )
        with self._session() as session:
            rows = session.exec(query).all()
            pending: dict[int, list[Delivery]] = {}
            ids = [d.id for d, _ in rows]
            for delivery in session.exec(
                select(Delivery).where(col(Delivery.digest_id).in_(ids), Delivery.status == DELIVERY_PENDING)
            ).all():
                pending.setdefault(delivery.digest_id, []).append(delivery)
            records = {}
            for d, name in rows:
                waiting = pending.get(d.id or 0, [])
                failed = [w for w in waiting if w.attempts]
                records[name] = DigestRecord(
                    status=d.status,
                    window_start=d.window_start,
                    window_end=d.window_end,
                    hits=d.hit_count,
                    sent_at=d.sent_at,
                    attempts=max((w.attempts for w in waiting), default=0),
                    error="; ".join(f"{w.channel}: {w.error}" for w in failed) or None,
                    next_attempt_at=min((w.next_attempt_at or w.created_at for w in waiting), default=None),
                )
            return records

    def alerts_since(self, subscription: str, topic: str, since: datetime) -> list[datetime]:
        """When the subscription's alerts of ``topic`` that went out (or are going out) since ``since`` were
        made, oldest first: what the rate limit counts."""
        with self._session() as session:
            sub = self._subscription(session, subscription)
            return list(
                session.exec(
                    select(Digest.created_at)
                    .where(
                        Digest.subscription_id == sub.id,
                        Digest.kind == KIND_ALERT,
                        Digest.topic == topic,
                        col(Digest.status).in_((DIGEST_SENDING, DIGEST_SENT)),
                        col(Digest.created_at) > since,
                    )
                    .order_by(col(Digest.created_at))
                ).all()
            )

    def alert_thread(self, subscription: str, topic: str) -> tuple[str, str] | None:
        """The Message-IDs of the first and the latest emailed alert of ``topic``: what a new alert replies
        to, so mail clients thread a topic's alerts."""
        with self._session() as session:
            sub = self._subscription(session, subscription)
            query = (
                select(Digest.message_id)
                .join(Delivery, col(Delivery.digest_id) == Digest.id)
                .where(
                    Digest.subscription_id == sub.id,
                    Digest.kind == KIND_ALERT,
                    Digest.topic == topic,
                    Delivery.channel == "email",
                    col(Digest.message_id).is_not(None),
                )
                .order_by(col(Digest.id))
            )
            found = [m for m in session.exec(query).all() if m]
        return (found[0], found[-1]) if found else None

    def published_digests(self, subscription: str, *, limit: int = 20) -> list[PublishedDigest]:
        """The subscription's latest digests and alerts that have content (sent, or being sent), newest
        first: its Atom feed and JSON export."""
        with self._session() as session:
            sub = self._subscription(session, subscription)
            rows = session.exec(
                select(Digest)
                .where(
                    Digest.subscription_id == sub.id,
                    col(Digest.status).in_((DIGEST_SENDING, DIGEST_SENT)),
                    col(Digest.document).is_not(None),
                )
                .order_by(col(Digest.created_at).desc(), col(Digest.id).desc())
                .limit(limit)
            ).all()
            return [
                PublishedDigest(
                    id=d.id or 0,
                    kind=d.kind,
                    topic=d.topic,
                    status=d.status,
                    created_at=d.created_at,
                    document=d.document or "",
                )
                for d in rows
            ]

    def database_size(self) -> int:
        """Bytes the database takes on disk."""
        with self._read() as conn:
            if conn.dialect.name == "sqlite":
                pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
                return int(pages) * int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())

    def subscription_started(self, subscription: str) -> datetime:
        with self._session() as session:
            return self._subscription(session, subscription).created_at

    @staticmethod
    def _subscription(session: Session, name: str) -> Subscription:
        sub = session.exec(select(Subscription).where(Subscription.name == name)).first()
        if sub is None:
            raise NotFoundError("subscription", name)
        return sub


@dataclass(frozen=True, slots=True)
class _SearchTerm:
    words: str
    prefix: bool
    negated: bool


def _search_terms(query: str) -> list[_SearchTerm | str]:
    """A web-search style query (words, "phrases", OR, -word, prefix*) as terms and "OR"s between them;
    nothing in it is an operator of the database's own syntax."""
    parts: list[_SearchTerm | str] = []
    for token in re.findall(r'-?"[^"]*"?|\S+', query):
        if token == "OR":
            if parts and parts[-1] != "OR":
                parts.append("OR")
            continue
        negated = token.startswith("-") and len(token) > 1
        words = token.removeprefix("-") if negated else token
        prefix = words.endswith("*")
        words = words.rstrip("*").strip('"').strip()
        if not re.search(r"\w", words):
            continue
        if negated and (not parts or parts[-1] == "OR"):
            continue  # a negation needs something to subtract from
        parts.append(_SearchTerm(words, prefix, negated))
    while parts and parts[-1] == "OR":
        parts.pop()
    if not parts:
        raise QueryError(query, 1, "nothing to search for: give at least one word")
    return parts


def _fts5_query(parts: list[_SearchTerm | str]) -> str:
    """As SQLite FTS5 syntax: ``"xi" "jinping putin" OR "modi" NOT "biden" "summit"*``."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        term = '"' + part.words.replace('"', '""') + '"' + ("*" if part.prefix else "")
        out.append(f"NOT {term}" if part.negated else term)
    return " ".join(out)


def _tsquery(parts: list[_SearchTerm | str]) -> str:
    """As PostgreSQL tsquery syntax: ``'xi' & ('jinping' <-> 'putin') | 'modi' & !'biden' & 'summit':*``."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append("|")
            continue
        lexemes = ["'" + word.replace("'", "''") + "'" for word in re.findall(r"\w+", part.words)]
        expr = " <-> ".join(lexemes) + (":*" if part.prefix else "")
        expr = f"({expr})" if len(lexemes) > 1 else expr
        if out and out[-1] != "|":
            out.append("&")
        out.append(f"!{expr}" if part.negated else expr)
    return " ".join(out)
