"""The stream's hot path in the database: settling processed articles, many in one transaction.

An ``ArticleBatch`` works on one connection inside one transaction (``Storage.article_batch``), so the
lookups of a later article in the batch see what an earlier one wrote (its site's lines, its fingerprint:
two copies of one story in one batch still find each other), and a batch costs one commit. Every statement
is a plain Core statement with its rows sent at once: building ORM objects for an article's fifty LSH bands
and its site's lines cost more than the writes themselves. SQLite steps one prepared statement per row
(``executemany``); PostgreSQL, where psycopg runs ``executemany`` as one statement per row, each bound and
executed apart, gets the rows as arrays in one statement (``unnest``, ``= ANY``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from monitor.chrome import LineSeen, strip_lines
from monitor.dedup import Candidate, Fingerprint
from monitor.errors import NotFoundError
from monitor.storage.models import (
    Article,
    ArticleBand,
    ArticleFingerprint,
    Digest,
    DigestItem,
    Feed,
    Hit,
    Site,
    SiteLine,
    Story,
)
from monitor.types import ExtractedArticle, TopicMatch

#: article states, in the order an article moves through them; a failed one is retried at its next attempt
#: time until it has failed MAX_ARTICLE_ATTEMPTS times
DISCOVERED, EXTRACTED, MATCHED, FAILED = "discovered", "extracted", "matched", "failed"
#: a copy published this much later than its story's (or its page's) first publication is a stale repost
REPUBLISHED_AFTER = timedelta(days=3)

ARTICLES: sa.Table = Article.__table__  # type: ignore[attr-defined]
BANDS: sa.Table = ArticleBand.__table__  # type: ignore[attr-defined]
FINGERPRINTS: sa.Table = ArticleFingerprint.__table__  # type: ignore[attr-defined]
STORIES: sa.Table = Story.__table__  # type: ignore[attr-defined]
SITES: sa.Table = Site.__table__  # type: ignore[attr-defined]
SITE_LINES: sa.Table = SiteLine.__table__  # type: ignore[attr-defined]
HITS: sa.Table = Hit.__table__  # type: ignore[attr-defined]
FEEDS: sa.Table = Feed.__table__  # type: ignore[attr-defined]
DIGESTS: sa.Table = Digest.__table__  # type: ignore[attr-defined]
DIGEST_ITEMS: sa.Table = DigestItem.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SavedArticle:
    """What storing an article did: the story it joined, and the site's articles (itself included) whose
    text lost lines that became chrome with it (their hits are worth re-matching)."""

    story_id: int
    recleaned: list[int]


@dataclass(frozen=True, slots=True)
class ArchivedArticle:
    """A processed article, as a backtest re-matches it."""

    id: int
    url: str
    title: str
    text: str
    language: str | None
    feed: str

    @property
    def extracted(self) -> ExtractedArticle:
        """As the matcher takes it."""
        return ExtractedArticle(self.title, self.text, None, None, self.language, None, "page")


def representative_rank(text_source: str | None, published: datetime) -> tuple[bool, datetime]:
    """Which copy shows a story best: one with its page's text over a feed summary, then the earliest."""
    return text_source != "page", published


def _many(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name, expanding=True)


def _array(name: str, of: sa.types.TypeEngine[Any]) -> sa.BindParameter[Any]:
    """A list bound as one PostgreSQL array: the statement's text stays the same whatever its length."""
    return sa.bindparam(name, type_=ARRAY(of))


# Statements built once, their values bound at each call: building and keying a statement costs SQLAlchemy
# more than SQLite takes to run most of these.
_a, _s, _h = ARTICLES.c, STORIES.c, HITS.c
_site, _line, _band, _print = SITES.c, SITE_LINES.c, BANDS.c, FINGERPRINTS.c


