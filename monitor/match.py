"""The match stage: one article against every topic, through the presearcher, giving the hits to store."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from urllib.parse import urlsplit

from monitor.errors import QueryError
from monitor.storage import TopicSpec
from monitor.topics import Document, TopicIndex, compile_query, prepare
from monitor.types import ExtractedArticle, TopicMatch

log = logging.getLogger(__name__)


class TopicMatcher:
    """The topics, compiled once (with the aliases) into one index, matched against many articles."""

    def __init__(self, topics: Sequence[TopicSpec], aliases: Mapping[str, str] | None = None) -> None:
        aliases = dict(aliases or {})
        self.index: TopicIndex[int] = TopicIndex()
        self.topics: dict[int, TopicSpec] = {}
        for topic in topics:
            try:
                self.index.add(topic.id, compile_query(topic.query, aliases=aliases))
            except QueryError as exc:  # an alias it uses was removed or changed under it; skip it, loudly
                log.error("topic query no longer parses: %s", exc, extra={"topic": topic.name})
                continue
            self.topics[topic.id] = topic

    def match(self, article: ExtractedArticle, *, url: str, feed: str | None = None) -> list[TopicMatch]:
        """The topics this article matches at or above their minimum score, within their filters."""
        if not self.topics:
            return []
        site = urlsplit(url).hostname
        document = prepare(
            Document(title=article.title, text=article.text, site=site, lang=article.language, feed=feed)
        )
        matches = []
        for topic_id, found in self.index.match(document):
            topic = self.topics[topic_id]
            if found.score < topic.min_score or not _within_filters(topic, article.language, site, feed):
                continue
            matches.append(
                TopicMatch(
                    topic_id=topic.id,
                    topic_version=topic.version,
                    score=found.score,
                    matched=list(found.matched),
                    snippet=found.snippet,
                    explanation=[asdict(clause) for clause in found.explanation],
                )
            )
        return matches


def _within_filters(topic: TopicSpec, language: str | None, site: str | None, feed: str | None) -> bool:
    """A topic's language, feed and site limits. An article whose language is unknown is not excluded."""
    if topic.languages and language and language.split("-")[0].lower() not in topic.languages:
        return False
    if topic.feeds and feed not in topic.feeds:
        return False
    host = (site or "").lower()
    return not topic.sites or any(host == s or host.endswith("." + s) for s in topic.sites)
