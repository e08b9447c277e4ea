"""Storage: the models, the engine factory and the Storage class, the only code that opens sessions."""

from monitor.storage.engine import ensure_current, make_engine, upgrade
from monitor.storage.storage import (
    ArchivedArticle,
    DigestRecord,
    FeedStatus,
    HitView,
    NewArticle,
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
    "DigestRecord",
    "FeedStatus",
    "HitView",
    "NewArticle",
    "OutboxDelivery",
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
