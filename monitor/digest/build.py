"""Building a digest: pure functions from hits and their stories to the value the templates render."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from monitor.storage import HitView, StoryCopy

KIND_DIGEST, KIND_ALERT = "digest", "alert"


@dataclass(frozen=True, slots=True)
class StoryEntry:
    """A story new to the subscription: the hit shown for it and the other places it appeared."""

    hit: HitView
    #: the story's other copies, one per source
    also: list[StoryCopy]
    #: every hit of the story this digest carries (the shown one included)
    hit_ids: list[int]
    #: the lead of the shown copy, about two lines (empty when it has no text of its own)
    summary: str = ""


@dataclass(frozen=True, slots=True)
class StoryUpdate:
    """A story an earlier digest already carried, with the sources that reported it since."""

    title: str
    url: str
    sources: list[str]
    hit_ids: list[int]


@dataclass(frozen=True, slots=True)
class TopicSection:
    """The new stories of one topic, best first, and more sources for stories already sent."""

    topic: str
    stories: list[StoryEntry]
    updates: list[StoryUpdate] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Digest:
    """One subscription's digest (or alert) for one window, ready to render."""

    subscription: str
    window_start: datetime
    window_end: datetime
    zone: ZoneInfo
    sections: list[TopicSection]
    #: hits carried but not shown: stale reposts the subscription leaves out
    skipped_hit_ids: list[int] = field(default_factory=list)
    #: "digest" (daily or weekly) or "alert" (as it happens, one topic)
    kind: str = KIND_DIGEST
    #: the topic of an alert
    topic: str | None = None
    #: "daily", "weekly" or "as-it-happens"
    schedule: str = "daily"

    @property
    def hit_ids(self) -> list[int]:
        """Every hit this digest disposes of: once it is sent, none of them is owed any more."""
        carried = [h for s in self.sections for story in s.stories for h in story.hit_ids]
        carried += [h for s in self.sections for update in s.updates for h in update.hit_ids]
        return carried + self.skipped_hit_ids

    @property
    def count(self) -> int:
        """How many new stories it shows."""
        return sum(len(s.stories) for s in self.sections)

    @property
    def topic_counts(self) -> dict[str, int]:
        """New stories per topic, in the digest's order."""
        return {s.topic: len(s.stories) for s in self.sections if s.stories}

    @property
    def window(self) -> str:
        """The window covered, in the subscriber's time zone, as short as it can be said."""
        return window_label(self.window_start, self.window_end, self.zone)

    @property
    def subject(self) -> str:
        """One line, safe for a mail header: the window and the counts (an alert: the topic and the
        headline)."""
        if self.kind == KIND_ALERT:
            stories = [story for s in self.sections for story in s.stories]
            what = stories[0].hit.title if len(stories) == 1 else f"{len(stories)} new stories"
            return one_line(f"Alert, {self.topic}: {what}")
        counts = self.topic_counts
        if not self.count:
            what = "no new stories"
        elif len(counts) <= 3:
            what = f"{_stories(self.count)} ({', '.join(f'{t} {n}' for t, n in counts.items())})"
        else:
            what = f"{_stories(self.count)} in {len(counts)} topics"
        return one_line(f"{self.subscription}: {what} · {self.window}")


def _stories(n: int) -> str:
    return f"{n} new {'story' if n == 1 else 'stories'}"


def window_label(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    """The window as people say it: "Mon 23 Nov 2026, 06:00–09:00", "22–23 Nov 2026",
    "30 Nov – 6 Dec 2026", "28 Dec 2026 – 4 Jan 2027"."""
    a, b = start.astimezone(zone), end.astimezone(zone)
    if a.date() == b.date():
        return f"{b:%a} {b.day} {b:%b %Y}, {a:%H:%M}–{b:%H:%M}"
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day}–{b.day} {b:%b %Y}"
    if a.year == b.year:
        return f"{a.day} {a:%b} – {b.day} {b:%b %Y}"
    return f"{a.day} {a:%b %Y} – {b.day} {b:%b %Y}"


