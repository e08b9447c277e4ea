"""Storage: the models, the engine factory and the Storage class, the only code that opens sessions."""

from monitor.storage.articles import ArchivedArticle, ArticleBatch
from monitor.storage.engine import ensure_current, make_engine, upgrade
from monitor.storage.polls import FeedFailed, FeedNotModified, FeedUpdated, NewArticle, PollResult
from monitor.storage.storage import (
    DigestRecord,
    FeedStatus,
    HitView,
    OutboxDelivery,
    PublishedDigest,
    Storage,
    StoredHit,
    StoryCopy,
    StoryView,
    TopicSpec,
    UnfinishedArticle,
)

__all__ = [
    "ArchivedArticle",
    "ArticleBatch",
    "DigestRecord",
    "FeedFailed",
    "FeedNotModified",
    "FeedStatus",
    "FeedUpdated",
    "HitView",
    "NewArticle",
    "OutboxDelivery",
    "PollResult",
    "PublishedDigest",
    "Storage",
    "StoredHit",
    "StoryCopy",
    "StoryView",
    "TopicSpec",
    "UnfinishedArticle",
    "ensure_current",
    "make_engine",
    "upgrade",
]
