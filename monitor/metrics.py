"""What the daemon counts, in Prometheus form (served by ``monitor run --http``, see monitor.http).

Counters and stage latencies are kept in this process as the stream runs; states that live in the database
(articles by state, hits by topic, failing feeds) are read from it at each scrape, so they are right after a
restart too.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.storage import Storage

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

FEED_POLLS = Counter(
    "monitor_feed_polls",
    "Feed polls by result (updated, not_modified, error).",
    ["result"],
    registry=REGISTRY,
)
FEED_ERRORS = Counter(
    "monitor_feed_errors", "Failed feed polls by kind of error.", ["kind"], registry=REGISTRY
)
ARTICLES_PROCESSED = Counter(
    "monitor_articles_processed",
    "Articles processed, by text source (page, feed, error).",
    ["source"],
    registry=REGISTRY,
)
HITS = Counter("monitor_hits_stored", "Hits stored by this process.", registry=REGISTRY)
DIGESTS = Counter(
    "monitor_digests", "Digest deliveries by result (sent, empty, failed).", ["result"], registry=REGISTRY
)
ALERTS = Counter(
    "monitor_alerts", "As-it-happens alerts by result (sent, sending, failed).", ["result"], registry=REGISTRY
)
STAGE_SECONDS = Histogram(
    "monitor_stage_seconds",
    "Time spent per item in each stage of the stream.",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)


class StorageCollector(Collector):
    """Gauges read from the database at each scrape."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def collect(self) -> Iterator[Metric]:
        articles = GaugeMetricFamily("monitor_articles", "Stored articles by state.", labels=["state"])
        for state, count in sorted(self.storage.article_count().items()):
            articles.add_metric([state], count)
        yield articles
        hits = GaugeMetricFamily("monitor_hits", "Stored hits by topic.", labels=["topic"])
        for topic, count in sorted(self.storage.topic_hit_counts().items()):
            hits.add_metric([topic], count)
        yield hits
        feeds = self.storage.feed_statuses()
        failing = GaugeMetricFamily("monitor_feeds", "Active feeds by health.", labels=["health"])
        active = [f for f in feeds if f.active]
        failing.add_metric(["failing"], sum(1 for f in active if f.failing_since or f.disabled_reason))
        failing.add_metric(["ok"], sum(1 for f in active if not (f.failing_since or f.disabled_reason)))
        yield failing
        yield GaugeMetricFamily(
            "monitor_outbox",
            "Deliveries of digests and alerts (one per channel) waiting to be sent.",
            value=self.storage.outbox_size(),
        )
