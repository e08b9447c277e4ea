"""Plain typed values handed from one stage of the stream to the next (never ORM objects)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FeedForPoll:
    """What the poll stage needs to know about a feed, read from storage."""

    id: int
    name: str
    url: str
    #: validators from the previous 200 answer, sent back for a conditional GET
    etag: str | None
    last_modified: str | None
    #: the current polling interval, and the bounds it adapts within (equal for a fixed interval)
    interval: timedelta
    consecutive_errors: int = 0
    min_interval: timedelta = timedelta(minutes=5)
    max_interval: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A successful (2xx) HTTP answer."""

    url: str
    #: the URL after redirects; equal to ``url`` when there were none
    final_url: str
    status: int
    content: bytes
    content_type: str | None
    etag: str | None = None
    last_modified: str | None = None
    #: every URL the request was redirected through, in order
    redirects: tuple[str, ...] = ()
    #: seconds the answer stays fresh (Cache-Control max-age, Expires), when the server says
    max_age: float | None = None


@dataclass(frozen=True, slots=True)
class NotModified:
    """A 304 answer to a conditional GET: nothing to parse."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    max_age: float | None = None


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One item of a parsed feed."""

    #: stable identity within its feed: guid, else canonical link, else a hash of the title
    key: str
    #: absolute URL of the article page, resolved against the feed URL
    url: str | None
    title: str
    #: the feed's own text for the entry (content or summary) as plain text
    summary: str
    author: str | None
    published: datetime | None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A feed document turned into entries."""

    title: str | None
    entries: list[FeedEntry]
    #: feedparser's complaint when the document was malformed but still usable
    warning: str | None = None


TextSource = Literal["page", "feed"]


@dataclass(frozen=True, slots=True)
class ExtractedArticle:
    """The readable content of an article, from its page or, failing that, from its feed entry."""

    title: str
    text: str
    author: str | None
    site_name: str | None
    language: str | None
    published: datetime | None
    #: where ``text`` came from: the fetched page, or the feed entry when the page gave no usable body
    source: TextSource


@dataclass(frozen=True, slots=True)
class ArticleToProcess:
    """An article waiting to be fetched, extracted and matched, or only matched when its extraction was
    stored before a crash or a failure (``extracted``)."""

    id: int
    #: the canonical URL, the article's identity
    url: str
    #: where its page is fetched from; None when the feed entry has no page
    page_url: str | None
    feed_name: str
    entry: FeedEntry
    attempts: int = 0
    extracted: ExtractedArticle | None = None
    #: why the page could not be used, when ``extracted`` comes from the feed
    fetch_error: str | None = None


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """Why and how strongly one article matched one topic."""

    topic_id: int
    topic_version: int
    score: float
    matched: list[str] = field(default_factory=list)
    snippet: str = ""
    #: per matched term: {"term": as written, "title": occurrences in the title, "body": in the body}
    explanation: list[dict[str, str | int]] = field(default_factory=list)
