"""What an operator asks first: is every feed polled, is anything stuck, did the digests go out?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.config import MonitorConfig
from monitor.scheduler import next_scheduled
from monitor.storage import DigestRecord, FeedStatus, Storage, UnfinishedArticle


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    name: str
    timezone: str
    #: the latest digest recorded; when it is "sending", its delivery failed and is retried at its
    #: next_attempt_at
    last: DigestRecord | None
    #: when the next scheduled digest is due
    next_digest_at: datetime


@dataclass(frozen=True, slots=True)
class Status:
    feeds: list[FeedStatus]
    #: articles by state (discovered, extracted, matched, failed)
    articles: dict[str, int]
    #: articles not matched yet, failed ones first
    unfinished: list[UnfinishedArticle]
    subscriptions: list[SubscriptionStatus]
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
                last=last.get(sub.name),
                next_digest_at=next_scheduled(sub, now),
            )
            for sub in config.subscriptions
        ],
        database_bytes=storage.database_size(),
    )
