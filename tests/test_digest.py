"""Digests and alerts: built from stored hits, rendered, delivered over real SMTP exactly once."""

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import FeedConfig, Settings, SubscriptionConfig
from monitor.digest import (
    deliver_alerts,
    deliver_digest,
    prepare_digest,
    preview_digest,
    render_html,
    render_text,
)
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
    assert "<i>Putin</i>" not in html and re.search(r"<mark[^>]*>Xi</mark>", html)
    assert "Wire &lt;b&gt;Daily&lt;/b&gt;" in html
    text = render_text(digest)
    assert "Bcc:" in text and "\nBcc:" not in text  # the newline in the title is folded away
    assert "*Xi*" in text and "04:00 CET" in text  # local time of the subscriber
    assert "Why: xi: title + 2× body" in text and "Why: xi: title + 2× body" in html
    assert "xi-putin: 2 · energy: 1" in text  # the counts per topic, in the header too
    assert re.search(r'class="chip"[^>]*>xi-putin <b[^>]*>2</b>', html)


def test_digest_is_delivered_once_over_smtp(storage, smtp):
    sink, port = smtp
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    result = deliver_digest(storage, SUB, settings_for(port), now=NOW + timedelta(hours=1))
    assert result.status == "sent" and len(sink.messages) == 1

    message = email.message_from_bytes(sink.messages[0], policy=email.policy.default)
    assert message["Subject"] == "morning: 3 new stories (xi-putin 2, energy 1) · 22–23 Nov 2026"
    assert message["To"] == "reader@example.org, desk@example.org" and message["Bcc"] is None
    assert message["From"] == "monitor <monitor@example.org>"  # the same on every digest
    assert re.fullmatch(r"<[0-9a-f]{16}\.digest\.morning@example\.org>", message["Message-ID"].strip())
    assert message["Date"].datetime == NOW + timedelta(hours=1)
    assert message["List-Id"] == '"monitor: morning" <morning.example.org>'
    assert message["List-Unsubscribe"] == "<mailto:monitor@example.org?subject=unsubscribe%20morning>"
    assert message["Auto-Submitted"] == "auto-generated" and message["In-Reply-To"] is None
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
    with pytest.raises(DeliveryError, match=r"morning.*email: SMTP 127\.0\.0\.1"):
        deliver_digest(storage, SUB, settings_for(free_port()), now=NOW + timedelta(hours=1))
    [pending] = storage.outbox("morning")
    assert pending.channel == "email" and pending.kind == "digest"
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
    assert (
        result.status == "sent" and result.subject == "quiet: no new stories · Mon 23 Nov 2026, 06:00–07:00"
    )


def test_unconfigured_smtp_is_a_clear_error(storage):
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    with pytest.raises(DeliveryError, match="MONITOR_SMTP_HOST"):
        deliver_digest(storage, SUB, Settings(), now=NOW + timedelta(hours=1))


def add_story(storage, topic: str, title: str, at: datetime, *, score: float = 0.8, key: str | None = None):
    """Store one more article with a hit of ``topic``, found at ``at``."""
    [feed] = storage.all_feeds_for_poll()
    url = f"https://wire.example/{key or title.lower().replace(' ', '-')}"
    entry = FeedEntry(key=url, url=url, title=title, summary="s", author=None, published=at)
    record_entries(storage, feed.id, [NewArticle(entry, url, url)], at)
    [item] = storage.articles_to_process(at)
    text = (
        f"{title}. Chinese President Xi Jinping met Vladimir Putin in Moscow on Tuesday for talks on trade."
    )
    storage.save_article(
        item.id,
        extracted=ExtractedArticle(title, text, None, "Wire", "en", None, "page"),
        matches=[TopicMatch(storage.get_topic(topic).id, 1, score, ["xi"], "«Xi» met Putin")],
        fetch_error=None,
        now=at,
    )


