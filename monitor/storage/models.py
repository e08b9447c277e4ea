"""The database tables. Alembic owns the schema; these models describe it and must not drift from it.

Every datetime column is timezone-aware UTC (``UTCDateTime`` restores the zone SQLite drops). Long keys
(URLs, guids) are indexed through their SHA-256, which fits any database's index limits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC datetime."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: every datetime must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _text(*, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=sa.Column(sa.Text(), nullable=nullable))


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False, server_default="[]"))


class Feed(SQLModel, table=True):
    """A feed from feeds.yaml, with its polling state (the scheduler keeps none of its own)."""

    __tablename__ = "feeds"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    url: str = Field(max_length=2048)
    #: the current polling interval, between the bounds (equal for a fixed interval)
    interval_seconds: int
    min_interval_seconds: int = 300
    max_interval_seconds: int = 86400
    tags: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    active: bool = True
    title: str | None = Field(default=None, max_length=500)
    etag: str | None = Field(default=None, max_length=500)
    last_modified: str | None = Field(default=None, max_length=100)
    final_url: str | None = Field(default=None, max_length=2048)
    next_poll_at: datetime = _ts(index=True)
    last_polled_at: datetime | None = _ts(nullable=True)
    last_success_at: datetime | None = _ts(nullable=True)
    last_status: int | None = None
    consecutive_errors: int = 0
    #: when the current run of failed polls began (None while the feed works)
    failing_since: datetime | None = _ts(nullable=True)
    last_error: str | None = _text()
    #: why the feed is no longer polled (a 410 Gone); cleared when its URL in feeds.yaml changes
    disabled_reason: str | None = _text()
    created_at: datetime = _ts()


class Story(SQLModel, table=True):
    """One story: an article and its copies (syndicated, re-posted, spun), shown once with its sources."""

    __tablename__ = "stories"

    id: int | None = Field(default=None, primary_key=True)
    #: the copy shown for the story: the one with the fullest page text, the earliest on a tie (not a
    #: foreign key, as articles point back at their story)
    representative_id: int
    #: the earliest publication date any copy gives: what "republished, originally …" refers to
    first_published_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Article(SQLModel, table=True):
    """One article, keyed by its canonical URL, moving through discovered → matched (or failed)."""

    __tablename__ = "articles"

    id: int | None = Field(default=None, primary_key=True)
    url_hash: str = Field(max_length=64, unique=True)
    #: the canonical URL (unwrapped, no tracking): the article's identity
    url: str = _text(nullable=False)
    #: where the page is fetched from: the feed's link (or None when the entry has no page)
    page_url: str | None = _text()
    #: the host the article belongs to, for learning its chrome
    site: str | None = Field(default=None, max_length=255, index=True)
    feed_id: int = Field(foreign_key="feeds.id", index=True)
    state: str = Field(max_length=20, index=True)
    attempts: int = 0
    last_error: str | None = _text()
    title: str = _text(nullable=False)
    feed_summary: str = _text(nullable=False)
    author: str | None = Field(default=None, max_length=500)
    site_name: str | None = Field(default=None, max_length=500)
    language: str | None = Field(default=None, max_length=20)
    published_at: datetime | None = _ts(nullable=True)
    page_published_at: datetime | None = _ts(nullable=True)
    text: str | None = _text()
    text_source: str | None = Field(default=None, max_length=10)
    #: SHA-256 of the normalised text: exact copies
    content_hash: str | None = Field(default=None, max_length=64, index=True)
    story_id: int | None = Field(default=None, foreign_key="stories.id", index=True)
    #: set when the article is a stale repost: the original publication date
    republished_from: datetime | None = _ts(nullable=True)
    discovered_at: datetime = _ts()
    next_attempt_at: datetime = _ts(index=True)
    processed_at: datetime | None = _ts(nullable=True)


class ArticleBand(SQLModel, table=True):
    """One LSH band key of an article's MinHash: articles sharing a key are near-duplicate candidates."""

    __tablename__ = "article_bands"

    band_key: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False))
    article_id: int = Field(foreign_key="articles.id", primary_key=True, index=True)


class ArticleFingerprint(SQLModel, table=True):
    """An article's MinHash signature with what the duplicate check needs beside it, in a narrow table of
    its own: reading it from the articles table would drag each candidate's whole text off the disk."""

    __tablename__ = "article_fingerprints"

    article_id: int = Field(foreign_key="articles.id", primary_key=True)
    story_id: int = Field(foreign_key="stories.id")
    site: str | None = Field(default=None, max_length=255)
    #: NUM_PERM unsigned 32-bit values (see monitor.dedup)
    signature: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))


class Site(SQLModel, table=True):
    """A site articles come from, with how many of its articles have been stored (for chrome shares)."""

    __tablename__ = "sites"

    host: str = Field(max_length=255, primary_key=True)
    articles: int = 0


