"""Building a digest: pure functions from hits to the value the templates render."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from monitor.storage import HitView


@dataclass(frozen=True, slots=True)
class TopicSection:
    """The hits of one topic, best first."""

    topic: str
    hits: list[HitView]


@dataclass(frozen=True, slots=True)
class Digest:
    """One subscription's digest for one window, ready to render."""

    subscription: str
    window_start: datetime
    window_end: datetime
    zone: ZoneInfo
    sections: list[TopicSection]

    @property
    def hit_ids(self) -> list[int]:
        return [h.id for s in self.sections for h in s.hits]

    @property
    def count(self) -> int:
        return sum(len(s.hits) for s in self.sections)

    @property
    def subject(self) -> str:
        """One line, safe for a mail header: the window and the counts."""
        end = self.window_end.astimezone(self.zone)
        topics = len(self.sections)
        noun = "hit" if self.count == 1 else "hits"
        what = (
            f"{self.count} {noun} in {topics} topic{'s' if topics != 1 else ''}"
            if self.count
            else "no new hits"
        )
        return one_line(f"{self.subscription} digest, {end:%a %d %b %Y}: {what}")


def build_digest(
    subscription: str,
    hits: Sequence[HitView],
    *,
    window_start: datetime,
    window_end: datetime,
    zone: ZoneInfo,
    topic_order: Sequence[str],
) -> Digest:
    """Group hits by topic (in the subscription's order), best score first, then newest."""
    sections = []
    for topic in topic_order:
        of_topic = sorted(
            (h for h in hits if h.topic == topic),
            key=lambda h: (-h.score, -(h.published or h.created_at).timestamp()),
        )
        if of_topic:
            sections.append(TopicSection(topic=topic, hits=of_topic))
    return Digest(
        subscription=subscription,
        window_start=window_start,
        window_end=window_end,
        zone=zone,
        sections=sections,
    )


def one_line(text: str) -> str:
    """Collapse all whitespace, newlines included: nothing article-derived may break a header line."""
    return " ".join(text.split())