def test_urgent_topics_alert_as_they_happen_threaded_rate_limited_and_not_repeated(storage, smtp):
    sink, port = smtp
    sub = SUB.model_copy(update={"urgent_topics": ["xi-putin"], "alerts_per_hour": 2})
    storage.sync_subscriptions([sub], NOW - timedelta(days=1))
    stored_hits(storage)  # two xi-putin stories and one energy story, stored at NOW
    settings = settings_for(port)

    first = deliver_alerts(storage, sub, settings, now=NOW + timedelta(minutes=1))
    assert [a.subject for a in first] == [  # a short alert per story, best first
        "Alert, xi-putin: Xi and Putin meet in Beijing",
        'Alert, xi-putin: Talks <script>alert("x")</script> & "summit" Bcc: victim@example.org',
    ]
    assert deliver_alerts(storage, sub, settings, now=NOW + timedelta(minutes=2)) == []  # nothing new
    # two alerts in the hour: the limit; the next stories wait, then go out, the last two together
    add_story(storage, "xi-putin", "Xi and Putin hold a second round", NOW + timedelta(minutes=10), score=0.9)
    assert deliver_alerts(storage, sub, settings, now=NOW + timedelta(minutes=11)) == []
    add_story(storage, "xi-putin", "Kremlin confirms visit dates", NOW + timedelta(minutes=20))
    add_story(storage, "xi-putin", "Beijing names delegation", NOW + timedelta(minutes=30), score=0.7)
    assert deliver_alerts(storage, sub, settings, now=NOW + timedelta(minutes=40)) == []
    preview = preview_digest(storage, sub, now=NOW + timedelta(minutes=40))
    assert preview.alerts["xi-putin"].digest.count == 3
    assert preview.alerts["xi-putin"].wait == NOW + timedelta(minutes=61)
    later = deliver_alerts(storage, sub, settings, now=NOW + timedelta(minutes=61, seconds=30))
    assert [a.subject for a in later] == [
        "Alert, xi-putin: Xi and Putin hold a second round",
        "Alert, xi-putin: 2 new stories",
    ]
    assert len(sink.messages) == 4

    alerts = [email.message_from_bytes(m, policy=email.policy.default) for m in sink.messages]
    ids = [a["Message-ID"].strip() for a in alerts]
    assert ".alert.morning.xi-putin@example.org>" in ids[0] and alerts[0]["In-Reply-To"] is None
    assert alerts[1]["In-Reply-To"].strip() == ids[0] and alerts[1]["References"].strip() == ids[0]
    for i in (2, 3):  # each replies to the latest, and refers to the first: one thread per topic
        assert alerts[i]["In-Reply-To"].strip() == ids[i - 1]
        assert alerts[i]["References"].split() == [ids[0], ids[i - 1]]
    batched = alerts[3].get_body(("plain",)).get_content()
    assert "Kremlin confirms visit dates" in batched and "Beijing names delegation" in batched

    # the daily digest has the energy story only: the alerted stories are not repeated
    digest = deliver_digest(storage, sub, settings, now=NOW + timedelta(hours=3))
    assert digest.subject == "morning: 1 new story (energy 1) · 22–23 Nov 2026"
    plain = email.message_from_bytes(sink.messages[-1], policy=email.policy.default).get_body(("plain",))
    text = plain.get_content()
    assert "Pipeline deal signed" in text and "== xi-putin" not in text and "Kremlin confirms" not in text


def test_a_story_already_alerted_comes_back_only_as_more_sources(storage, smtp):
    """The same story in an alerting topic and a digest topic: the digest lists only its new sources."""
    _sink, port = smtp
    sub = SUB.model_copy(update={"urgent_topics": ["xi-putin"]})
    storage.sync_subscriptions([sub], NOW - timedelta(days=1))
    stored_hits(storage)
    deliver_alerts(storage, sub, settings_for(port), now=NOW + timedelta(minutes=1))
    xi_story = storage.hits(topic="xi-putin")[-1]
    [feed] = storage.all_feeds_for_poll()
    url = "https://other.example/copy"
    later = NOW + timedelta(hours=1)
    entry = FeedEntry(key=url, url=url, title=xi_story.title, summary="s", author=None, published=later)
    record_entries(storage, feed.id, [NewArticle(entry, url, url)], later)
    [item] = storage.articles_to_process(later)
    storage.save_article(
        item.id,
        extracted=ExtractedArticle(xi_story.title, "copy", None, "Other Paper", "en", None, "page"),
        matches=[TopicMatch(storage.get_topic("energy").id, 1, 0.9, ["xi"], "«xi»")],
        fetch_error=None,
        now=later,
        story_id=xi_story.story_id,
    )
    digest = prepare_digest(storage, sub, now=later + timedelta(minutes=1))
    [energy] = digest.sections
    assert [s.hit.title for s in energy.stories] == ["Pipeline deal signed"]
    assert [u.sources for u in energy.updates] == [["Other Paper"]]


def test_mail_is_utf8_and_unsubscribe_points_where_configured(storage, smtp):
    sink, port = smtp
    sub = SubscriptionConfig(
        name="evening", recipients=["a@example.org"], topics=["energy"], timezone="Asia/Tokyo"
    )
    storage.sync_subscriptions([sub], NOW - timedelta(days=1))
    stored_hits(storage)
    add_story(storage, "energy", "Путин и Си Цзиньпин: 习近平会见普京", NOW, score=0.95, key="ru")
    settings = settings_for(port).model_copy(
        update={"unsubscribe_url": "https://example.org/unsubscribe?list={subscription}"}
    )
    deliver_digest(storage, sub, settings, now=NOW + timedelta(hours=1))
    raw = sink.messages[0]
    assert raw.isascii()  # every header encoded, bodies transfer-encoded
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"].startswith("evening: 2 new stories (energy 2)")
    assert message["List-Unsubscribe"] == "<https://example.org/unsubscribe?list=evening>"
    html = message.get_body(("html",))
    assert html.get_content_charset() == "utf-8" and "习近平会见普京" in html.get_content()
    assert "Путин и Си Цзиньпин" in message.get_body(("plain",)).get_content()
    assert "JST" in message.get_body(("plain",)).get_content()  # times in the subscriber's zone
