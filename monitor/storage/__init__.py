"""Storage: the models, the engine factory and the Storage class, the only code that opens sessions."""

from monitor.storage.engine import ensure_current, make_engine, upgrade
from monitor.storage.storage import (
    ArchivedArticle,
    FeedStatus,
    HitView,
    NewArticle,
    OutboxDigest,
    Storage,
    StoredHit,
    StoryCopy,
    StoryView,
    TopicSpec,
)

__all__ = [
    "ArchivedArticle",
    "FeedStatus",
    "HitView",
    "NewArticle",
    "OutboxDigest",
    "Storage",
    "StoredHit",
    "StoryCopy",
    "StoryView",
    "TopicSpec",
    "ensure_current",
    "make_engine",
    "upgrade",
]
