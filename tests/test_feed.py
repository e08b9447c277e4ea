"""A subscription's digests as an Atom feed and as JSON, from the stored documents, on real data: the
Kremlin pages of the corpus through the stream, a digest and an alert sent over SMTP, then exported and
served by the daemon's HTTP endpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import feedparser
import httpx

from monitor.config import FeedConfig, MonitorConfig, Settings, SubscriptionConfig
from monitor.digest import deliver_alerts, deliver_digest, export_digests
from monitor.digest.feed import feed_id
from monitor.http import StatusServer
from monitor.metrics import REGISTRY
from monitor.scheduler import Daemon

from conftest import run_pipeline, serve_kremlin

STORY_KEYS = {
    "story_id", "hit_ids", "title", "url", "source", "published", "score", "summary", "summary_highlights",
    "snippet", "snippet_highlights", "matched", "why", "text_source", "republished_from", "also_reported_by",
}  # fmt: skip
DOCUMENT_KEYS = {
    "version", "id", "kind", "subscription", "schedule", "topic", "subject", "timezone", "window", "counts",
    "topics", "status", "created_at",
}  # fmt: skip


def kremlin_digests(storage, site, smtp):
    """The Kremlin selection through the stream; one daily digest of "putin-talks" and one alert of
    "xi-putin" sent."""
    serve_kremlin(site)
    start = datetime.now(UTC) - timedelta(days=1)
    storage.sync_feeds([FeedConfig(name="selection", url=site.url("/selection.rss"))], start)
    storage.add_topic("xi-putin", '"xi jinping" AND putin*', 0.3, start)
    storage.add_topic("putin-talks", "putin* NEAR/10 (talks OR conversation)", 0.3, start)
    sub = SubscriptionConfig(
        name="kremlin",
        recipients=["desk@example.org"],
        topics=["putin-talks", "xi-putin"],
        urgent_topics=["xi-putin"],
        timezone="Europe/Moscow",
        alerts_per_hour=1,
    )
    storage.sync_subscriptions([sub], start)
    now = datetime.now(UTC)
    run_pipeline(storage, lambda: now)
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_sender="monitor@example.org", smtp_security="none"
    )
    [alert] = deliver_alerts(storage, sub, settings, now=now + timedelta(minutes=1))
    digest = deliver_digest(storage, sub, settings, now=now + timedelta(minutes=2))
    assert alert.status == digest.status == "sent"
    return sub, now + timedelta(minutes=3)


def test_atom_export_is_a_valid_feed_of_the_sent_digests(storage, site, smtp):
    sub, now = kremlin_digests(storage, site, smtp)
    atom = export_digests(storage, sub, "atom", now=now)
    parsed = feedparser.parse(atom)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10" and parsed.feed.id == feed_id("kremlin")
    assert parsed.feed.title == "monitor: kremlin"
    digest, alert = parsed.entries  # newest first
    assert digest.title.startswith("kremlin: ") and "(putin-talks " in digest.title
    assert alert.title.startswith("Alert, xi-putin: ")
    assert all(e.id.startswith("urn:uuid:") for e in parsed.entries) and digest.id != alert.id
    assert [t.term for t in alert.tags] == ["xi-putin"]
    content = alert.content[0].value
    assert "Xi Jinping" in content and "Why:" in content and "&lt;mark&gt;Xi Jinping&lt;/mark&gt;" in atom
    assert "<script" not in content and "style=" not in content  # feed readers apply their own styles
    later = feedparser.parse(export_digests(storage, sub, "atom", now=now + timedelta(hours=1)))
    assert [e.id for e in later.entries] == [e.id for e in parsed.entries]  # stable ids: no entry shows twice


def test_json_export_has_the_documented_shape(storage, site, smtp):
    sub, now = kremlin_digests(storage, site, smtp)
    exported = json.loads(export_digests(storage, sub, "json", now=now))
    assert exported["version"] == 1 and exported["subscription"] == "kremlin"
    assert exported["generated_at"].endswith("Z")
    digest, alert = exported["digests"]
    for document in (digest, alert):
        assert set(document) == DOCUMENT_KEYS
        assert set(document["window"]) == {"start", "end", "label"}
        for section in document["topics"]:
            assert set(section) == {"name", "stories", "more_sources"}
            for story in section["stories"]:
                assert set(story) == STORY_KEYS
                for start, end in story["summary_highlights"]:
                    assert story["summary"][start:end].lower() in ("xi jinping", "putin", "xi", "talks")
    assert (digest["kind"], digest["topic"], alert["kind"], alert["topic"]) == (
        "digest",
        None,
        "alert",
        "xi-putin",
    )
    assert [t["name"] for t in digest["topics"]] == ["putin-talks"]  # the alerting topic is not repeated
    stories = [s for t in alert["topics"] for s in t["stories"]]
    assert len(stories) == alert["counts"]["stories"] >= 5
    assert all(s["summary"] and "Kremlin" not in s["summary"][:10] for s in stories)
    assert all(s["url"].startswith("http://127.0.0.1") and s["published"].endswith("Z") for s in stories)


def test_the_daemon_serves_each_subscription_as_atom_and_json(storage, site, smtp):
    sub, now = kremlin_digests(storage, site, smtp)
    daemon = Daemon(None, storage, MonitorConfig(subscriptions=[sub]), Settings(), clock=lambda: now)  # type: ignore[arg-type]
    with StatusServer(("127.0.0.1", 0), daemon.health, REGISTRY, feeds=daemon.feed) as server:
        base = f"http://127.0.0.1:{server.port}"
        atom = httpx.get(f"{base}/feeds/kremlin.atom")
        assert (
            atom.status_code == 200 and atom.headers["content-type"] == "application/atom+xml; charset=utf-8"
        )
        parsed = feedparser.parse(atom.content)
        assert not parsed.bozo and len(parsed.entries) == 2
        assert parsed.feed.links[0].href == f"{base}/feeds/kremlin.atom"  # rel=self, as requested
        data = httpx.get(f"{base}/feeds/kremlin.json")
        assert data.status_code == 200 and len(data.json()["digests"]) == 2
        missing = httpx.get(f"{base}/feeds/evening.atom")
        assert missing.status_code == 404 and "no subscription named 'evening'" in missing.text
        assert httpx.get(f"{base}/feeds/../etc/passwd").status_code == 404
