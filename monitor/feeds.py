"""Feed documents → entries, with feedparser.

A "bozo" (malformed) feed that still yields entries is accepted with a warning. Each entry gets a stable key
(guid, else canonical link, else a hash of its title) and an absolute link, resolved against the feed URL.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from xml.sax import SAXParseException

import feedparser
import lxml.html
from lxml.etree import ParserError

from monitor.errors import FeedParseError
from monitor.types import FeedEntry, ParsedFeed
from monitor.urls import canonical_url

MAX_TITLE_CHARS = 1000
#: what feedparser flags about a document it parsed fine: a missing or contradicting Content-Type or charset
_BENIGN_COMPLAINTS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


def parse_feed(content: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse a fetched feed body; raises FeedParseError when it is not a usable feed."""
    if not content.strip():
        raise FeedParseError(url, "the response body is empty", kind="empty")
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    try:
        # entries are kept as plain text (html_to_text drops scripts and markup), so feedparser's HTML
        # sanitizer and its rewriting of links inside that HTML would be work thrown away (a third of its
        # time on feeds with HTML content)
        document = feedparser.parse(
            content, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
        )
    except Exception as exc:  # feedparser raises assorted errors on hostile input; all mean "unusable"
        raise FeedParseError(url, f"{type(exc).__name__}: {exc}") from None
    problem = document.get("bozo_exception") if document.get("bozo") else None
    entries = [e for e in (_entry(raw, url) for raw in document.entries) if e is not None]
    broken = problem is not None and not isinstance(problem, _BENIGN_COMPLAINTS)
    if not entries and (broken or not document.get("version")):
        if b"<html" in content[:2048].lower():
            linked = linked_feeds(content, url)
            offer = f"; it links to these feeds: {', '.join(linked)}" if linked else ""
            raise FeedParseError(
                url, f"an HTML page, not an RSS/Atom feed{offer}", kind="html", linked_feeds=tuple(linked)
            )
        raise FeedParseError(
            url, _describe(problem) if problem and broken else "no RSS or Atom document found"
        )
    title = _clean_line(document.feed.get("title", "")) or None
    return ParsedFeed(title=title, entries=entries, warning=str(problem) if problem else None)


_FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json", "application/rdf+xml")


def linked_feeds(page: bytes, url: str) -> list[str]:
    """The feeds an HTML page announces (<link rel="alternate" type="application/rss+xml" href=…>),
    absolute, in page order: what to offer when a feed URL turns out to be a web page."""
    try:
        tree = lxml.html.fromstring(page)
    except (ValueError, ParserError):
        return []
    found: list[str] = []
    for link in tree.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").lower().split(";")[0].strip()
        href = (link.get("href") or "").strip()
        if "alternate" in rel and kind in _FEED_TYPES and href:
            absolute = urljoin(url, href)
            if absolute not in found:
                found.append(absolute)
    return found


def _describe(problem: Exception) -> str:
    if isinstance(problem, SAXParseException):
        return f"malformed XML at line {problem.getLineNumber()}: {problem.getMessage()}"
    return f"{type(problem).__name__}: {problem}"


def _entry(raw: Any, feed_url: str) -> FeedEntry | None:
    link = raw.get("feedburner_origlink") or raw.get("link") or _alternate_link(raw)
    link = urljoin(feed_url, link.strip()) if link else None
    if link and not link.startswith(("http://", "https://")):
        link = None
    title = _title(raw)[:MAX_TITLE_CHARS]
    summary = _summary(raw)
    if not (link or title or summary):
        return None
    guid = (raw.get("id") or "").strip()
    if guid:
        key = guid
    elif link:
        key = canonical_url(link)
    else:
        key = "title:" + hashlib.sha256((title or summary).encode()).hexdigest()
    return FeedEntry(
        key=key,
        url=link,
        title=title or _first_words(summary),
        summary=summary,
        author=_clean_line(raw.get("author", "")) or None,
        published=_published(raw),
    )


def _title(raw: Any) -> str:
    """The entry's title as one line of text (a title of type html or xhtml has its markup removed)."""
    title = raw.get("title", "")
    kind = (raw.get("title_detail") or {}).get("type", "")
    if "html" in kind and "<" in title:
        return " ".join(html_to_text(title).split())
    return _clean_line(title)


def _alternate_link(raw: Any) -> str | None:
    for link in raw.get("links", []):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return str(link["href"])
    return None


def _summary(raw: Any) -> str:
    """The entry's own text: the longest of its content and summary, as plain text."""
    candidates = [c.get("value", "") for c in raw.get("content", [])] + [raw.get("summary", "")]
    texts = [html_to_text(c) for c in candidates if c]
    return max(texts, key=len, default="")


def _published(raw: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value: time.struct_time | None = raw.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


_BLOCK_TAGS = re.compile(r"(?i)<\s*(br|/p|/div|/li|/h[1-6]|/tr|/blockquote)\b[^>]*>")


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, paragraphs kept as blank-line-separated blocks."""
    if "<" not in fragment:
        return _clean_block(html.unescape(fragment))
    try:
        root = lxml.html.fromstring(_BLOCK_TAGS.sub(lambda m: m.group(0) + "\n\n", fragment))
    except (ParserError, ValueError):
        return _clean_block(html.unescape(re.sub(r"<[^>]+>", " ", fragment)))
    for bad in root.xpath("//script|//style"):
        bad.drop_tree()
    return _clean_block(root.text_content())


def _clean_block(text: str) -> str:
    paragraphs = (re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)


def _clean_line(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def _first_words(text: str, n: int = 12) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")
