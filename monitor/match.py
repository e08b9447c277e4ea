"""The match stage: one article against every active topic, giving the hits worth storing."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from monitor.errors import QueryError
from monitor.storage import TopicSpec
from monitor.topics import CompiledQuery, Document, compile_query, evaluate, prepare
from monitor.types import ExtractedArticle, TopicMatch

log = logging.getLogger(__name__)


class TopicMatcher:
    """The active topics, compiled once and matched against many articles."""

    def __init__(self, topics: Sequence[TopicSpec]) -> None:
        self.topics: list[tuple[TopicSpec, CompiledQuery]] = []
        for topic in topics:
            try:
                self.topics.append((topic, compile_query(topic.query)))
            except QueryError as exc:  # stored before the language changed; skip it, loudly
                log.error("topic query no longer parses: %s", exc, extra={"topic": topic.name})
        self.signature = tuple((t.id, t.version, t.min_score) for t in topics)

    def match(
        self,
        article: ExtractedArticle,
        *,
        site: str | None = None,
        feed: str | None = None,
    ) -> list[TopicMatch]:
        """The topics this article matches at or above their minimum score."""
        if not self.topics:
            return []
        document = prepare(
            Document(title=article.title, text=article.text, site=site, lang=article.language, feed=feed)
        )
        matches = []
        for topic, query in self.topics:
            found = evaluate(query, document)
            if found is not None and found.score >= topic.min_score:
                matches.append(
                    TopicMatch(
                        topic_id=topic.id,
                        topic_version=topic.version,
                        score=found.score,
                        matched=list(found.matched),
                        snippet=found.snippet,
                    )
                )
        return matches