def _site_with_lines(keys: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """A site's article count with those of its lines whose keys match: one row of NULL lines when it has
    none of them, no row when the site is new."""
    return (
        sa.select(
            _site.articles,
            _line.line_key,
            _line.articles.label("line_articles"),
            _line.site_articles_at_first,
        )
        .select_from(SITES)
        .outerjoin(SITE_LINES, sa.and_(_line.host == _site.host, keys))
        .where(_site.host == sa.bindparam("host"))
    )


_SITE_LINES = _site_with_lines(_line.line_key.in_(_many("keys")))
_COUNT_SITE = sa.update(SITES).where(_site.host == sa.bindparam("site")).values(articles=_site.articles + 1)
_COUNT_LINE = (
    sa.update(SITE_LINES)
    .where(_line.host == sa.bindparam("site"), _line.line_key == sa.bindparam("line"))
    .values(articles=_line.articles + 1)
)
_EXACT_COPY = (
    sa.select(_a.story_id)
    .where(
        _a.content_hash == sa.bindparam("hash"), _a.story_id.is_not(None), _a.id != sa.bindparam("exclude")
    )
    .order_by(_a.id)
    .limit(1)
)
# a join, not "id IN (subquery)", which SQLite runs twice as slow; an article sharing several bands comes
# once per band
_NEAR_COPIES = (
    sa.select(_print.article_id, _print.story_id, _print.signature, _print.site)
    .join_from(BANDS, FINGERPRINTS, _band.article_id == _print.article_id)
    .where(_band.band_key.in_(_many("bands")), _print.article_id != sa.bindparam("exclude"))
)
# PostgreSQL: the same with lists bound as arrays, and an article's rows written in one statement each
_PG_SITE_LINES = _site_with_lines(_line.line_key == sa.any_(_array("keys", sa.String())))
_PG_NEAR_COPIES = (
    sa.select(_print.article_id, _print.story_id, _print.signature, _print.site)
    .join_from(BANDS, FINGERPRINTS, _band.article_id == _print.article_id)
    .where(
        _band.band_key == sa.any_(_array("bands", sa.BigInteger())),
        _print.article_id != sa.bindparam("exclude"),
    )
)
_PG_BANDS = sa.insert(BANDS).from_select(
    ["band_key", "article_id"],
    sa.select(
        sa.func.unnest(_array("keys", sa.BigInteger())),
        sa.bindparam("article", type_=sa.Integer),
    ),
)
_PG_NEW_LINES = sa.insert(SITE_LINES).from_select(
    ["host", "line_key", "articles", "site_articles_at_first", "first_seen_at"],
    sa.select(
        sa.bindparam("host", type_=_line.host.type),
        sa.func.unnest(_array("keys", sa.String())),
        sa.literal(1),
        sa.bindparam("before", type_=sa.Integer),
        sa.bindparam("now", type_=_line.first_seen_at.type),
    ),
)
_PG_COUNT_LINES = (
    sa.update(SITE_LINES)
    .where(
        _line.host == sa.bindparam("site"),
        _line.line_key == sa.any_(_array("keys", sa.String())),
    )
    .values(articles=_line.articles + 1)
)
_TEXTS = sa.select(_a.id, _a.title, _a.text).where(_a.id.in_(_many("ids")))
_ARTICLE = sa.select(
    _a.state, _a.story_id, _a.site, _a.title, _a.author, _a.published_at, _a.discovered_at
).where(_a.id == sa.bindparam("id"))
#: the other columns are set from the names of the values given
_SETTLE_ARTICLE = sa.update(ARTICLES).where(_a.id == sa.bindparam("article")).values(attempts=_a.attempts + 1)
#: a story with what ranks its representative (NULLs if that article is gone)
_STORY = (
    sa.select(_s.representative_id, _s.first_published_at, _a.text_source, _a.published_at, _a.discovered_at)
    .select_from(STORIES)
    .outerjoin(ARTICLES, _a.id == _s.representative_id)
    .where(_s.id == sa.bindparam("id"))
)
_UPDATE_STORY = sa.update(STORIES).where(_s.id == sa.bindparam("story"))
_HIT_TOPICS = sa.select(_h.topic_id).where(_h.article_id == sa.bindparam("article"))
_REFRESH_HIT = sa.update(HITS).where(
    _h.article_id == sa.bindparam("article"), _h.topic_id == sa.bindparam("topic")
)
_ARCHIVED = (
    sa.select(_a.id, _a.url, _a.title, _a.text, _a.feed_summary, _a.language, FEEDS.c.name)
    .join_from(ARTICLES, FEEDS, FEEDS.c.id == _a.feed_id)
    .where(_a.id.in_(_many("ids")))
    .order_by(_a.id)
)


class ArticleBatch:
    """Reads and writes of the settle stage, on one connection in one transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._arrays = conn.dialect.name == "postgresql"
        #: the last site lines read (host, the keys asked for, the site's article count, key → (articles,
        #: the site's count when the line first came)): counting the lines of an article when it is saved
        #: reads them only once
        self._lines_read: tuple[str, frozenset[str], int, dict[str, tuple[int, int]]] | None = None

    def lines_seen(self, host: str, keys: Collection[str]) -> dict[str, LineSeen]:
        """How often a site has shown each of these lines before (lines it never showed are left out)."""
        if not keys:
            return {}
        total, known = self._site_lines(host, keys)
        return {key: LineSeen(articles, total - at_first) for key, (articles, at_first) in known.items()}

    def _site_lines(self, host: str, keys: Collection[str]) -> tuple[int, dict[str, tuple[int, int]]]:
        """How many articles a site has, and the count of each of ``keys`` it has seen (and its article
        count when the line first came)."""
        if self._lines_read is not None:
            read_host, read_keys, total, known = self._lines_read
            if read_host == host and read_keys.issuperset(keys):
                return total, {k: known[k] for k in keys if k in known}
        statement = _PG_SITE_LINES if self._arrays else _SITE_LINES
        rows = self.conn.execute(statement, {"host": host, "keys": list(keys)}).all()
        total = rows[0].articles if rows else 0
        known = {key: (articles, at_first) for _, key, articles, at_first in rows if key is not None}
        self._lines_read = (host, frozenset(keys), total, known)
        return total, known

    def copy_candidates(
        self, content_hash: str, band_keys: Sequence[int], *, exclude: int
    ) -> tuple[int | None, list[Candidate]]:
        """Where a text may already be stored: the story of an exact copy (if any; then nothing more is
        looked up), else the articles sharing at least one LSH band with it, its possible near-duplicates."""
        if content_hash:
            story = self.conn.execute(_EXACT_COPY, {"hash": content_hash, "exclude": exclude}).scalar()
            if story is not None:
                return story, []
        if not band_keys:
            return None, []
        statement = _PG_NEAR_COPIES if self._arrays else _NEAR_COPIES
        rows = self.conn.execute(statement, {"bands": list(band_keys), "exclude": exclude})
        found = {i: (story, sig, site) for i, story, sig, site in rows}
        return None, [
            Candidate(article_id=i, story_id=story, signature=sig, site=site)
            for i, (story, sig, site) in found.items()
        ]

    def article_texts(self, article_ids: Sequence[int]) -> dict[int, str]:
        """Title and text of articles, as their fingerprints were taken."""
        rows = self.conn.execute(_TEXTS, {"ids": list(article_ids)})
        return {i: f"{title}\n{text or ''}" for i, title, text in rows}

    def save_article(
        self,
        article_id: int,
        *,
        extracted: ExtractedArticle,
        matches: Sequence[TopicMatch],
        fetch_error: str | None,
        now: datetime,
        fingerprint: Fingerprint | None = None,
        story_id: int | None = None,
        lines: Mapping[str, str] | None = None,
    ) -> SavedArticle:
        """Store an article's content, its place in a story and its hits, and mark it matched (idempotent).
        ``story_id`` is the story it is a copy of (None: a new story); ``lines`` are the keyed lines of its
        text as extracted, counted for its site's chrome."""
        row = self.conn.execute(_ARTICLE, {"id": article_id}).one_or_none()
        if row is None:
            raise NotFoundError("article", str(article_id))
        first_time = row.state != MATCHED
        published = row.published_at or extracted.published
        story, republished_from = self._join_story(
            article_id,
            story_id if first_time else row.story_id,
            text_source=extracted.source,
            listed=published or row.discovered_at,
            page_published=extracted.published,
            now=now,
        )
        values: dict[str, Any] = {
            "article": article_id,
            "title": extracted.title or row.title,
            "text": extracted.text,
            "text_source": extracted.source,
            "author": extracted.author or row.author,
            "site_name": extracted.site_name,
            "language": extracted.language,
            "page_published_at": extracted.published,
            "published_at": published,
            "state": MATCHED,
            "last_error": fetch_error,
            "processed_at": now,
            "story_id": story,
            "republished_from": republished_from,
        }
        if fingerprint is not None:
            values["content_hash"] = fingerprint.content_hash or None
        self.conn.execute(_SETTLE_ARTICLE, values)
        if fingerprint is not None:
            self._store_fingerprint(article_id, story, row.site, fingerprint, replace=not first_time)
        recleaned = []
        if first_time and lines and row.site:
            recleaned = self._count_site_lines(row.site, lines, now)
        self.store_hits(article_id, matches, now)
        return SavedArticle(story, recleaned)

    def _join_story(
        self,
        article_id: int,
        story_id: int | None,
        *,
        text_source: str,
        listed: datetime,
        page_published: datetime | None,
        now: datetime,
    ) -> tuple[int, datetime | None]:
        """Put an article into a story (a new one when ``story_id`` is None); keep the story's
        representative (page text over feed text, then the earliest) and first publication date. Returns
        the story and, for a stale repost, the original publication date."""
        story = None
        if story_id is not None:
            story = self.conn.execute(_STORY, {"id": story_id}).one_or_none()
        # a page date is often only a day: it counts when it is clearly older than the feed's exact time
        own = listed
        if page_published is not None and listed - page_published > timedelta(days=1):
            own = page_published
        if story is None or story_id is None:
            new = self.conn.execute(
                sa.insert(STORIES),
                {
                    "representative_id": article_id,
                    "first_published_at": own,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            key: Any = new.inserted_primary_key
            return int(key[0]), own if listed - own > REPUBLISHED_AFTER else None
        earliest = min(d for d in (story.first_published_at, own) if d is not None)
        values: dict[str, Any] = {"story": story_id, "first_published_at": earliest, "updated_at": now}
        if story.representative_id != article_id and (
            story.discovered_at is None  # the representative is gone
            or representative_rank(text_source, listed)
            < representative_rank(story.text_source, story.published_at or story.discovered_at)
        ):
            values["representative_id"] = article_id
        self.conn.execute(_UPDATE_STORY, values)
        return story_id, earliest if listed - earliest > REPUBLISHED_AFTER else None

    def _store_fingerprint(
        self, article_id: int, story_id: int, site: str | None, fingerprint: Fingerprint, *, replace: bool
    ) -> None:
        if replace:
            self.conn.execute(sa.delete(BANDS).where(_band.article_id == article_id))
            self.conn.execute(sa.delete(FINGERPRINTS).where(_print.article_id == article_id))
        if fingerprint.signature:
            self.conn.execute(
                sa.insert(FINGERPRINTS),
                {
                    "article_id": article_id,
                    "story_id": story_id,
                    "site": site,
                    "signature": fingerprint.signature,
                },
            )
            if self._arrays:
                self.conn.execute(_PG_BANDS, {"keys": list(fingerprint.band_keys), "article": article_id})
            else:
                rows = [{"band_key": k, "article_id": article_id} for k in fingerprint.band_keys]
                self.conn.execute(sa.insert(BANDS), rows)

    def _count_site_lines(self, host: str, lines: Mapping[str, str], now: datetime) -> list[int]:
        """Count an article's lines for its site; a line that becomes chrome with it is removed from the
        site's earlier articles too, so the first copies of a site's furniture do not keep it."""
        before, known = self._site_lines(host, lines)
        self._lines_read = None
        if before:
            self.conn.execute(_COUNT_SITE, {"site": host})
        else:
            self.conn.execute(sa.insert(SITES), {"host": host, "articles": 1})
        total = before + 1
        new: list[str] = []
        counted: list[str] = []
        became_chrome: dict[str, str] = {}
        for key, line in lines.items():
            articles, at_first = known.get(key, (0, before))
            if (
                not LineSeen(articles, before - at_first).is_chrome
                and LineSeen(articles + 1, total - at_first).is_chrome
            ):
                became_chrome[key] = line
            (counted if key in known else new).append(key)
        if self._arrays:
            if new:
                self.conn.execute(_PG_NEW_LINES, {"host": host, "keys": new, "before": before, "now": now})
            if counted:
                self.conn.execute(_PG_COUNT_LINES, {"site": host, "keys": counted})
        else:
            if new:
                first_seen = {
                    "host": host,
                    "articles": 1,
                    "site_articles_at_first": before,
                    "first_seen_at": now,
                }
                self.conn.execute(sa.insert(SITE_LINES), [{**first_seen, "line_key": key} for key in new])
            if counted:
                self.conn.execute(_COUNT_LINE, [{"site": host, "line": key} for key in counted])
        return self._strip_from_site(host, became_chrome)

    def _strip_from_site(self, host: str, chrome: Mapping[str, str]) -> list[int]:
        """Remove lines that just became chrome from the site's stored articles; returns those changed."""
        texts: dict[int, str] = {}
        for line in chrome.values():
            found = self.conn.execute(
                sa.select(_a.id, _a.text).where(
                    _a.site == host, _a.state == MATCHED, _a.text.contains(line, autoescape=True)
                )
            )
            for article_id, text in found:
                texts[article_id] = texts.get(article_id, text or "")
        if not texts:
            return []
        self.conn.execute(
            sa.update(ARTICLES).where(_a.id == sa.bindparam("i")).values(text=sa.bindparam("t")),
            [{"i": i, "t": strip_lines(text, chrome.keys())} for i, text in texts.items()],
        )
        return sorted(texts)

    def store_hits(self, article_id: int, matches: Sequence[TopicMatch], now: datetime) -> None:
        """Add or refresh an article's hits (a refreshed hit keeps its id and creation time)."""
        if not matches:
            return
        existing = set(self.conn.execute(_HIT_TOPICS, {"article": article_id}).scalars())
        rows = [
            {
                "topic_version": m.topic_version,
                "score": m.score,
                "matched": list(m.matched),
                "snippet": m.snippet,
                "explanation": [dict(clause) for clause in m.explanation],
            }
            for m in matches
        ]
        new = [
            {**row, "article_id": article_id, "topic_id": m.topic_id, "created_at": now}
            for m, row in zip(matches, rows, strict=True)
            if m.topic_id not in existing
        ]
        if new:
            self.conn.execute(sa.insert(HITS), new)
        refreshed = [
            {**row, "article": article_id, "topic": m.topic_id}
            for m, row in zip(matches, rows, strict=True)
            if m.topic_id in existing
        ]
        if refreshed:
            self.conn.execute(_REFRESH_HIT, refreshed)

    def rematch(self, article_id: int, matches: Sequence[TopicMatch], now: datetime) -> None:
        """Refresh an article's hits after its text changed: update or add those that match, and drop those
        that no longer do unless a digest already carried them."""
        self.conn.execute(
            sa.delete(HITS).where(
                _h.article_id == article_id,
                _h.topic_id.not_in([m.topic_id for m in matches]),
                _h.id.not_in(sa.select(DIGEST_ITEMS.c.hit_id)),
            )
        )
        self.store_hits(article_id, matches, now)

    def archived_by_id(self, article_ids: Sequence[int]) -> list[ArchivedArticle]:
        if not article_ids:
            return []
        return [
            ArchivedArticle(id=i, url=url, title=title, text=text or summary, language=lang, feed=feed)
            for i, url, title, text, summary, lang, feed in self.conn.execute(
                _ARCHIVED, {"ids": list(article_ids)}
            )
        ]

    def checkpoint(self, article_id: int, extracted: ExtractedArticle, *, fetch_error: str | None) -> None:
        """Keep an article's extraction (the costly stage) when it could not be settled, so its retry
        starts at matching instead of fetching and extracting again."""
        a = ARTICLES.c
        row = self.conn.execute(
            sa.select(a.title, a.author, a.published_at).where(a.id == article_id, a.state != MATCHED)
        ).one_or_none()
        if row is None:
            return
        self.conn.execute(
            sa.update(ARTICLES)
            .where(a.id == article_id)
            .values(
                title=extracted.title or row.title,
                text=extracted.text,
                text_source=extracted.source,
                author=extracted.author or row.author,
                site_name=extracted.site_name,
                language=extracted.language,
                page_published_at=extracted.published,
                published_at=row.published_at or extracted.published,
                state=EXTRACTED,
                last_error=fetch_error,
            )
        )

    def record_error(self, article_id: int, *, error: str, retry_at: datetime) -> None:
        """An article that could not be processed: failed, with why, retried at ``retry_at`` (until it has
        failed MAX_ARTICLE_ATTEMPTS times). Its stored extraction, if any, is kept for the retry."""
        a = ARTICLES.c
        self.conn.execute(
            sa.update(ARTICLES)
            .where(a.id == article_id)
            .values(attempts=a.attempts + 1, state=FAILED, last_error=error, next_attempt_at=retry_at)
        )
