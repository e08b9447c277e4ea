"""Recording feed polls, many in one transaction.

The poll stage hands storage what each poll found (``FeedUpdated``, ``FeedNotModified``, ``FeedFailed``);
``record_polls`` writes a batch of them at once. Most polls of a large feed list are 304s, which change a
few columns of one row each: they go to the database as one statement with many rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from monitor.storage.articles import ARTICLES, DISCOVERED, FEEDS
from monitor.storage.models import Entry
from monitor.types import FeedEntry
from monitor.urls import site_of

ENTRIES: sa.Table = Entry.__table__  # type: ignore[attr-defined]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewArticle:
    """A feed entry to record: the entry, the canonical URL of its article and where its page is."""

    entry: FeedEntry
    url: str
    page_url: str | None


@dataclass(frozen=True, slots=True)
class FeedUpdated:
    """A successful poll with a feed document: the feed's new state and the entries it listed."""

    feed_id: int
    polled_at: datetime
    status: int
    title: str | None
    etag: str | None
    last_modified: str | None
    final_url: str
    articles: Sequence[NewArticle]
    next_poll_at: datetime
    #: the polling interval from now on (None: unchanged)
    interval: timedelta | None = None


@dataclass(frozen=True, slots=True)
class FeedNotModified:
    """A 304: the feed is healthy and unchanged."""

    feed_id: int
    polled_at: datetime
    next_poll_at: datetime
    interval: timedelta
    status: int = 304


@dataclass(frozen=True, slots=True)
class FeedFailed:
    """A failed poll, kept on the feed until the next success; with a reason, the feed is disabled (a 410
    Gone) until its URL in feeds.yaml changes."""

    feed_id: int
    polled_at: datetime
    error: str
    status: int | None
    next_poll_at: datetime
    disabled_reason: str | None = None


PollResult = FeedUpdated | FeedNotModified | FeedFailed

_f = FEEDS.c
_HEALTHY = {"consecutive_errors": 0, "last_error": None, "failing_since": None}
_NOT_MODIFIED = (
    sa.update(FEEDS)
    .where(_f.id == sa.bindparam("feed"))
    .values(
        interval_seconds=sa.bindparam("interval"),
        last_polled_at=sa.bindparam("now"),
        last_success_at=sa.bindparam("now"),
        last_status=sa.bindparam("status"),
        next_poll_at=sa.bindparam("next"),
        **_HEALTHY,
    )
)
_FAILED = (
    sa.update(FEEDS)
    .where(_f.id == sa.bindparam("feed"))
    .values(
        last_polled_at=sa.bindparam("now"),
        last_status=sa.bindparam("status"),
        last_error=sa.bindparam("error"),
        failing_since=sa.func.coalesce(_f.failing_since, sa.bindparam("now")),
        consecutive_errors=_f.consecutive_errors + 1,
        next_poll_at=sa.bindparam("next"),
        disabled_reason=sa.func.coalesce(sa.bindparam("disabled"), _f.disabled_reason),
    )
)
#: the other columns are set from the names of the values given
_UPDATED = sa.update(FEEDS).where(_f.id == sa.bindparam("feed"))
_SEEN_KEYS = sa.select(ENTRIES.c.key_hash).where(
    ENTRIES.c.feed_id == sa.bindparam("feed"), ENTRIES.c.key_hash.in_(sa.bindparam("keys", expanding=True))
)
_KNOWN_URLS = sa.select(ARTICLES.c.url_hash, ARTICLES.c.id).where(
    ARTICLES.c.url_hash.in_(sa.bindparam("urls", expanding=True))
)


def record_polls(conn: sa.Connection, results: Sequence[PollResult]) -> list[int]:
    """Record polls; returns, for each, how many of its entries were new to its feed."""
    not_modified = [
        {
            "feed": r.feed_id,
            "interval": int(r.interval.total_seconds()),
            "now": r.polled_at,
            "status": r.status,
            "next": r.next_poll_at,
        }
        for r in results
        if isinstance(r, FeedNotModified)
    ]
    if not_modified:
        conn.execute(_NOT_MODIFIED, not_modified)
    failed = [
        {
            "feed": r.feed_id,
            "now": r.polled_at,
            "status": r.status,
            "error": r.error,
            "next": r.next_poll_at,
            "disabled": r.disabled_reason,
        }
        for r in results
        if isinstance(r, FeedFailed)
    ]
    if failed:
        conn.execute(_FAILED, failed)
    return [_record_update(conn, r) if isinstance(r, FeedUpdated) else 0 for r in results]


def _record_update(conn: sa.Connection, poll: FeedUpdated) -> int:
    """Store a feed's new state and its new entries. Entries already seen in this feed are skipped; an
    article already known through another feed or URL is linked, not stored again."""
    values: dict[str, Any] = {
        "feed": poll.feed_id,
        "title": poll.title,
        "etag": poll.etag,
        "last_modified": poll.last_modified,
        "final_url": poll.final_url,
        "last_polled_at": poll.polled_at,
        "last_success_at": poll.polled_at,
        "last_status": poll.status,
        "next_poll_at": poll.next_poll_at,
        **_HEALTHY,
    }
    if poll.interval is not None:
        values["interval_seconds"] = int(poll.interval.total_seconds())
    conn.execute(_UPDATED, values)
    by_key = {sha256(a.entry.key): a for a in poll.articles}
    if not by_key:
        return 0
    seen = set(conn.execute(_SEEN_KEYS, {"feed": poll.feed_id, "keys": list(by_key)}).scalars())
    fresh = {key: a for key, a in by_key.items() if key not in seen}
    if not fresh:
        return 0
    by_url = {sha256(a.url): a for a in fresh.values()}
    known: dict[str, int] = {h: i for h, i in conn.execute(_KNOWN_URLS, {"urls": list(by_url)})}
    if new := [(h, a) for h, a in by_url.items() if h not in known]:
        conn.execute(
            sa.insert(ARTICLES),
            [
                {
                    "url_hash": url_hash,
                    "url": a.url,
                    "page_url": a.page_url,
                    "site": site_of(a.url),
                    "feed_id": poll.feed_id,
                    "state": DISCOVERED,
                    "attempts": 0,
                    "title": a.entry.title,
                    "feed_summary": a.entry.summary,
                    "author": a.entry.author,
                    "published_at": a.entry.published,
                    "discovered_at": poll.polled_at,
                    "next_attempt_at": poll.polled_at,
                }
                for url_hash, a in new
            ],
        )
        known.update((h, i) for h, i in conn.execute(_KNOWN_URLS, {"urls": [h for h, _ in new]}))
    conn.execute(
        sa.insert(ENTRIES),
        [
            {
                "feed_id": poll.feed_id,
                "key_hash": key,
                "key": a.entry.key,
                "article_id": known[sha256(a.url)],
                "first_seen_at": poll.polled_at,
            }
            for key, a in fresh.items()
        ],
    )
    return len(fresh)
