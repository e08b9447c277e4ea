"""Storage: the models, the engine factory and the Storage class, the only code that opens sessions."""

from monitor.storage.engine import ensure_current, make_engine, upgrade
from monitor.storage.storage import (
    FeedStatus,
    HitView,
    NewArticle,
    Storage,
    TopicSpec,
)

__all__ = [
    "FeedStatus",
    "HitView",
    "NewArticle",
    "Storage",
    "TopicSpec",
    "ensure_current",
    "make_engine",
    "upgrade",
]