def build_digest(
    subscription: str,
    hits: Sequence[HitView],
    *,
    copies: Mapping[int, Sequence[StoryCopy]],
    already_sent: Collection[int],
    window_start: datetime,
    window_end: datetime,
    zone: ZoneInfo,
    topic_order: Sequence[str],
    exclude_reposts_older_than: timedelta | None = None,
    leads: Mapping[int, str] | None = None,
    kind: str = KIND_DIGEST,
    schedule: str = "daily",
) -> Digest:
    """Group hits by topic (in the subscription's order), then by story: each new story once (under the
    first of its topics), best score first, then newest; stories in ``already_sent`` only as "more
    sources"; stale reposts left out.
    ``leads`` are the summaries of articles by id."""
    leads = leads or {}
    skipped = [h.id for h in hits if _stale(h, exclude_reposts_older_than)]
    kept = [h for h in hits if h.id not in set(skipped)]
    sections = []
    shown: set[int] = set()  # a story matching several topics is shown under the first
    for topic in topic_order:
        groups: dict[int, list[HitView]] = {}
        for hit in (h for h in kept if h.topic == topic):
            groups.setdefault(hit.story_id if hit.story_id is not None else -hit.article_id, []).append(hit)
        stories, updates = [], []
        for story_id, group in groups.items():
            story_copies = list(copies.get(story_id, []))
            if story_id in shown:
                skipped += [h.id for h in group]
            elif story_id in already_sent:
                updates.append(_update(group, story_copies))
            else:
                entry = _entry(group, story_copies)
                stories.append(replace(entry, summary=leads.get(entry.hit.article_id, "")))
                shown.add(story_id)
        stories.sort(key=lambda s: (-s.hit.score, -(s.hit.published or s.hit.created_at).timestamp()))
        if stories or updates:
            sections.append(TopicSection(topic=topic, stories=stories, updates=updates))
    return Digest(
        subscription=subscription,
        window_start=window_start,
        window_end=window_end,
        zone=zone,
        sections=sections,
        skipped_hit_ids=skipped,
        kind=kind,
        topic=topic_order[0] if kind == KIND_ALERT and topic_order else None,
        schedule=schedule,
    )


def split_alert(alert: Digest, allowance: int) -> list[Digest]:
    """An alert per story, best first, while ``allowance`` (alerts the rate limit still allows) lasts; when
    it does not last, the last alert carries the rest together. The first also carries the hits shown in
    none (more sources, stale reposts)."""
    if not alert.sections or allowance < 1:
        return [alert]
    [section] = alert.sections
    stories = section.stories
    if len(stories) <= allowance:
        groups = [[story] for story in stories]
    else:
        groups = [[story] for story in stories[: allowance - 1]] + [stories[allowance - 1 :]]
    return [
        replace(
            alert,
            sections=[TopicSection(section.topic, group, section.updates if i == 0 else [])],
            skipped_hit_ids=alert.skipped_hit_ids if i == 0 else [],
        )
        for i, group in enumerate(groups)
    ]


def _entry(group: list[HitView], copies: list[StoryCopy]) -> StoryEntry:
    """Show the story's representative copy when it is among the hits (copies come representative
    first), else the best-scoring hit; list every other source once."""
    by_article = {h.article_id: h for h in group}
    shown = next((by_article[c.article_id] for c in copies if c.article_id in by_article), None)
    shown = shown or max(group, key=lambda h: h.score)
    also, sources = [], {shown.source}
    for copy in copies:
        if copy.source not in sources and copy.article_id != shown.article_id:
            sources.add(copy.source)
            also.append(copy)
    return StoryEntry(hit=shown, also=also, hit_ids=[h.id for h in group])


def _update(group: list[HitView], copies: list[StoryCopy]) -> StoryUpdate:
    title = copies[0].title if copies else group[0].title
    url = copies[0].url if copies else group[0].url
    return StoryUpdate(
        title=title,
        url=url,
        sources=sorted({h.source for h in group}),
        hit_ids=[h.id for h in group],
    )


def _stale(hit: HitView, limit: timedelta | None) -> bool:
    if limit is None or hit.republished_from is None:
        return False
    return (hit.published or hit.created_at) - hit.republished_from > limit


def one_line(text: str) -> str:
    """Collapse all whitespace, newlines included: nothing article-derived may break a header line."""
    return " ".join(text.split())
