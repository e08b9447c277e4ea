"""Site chrome: the lines a site repeats around every article, learned per site and removed.

What the extractor leaves of a page's furniture ("Join our Telegram channel", "Source link", copyright
lines, repeated captions and credits) recurs, word for word, across the articles of one site, while article
text does not. So each line of each stored article is counted per site (by hash); a line seen in at least
``MIN_ARTICLES`` articles of its site, and in at least ``MIN_SHARE`` of the site's articles since it first
appeared, is chrome. The share keeps a site's ordinary recurring sentences ("Thank you.") in the text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

MIN_ARTICLES = 5
MIN_SHARE = 0.5
#: longer lines are paragraphs of text, not furniture; they are neither counted nor removed
MAX_LINE_CHARS = 250


@dataclass(frozen=True, slots=True)
class LineSeen:
    """How often a site has shown a line: in how many articles, out of how many since it first appeared."""

    articles: int
    site_articles_since: int

    @property
    def is_chrome(self) -> bool:
        return self.articles >= MIN_ARTICLES and self.articles >= MIN_SHARE * self.site_articles_since


def line_key(line: str) -> str:
    """A short, stable key for a line: whitespace and case do not make a line new."""
    return hashlib.sha256(" ".join(line.casefold().split()).encode("utf-8")).hexdigest()[:32]


def line_keys(text: str) -> dict[str, str]:
    """The countable lines of a text, key → line (each once)."""
    keys: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip()
        if line and len(line) <= MAX_LINE_CHARS:
            keys.setdefault(line_key(line), line)
    return keys


def strip_lines(text: str, chrome: Collection[str]) -> str:
    """The text without the lines whose keys are in ``chrome`` (blank runs left by them collapsed)."""
    if not chrome:
        return text
    kept: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if line and len(line) <= MAX_LINE_CHARS and line_key(line) in chrome:
            continue
        if not line and kept and not kept[-1].strip():
            continue
        kept.append(raw)
    return "\n".join(kept).strip()


def chrome_keys(seen: Mapping[str, LineSeen]) -> set[str]:
    return {key for key, line in seen.items() if line.is_chrome}
