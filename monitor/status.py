"""What an operator asks first: is every feed polled, is anything stuck, did the digests go out?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.config import MonitorConfig
from monitor.digest.schedule import next_scheduled
from monitor.storage import DigestRecord, FeedStatus, Storage, UnfinishedArticle


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    name: str
    timezone: str
    #: daily, weekly or as-it-happens
    schedule: str
    #: the latest digest recorded; when it is "sending", its delivery failed and is retried at its
    #: next_attempt_at
    last: DigestRecord | None
    #: when the next scheduled digest is due (None: as-it-happens, no periodic digest)
    next_digest_at: datetime | None
    #: the topics that alert as they happen
    alert_topics: list[str]


@dataclass(frozen=True, slots=True)
class WaitingDelivery:
    """A digest or alert one channel has not taken yet: in the outbox, retried at ``next_attempt_at``."""

    subscription: str
    kind: str
    topic: str | None
    channel: str
    attempts: int
    error: str | None
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Status:
    feeds: list[FeedStatus]
    #: articles by state (discovered, extracted, matched, failed)
    articles: dict[str, int]
    #: articles not matched yet, failed ones first
    unfinished: list[UnfinishedArticle]
    subscriptions: list[SubscriptionStatus]
    #: every delivery waiting in the outbox, of every channel, digests and alerts
    outbox: list[WaitingDelivery]
    database_bytes: int


def collect_status(storage: Storage, config: MonitorConfig, now: datetime, *, unfinished: int = 20) -> Status:
    """The state of feeds, the article queue, digests and the database, as of ``now``."""
    last = storage.last_digests()
    return Status(
        feeds=[f for f in storage.feed_statuses() if f.active],
        articles=storage.article_count(),
        unfinished=storage.unfinished_articles(limit=unfinished),
        subscriptions=[
            SubscriptionStatus(
                name=sub.name,
                timezone=sub.timezone,
                schedule=sub.schedule,
                last=last.get(sub.name),
                next_digest_at=next_scheduled(sub, now),
                alert_topics=sub.alert_topics,
            )
            for sub in config.subscriptions
        ],
        outbox=[
            WaitingDelivery(
                subscription=d.subscription,
                kind=d.kind,
                topic=d.topic,
                channel=d.channel,
                attempts=d.attempts,
                error=d.error,
                next_attempt_at=d.next_attempt_at,
            )
            for d in storage.outbox()
        ],
        database_bytes=storage.database_size(),
    )