class SiteLine(SQLModel, table=True):
    """A line of text seen on a site: in how many articles, and how many the site had when it first came."""

    __tablename__ = "site_lines"

    host: str = Field(max_length=255, primary_key=True)
    line_key: str = Field(max_length=32, primary_key=True)
    articles: int = 0
    site_articles_at_first: int = 0
    first_seen_at: datetime = _ts()


class Entry(SQLModel, table=True):
    """That a feed listed an article under some key: how new items are recognised."""

    __tablename__ = "entries"
    __table_args__ = (sa.UniqueConstraint("feed_id", "key_hash", name="uq_entries_feed_key"),)

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feeds.id")
    key_hash: str = Field(max_length=64)
    key: str = _text(nullable=False)
    article_id: int = Field(foreign_key="articles.id", index=True)
    first_seen_at: datetime = _ts()


class Topic(SQLModel, table=True):
    """A watch topic: a query and the minimum score a hit needs."""

    __tablename__ = "topics"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    query: str = _text(nullable=False)
    min_score: float
    version: int = 1
    #: only articles in these languages (ISO codes; empty: any)
    languages: list[str] = _json_list()
    #: only articles from these feeds (names from feeds.yaml; empty: any)
    feeds: list[str] = _json_list()
    #: only articles from these sites (host names, subdomains included; empty: any)
    sites: list[str] = _json_list()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Alias(SQLModel, table=True):
    """A named query fragment, used in topics as ``@name``."""

    __tablename__ = "aliases"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    query: str = _text(nullable=False)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Hit(SQLModel, table=True):
    """One article matching one topic, with why."""

    __tablename__ = "hits"
    __table_args__ = (sa.UniqueConstraint("topic_id", "article_id", name="uq_hits_topic_article"),)

    id: int | None = Field(default=None, primary_key=True)
    topic_id: int = Field(foreign_key="topics.id", index=True)
    article_id: int = Field(foreign_key="articles.id", index=True)
    topic_version: int
    score: float
    matched: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    #: per matched term: {"term": as written, "title": occurrences in title, "body": occurrences in body}
    explanation: list[dict[str, Any]] = _json_list()
    snippet: str = _text(nullable=False)
    created_at: datetime = _ts(index=True)


class Subscription(SQLModel, table=True):
    """A subscription from feeds.yaml; recorded so digests know where their windows start."""

    __tablename__ = "subscriptions"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    created_at: datetime = _ts()


class Digest(SQLModel, table=True):
    """One digest or alert of a subscription: the hits it carries, its content, and whether it went out.

    A digest to send is stored with its content and one delivery per channel (the exact message or body),
    in state ``sending``, before any server sees it; it becomes ``sent`` once every channel took it. An
    ``empty`` one had nothing to send and only carries its hits.
    """

    __tablename__ = "digests"

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="subscriptions.id", index=True)
    #: "digest" (daily or weekly) or "alert" (as it happens, of one topic)
    kind: str = Field(
        default="digest", sa_column=sa.Column(sa.String(10), nullable=False, server_default="digest")
    )
    #: the topic of an alert
    topic: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=20, index=True)
    window_start: datetime = _ts()
    window_end: datetime = _ts()
    hit_count: int = 0
    message_id: str | None = Field(default=None, max_length=300)
    #: the digest as the documented JSON shape (monitor.digest.document): what the Atom feed, the JSON
    #: export and webhooks show
    document: str | None = _text()
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True)


class Delivery(SQLModel, table=True):
    """One channel's delivery of a digest (email, webhook): the outbox.

    Stored with the digest, with exactly what is sent; ``pending`` until the server took it. A failure keeps
    it pending with the error, the attempt count and the next attempt, so a retry sends the same bytes.
    """

    __tablename__ = "deliveries"
    __table_args__ = (sa.UniqueConstraint("digest_id", "channel", name="uq_deliveries_digest_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    digest_id: int = Field(foreign_key="digests.id", index=True)
    #: "email" or "webhook"
    channel: str = Field(max_length=20)
    #: "pending" or "sent"
    status: str = Field(max_length=20, index=True)
    #: the RFC 5322 message, or the JSON body
    payload: str = _text(nullable=False)
    attempts: int = 0
    error: str | None = _text()
    next_attempt_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True)


class DigestItem(SQLModel, table=True):
    """A hit carried by a digest."""

    __tablename__ = "digest_items"
    __table_args__ = (sa.UniqueConstraint("digest_id", "hit_id", name="uq_digest_items_digest_hit"),)

    id: int | None = Field(default=None, primary_key=True)
    digest_id: int = Field(foreign_key="digests.id", index=True)
    hit_id: int = Field(foreign_key="hits.id", index=True)


metadata = SQLModel.metadata
