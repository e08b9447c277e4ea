"""Digests: built from stored hits, rendered, delivered over real SMTP exactly once."""

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import FeedConfig, Settings, SubscriptionConfig
from monitor.digest import deliver_digest, prepare_digest, render_html, render_text
from monitor.errors import DeliveryError
from monitor.storage import NewArticle
from monitor.types import ExtractedArticle, FeedEntry, TopicMatch

from conftest import free_port, record_entries

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
HOSTILE = 'Talks <script>alert("x")</script> & "summit"\r\nBcc: victim@example.org'


def stored_hits(storage, *, at=NOW):
    """Three articles stored with hits on two topics; one title is hostile HTML with a header injection."""
    storage.sync_feeds([FeedConfig(name="wire", url="https://wire.example/rss")], at - timedelta(days=2))
    [feed] = storage.all_feeds_for_poll()
    topics = {
        name: storage.add_topic(name, "xi", 0.3, at - timedelta(days=2)) for name in ("xi-putin", "energy")
    }
    rows = [
        ("https://wire.example/1", "Xi and Putin meet in Beijing", "xi-putin", 0.9),
        ("https://wire.example/2", HOSTILE, "xi-putin", 0.5),
        ("https://wire.example/3", "Pipeline deal signed", "energy", 0.7),
    ]
    entries = [
        NewArticle(
            FeedEntry(key=u, url=u, title=t, summary="s", author=None, published=at - timedelta(hours=3)),
            u,
            u,
        )
        for u, t, _, _ in rows
    ]
    record_entries(storage, feed.id, entries, at)
    for item, (_, title, topic, score) in zip(storage.articles_to_process(at), rows, strict=True):
        extracted = ExtractedArticle(
            title=title,
            text="body",
            author=None,
            site_name="Wire <b>Daily</b>",
            language="en",
            published=None,
            source="page",
        )
        match = TopicMatch(
            topic_id=topics[topic].id,
            topic_version=1,
            score=score,
            matched=["xi"],
            snippet="… «Xi» met <i>Putin</i> …",
            explanation=[{"term": "xi", "title": 1, "body": 2}],
        )
        storage.save_article(item.id, extracted=extracted, matches=[match], fetch_error=None, now=at)


SUB = SubscriptionConfig(
    name="morning",
    recipients=["reader@example.org", "desk@example.org"],
    topics=["xi-putin", "energy"],
    timezone="Europe/Berlin",
)


def settings_for(port: int) -> Settings:
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_sender="monitor@example.org",
        smtp_security="none",
        smtp_timeout=5,
    )


def test_render_groups_by_topic_and_escapes(storage):
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    digest = prepare_digest(storage, SUB, now=NOW + timedelta(hours=1))
    assert [s.topic for s in digest.sections] == ["xi-putin", "energy"]
    assert [s.hit.score for s in digest.sections[0].stories] == [0.9, 0.5]
    html = render_html(digest)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<i>Putin</i>" not in html and "<mark>Xi</mark>" in html
    assert "Wire &lt;b&gt;Daily&lt;/b&gt;" in html
    text = render_text(digest)
    assert "Bcc:" in text and "\nBcc:" not in text  # the newline in the title is folded away
    assert "*Xi*" in text and "08:00 CET" in text  # local time of the subscriber
    assert "Why: xi: title + 2× body" in text and "Why: xi: title + 2× body" in html


def test_digest_is_delivered_once_over_smtp(storage, smtp):
    sink, port = smtp
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    result = deliver_digest(storage, SUB, settings_for(port), now=NOW + timedelta(hours=1))
    assert result.status == "sent" and len(sink.messages) == 1

    message = email.message_from_bytes(sink.messages[0], policy=email.policy.default)
    assert message["Subject"] == "morning digest, Mon 23 Nov 2026: 3 new stories in 2 topics"
    assert message["To"] == "reader@example.org, desk@example.org" and message["Bcc"] is None
    assert message["Message-ID"] and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert plain.index("== xi-putin (2) ==") < plain.index("== energy (1) ==")
    assert html.index("Xi and Putin meet in Beijing") < html.index("Pipeline deal signed")
    assert "<script>" not in html and "&lt;script&gt;" in html

    again = deliver_digest(storage, SUB, settings_for(port), now=NOW + timedelta(hours=2))
    assert again.status == "empty" and len(sink.messages) == 1  # nothing is sent twice


def test_smtp_failure_keeps_hits_for_the_next_attempt(storage, smtp):
    sink, port = smtp
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    with pytest.raises(DeliveryError, match=r"morning.*SMTP 127\.0\.0\.1"):
        deliver_digest(storage, SUB, settings_for(free_port()), now=NOW + timedelta(hours=1))
    [pending] = storage.outbox("morning")
    assert pending.attempts == 1 and pending.next_attempt_at == NOW + timedelta(hours=1, minutes=2)
    assert not any(h.delivered for h in storage.topic_hits(storage.get_topic("energy").id).values())
    result = deliver_digest(storage, SUB, settings_for(port), now=NOW + timedelta(hours=2))
    assert result.status == "sent" and result.hits == 3 and len(sink.messages) == 1
    assert storage.outbox() == []


def test_new_hits_after_a_digest_go_to_the_next_one(storage, smtp):
    _, port = smtp
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    deliver_digest(storage, SUB, settings_for(port), now=NOW + timedelta(hours=1))
    topic = storage.get_topic("energy")
    [feed] = storage.all_feeds_for_poll()
    later = NOW + timedelta(hours=5)
    url = "https://wire.example/4"
    record_entries(
        storage,
        feed.id,
        [
            NewArticle(
                FeedEntry(key=url, url=url, title="Later news", summary="s", author=None, published=later),
                url,
                url,
            )
        ],
        later,
    )
    [item] = storage.articles_to_process(later)
    storage.save_article(
        item.id,
        extracted=ExtractedArticle("Later news", "b", None, None, None, None, "page"),
        matches=[TopicMatch(topic.id, 1, 0.6, ["xi"], "«xi»")],
        fetch_error=None,
        now=later,
    )
    digest = prepare_digest(storage, SUB, now=later + timedelta(hours=1))
    assert [e.hit.title for s in digest.sections for e in s.stories] == ["Later news"]
    assert digest.window_start == NOW + timedelta(hours=1)


def test_min_score_and_empty_digests(storage, smtp):
    _, port = smtp
    picky = SUB.model_copy(update={"min_score": 0.8})
    storage.sync_subscriptions([picky], NOW - timedelta(days=1))
    stored_hits(storage)
    assert prepare_digest(storage, picky, now=NOW + timedelta(hours=1)).count == 1
    wants_empty = SubscriptionConfig(
        name="quiet", recipients=["a@example.org"], topics=["none-yet"], send_empty=True
    )
    storage.sync_subscriptions([wants_empty], NOW)
    result = deliver_digest(storage, wants_empty, settings_for(port), now=NOW + timedelta(hours=1))
    assert result.status == "sent" and "no new stories" in result.subject


def test_unconfigured_smtp_is_a_clear_error(storage):
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    with pytest.raises(DeliveryError, match="MONITOR_SMTP_HOST"):
        deliver_digest(storage, SUB, Settings(), now=NOW + timedelta(hours=1))
