"""Article pages → readable content, with trafilatura.

``extract_page`` returns ``None`` when a page has no usable body: an expected outcome (paywalls, dead links,
non-HTML), after which the pipeline falls back to ``from_feed_entry``, the feed's own text.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime, timedelta

from monitor.pool import ProcessPool
from monitor.types import ExtractedArticle, FeedEntry

log = logging.getLogger(__name__)

#: a page body shorter than this is not an article (a teaser, a consent wall, an error page)
MIN_BODY_CHARS = 250
#: a meta description at least this long is taken as the article's lead paragraph
MIN_LEAD_CHARS = 80
_HTML_LANG = re.compile(rb"<html[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)?)", re.IGNORECASE)


def extract_page(content: bytes, *, url: str) -> ExtractedArticle | None:
    """Title, body, author, site, language and date of an article page, or None if it has no usable body."""
    import trafilatura  # here, not at the top: the daemon extracts in worker processes and never needs it
    from trafilatura.settings import Document as TrafilaturaDocument

    if b"\x00" in content[:1024]:
        log.info("page is binary, not HTML", extra={"url": url})
        return None
    try:
        document = trafilatura.bare_extraction(
            content,
            url=url,
            with_metadata=True,
            include_comments=False,
            include_tables=False,
            date_extraction_params=_date_params(),
        )
    except Exception as exc:  # trafilatura/lxml can fail in many ways on hostile pages; none is fatal
        log.warning("extraction failed: %s", exc, extra={"url": url})
        return None
    text = (document.text or "").strip() if isinstance(document, TrafilaturaDocument) else ""
    if len(text) < MIN_BODY_CHARS:
        log.info("page has no usable body (%d chars)", len(text), extra={"url": url})
        return None
    assert isinstance(document, TrafilaturaDocument)
    text = _with_lead(_without_title(text, document.title), document.description)
    lang = _HTML_LANG.search(content[:4096])
    return ExtractedArticle(
        title=_one_line(document.title or ""),
        text=text,
        author=_one_line(document.author or "") or None,
        site_name=_one_line(document.sitename or "") or None,
        language=(document.language or (lang.group(1).decode("ascii") if lang else "")).lower()[:20] or None,
        published=_date(document.date),
        source="page",
    )


def _date_params() -> dict[str, object]:
    """The original publication date from the page's markup only (meta tags, JSON-LD, <time>, the URL):
    htmldate's extensive search also reads dates in the text and in copyright lines ("© 2026" becomes
    1 January 2026), which would make fresh articles look like stale reposts."""
    return {
        "extensive_search": False,
        "original_date": True,
        "max_date": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d"),
    }


def from_feed_entry(entry: FeedEntry) -> ExtractedArticle:
    """The feed's own title and text, when the page gave nothing usable."""
    return ExtractedArticle(
        title=entry.title,
        text=entry.summary,
        author=entry.author,
        site_name=None,
        language=None,
        published=None,
        source="feed",
    )


def _without_title(text: str, title: str | None) -> str:
    """Drop the headline when the body starts with it (an <h1> inside <article>): it is stored apart."""
    first, _, rest = text.partition("\n")
    if title and rest and _one_line(first).casefold() == _one_line(title).casefold():
        return rest.lstrip()
    return text


def _with_lead(text: str, description: str | None) -> str:
    """Put the standfirst back when trafilatura dropped it: news pages repeat their lead paragraph in the
    meta description, and it often holds the one sentence that says who met whom."""
    lead = _one_line(description or "")
    if len(lead) < MIN_LEAD_CHARS or lead.endswith(("...", "…")):
        return text
    if _one_line(lead[:60]).casefold() in _one_line(text[: len(lead) * 3]).casefold():
        return text
    return f"{lead}\n\n{text}"


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def extraction_pool(workers: int | None = None) -> ProcessPool:
    """Processes to extract pages in, one per core by default: trafilatura is pure-Python CPU work that
    threads cannot spread over cores. A page's bytes go in, a small ExtractedArticle comes out."""
    return ProcessPool(workers or os.cpu_count() or 1)
