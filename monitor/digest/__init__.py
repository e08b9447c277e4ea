"""Digests and alerts: which hits a subscription is owed, rendered once, and delivered exactly once to every
channel (email, webhook) through an outbox; and the same digests as an Atom feed or JSON.

A periodic digest (daily or weekly) carries the owed hits of the subscription's topics that do not alert;
an alert carries the owed hits of one alerting topic, as they come, at most ``alerts_per_hour`` an hour.
Both are rows of the same table and carry their hits the same way, so a story alerted is not shown again
by the next digest (only its new sources are), and nothing is owed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_string
from email.policy import SMTP

from monitor.chrome import line_keys
from monitor.config import Settings, SubscriptionConfig
from monitor.digest.build import KIND_ALERT, KIND_DIGEST, Digest, build_digest, split_alert
from monitor.digest.document import digest_id, dumps, loads, to_document
from monitor.digest.feed import DEFAULT_ENTRIES, atom_feed, json_export
from monitor.digest.render import compose_message, new_message_id, render_html, render_text
from monitor.digest.schedule import next_scheduled
from monitor.digest.send import send_message
from monitor.digest.summary import lead
from monitor.digest.webhook import post_webhook
from monitor.errors import ConfigError, DeliveryError
from monitor.storage import HitView, OutboxDelivery, Storage
from monitor.storage.storage import DIGEST_EMPTY, DIGEST_SENDING, DIGEST_SENT

__all__ = [
    "AlertPreview",
    "DeliveryResult",
    "Digest",
    "Preview",
    "alert_wait",
    "deliver_alerts",
    "deliver_digest",
    "export_digests",
    "owed_hit_ids",
    "prepare_alert",
    "prepare_digest",
    "preview_digest",
    "render_html",
    "render_text",
    "retry_delay",
]

log = logging.getLogger(__name__)

#: after a failed send, a delivery is retried after this, doubling with each failure up to RETRY_MAX
RETRY_FIRST = timedelta(minutes=2)
RETRY_MAX = timedelta(hours=1)
#: a server's Retry-After is honoured up to this
RETRY_AFTER_MAX = timedelta(hours=24)
#: the span the alert rate limit counts in
ALERT_WINDOW = timedelta(hours=1)
#: a line the site shows in this many of its articles is its furniture, never a story's summary
_FURNITURE_ARTICLES = 2


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    #: "sent", "empty" (nothing to send and the subscription does not want empty digests), "dry-run", or
    #: "sending" (some channel still waits for a retry)
    status: str
    subject: str
    #: the hits it carries
    hits: int
    kind: str = KIND_DIGEST
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class AlertPreview:
    """The alert a topic would send now, and when the rate limit lets it go (None: at once)."""

    digest: Digest
    wait: datetime | None


@dataclass(frozen=True, slots=True)
class Preview:
    """What a subscription's next digest would contain so far, when it is due, and the alerts waiting."""

    subscription: SubscriptionConfig
    #: the periodic digest (for as-it-happens: every story waiting for an alert, together)
    digest: Digest
    #: when the periodic digest is due (None: as-it-happens)
    next_at: datetime | None
    alerts: dict[str, AlertPreview]


def retry_delay(failures: int) -> timedelta:
    """How long a delivery waits after its ``failures``-th failed send."""
    return min(RETRY_MAX, RETRY_FIRST * (1 << min(failures - 1, 10)))


def prepare_digest(storage: Storage, subscription: SubscriptionConfig, *, now: datetime) -> Digest:
    """The periodic digest the subscription would get now: every hit of its non-alerting topics it is owed
    and nothing of it carries yet."""
    return _prepare(storage, subscription, subscription.digest_topics, KIND_DIGEST, now)


def prepare_alert(storage: Storage, subscription: SubscriptionConfig, topic: str, *, now: datetime) -> Digest:
    """The alert of ``topic`` the subscription would get now: its owed hits not alerted yet."""
    return _prepare(storage, subscription, [topic], KIND_ALERT, now)


def preview_digest(storage: Storage, subscription: SubscriptionConfig, *, now: datetime) -> Preview:
    """What the subscription's next scheduled digest would contain if it went out now, and the stories
    each alerting topic has waiting; nothing is recorded."""
    topics = subscription.digest_topics if subscription.periodic else subscription.topics
    alerts = {}
    for topic in subscription.alert_topics:
        alert = prepare_alert(storage, subscription, topic, now=now)
        if alert.count:
            alerts[topic] = AlertPreview(alert, alert_wait(storage, subscription, topic, now))
    return Preview(
        subscription=subscription,
        digest=_prepare(storage, subscription, topics, KIND_DIGEST, now),
        next_at=next_scheduled(subscription, now),
        alerts=alerts,
    )


def _prepare(
    storage: Storage, subscription: SubscriptionConfig, topics: list[str], kind: str, now: datetime
) -> Digest:
    storage.sync_subscriptions([subscription], now)
    start, hits = storage.undelivered_hits(subscription, until=now, topics=topics, kind=kind)
    story_ids = {h.story_id for h in hits if h.story_id is not None}
    return build_digest(
        subscription.name,
        hits,
        copies=storage.story_copies(story_ids),
        already_sent=storage.stories_delivered(subscription.name, story_ids),
        exclude_reposts_older_than=subscription.exclude_reposts_older_than,
        window_start=start,
        window_end=now,
        zone=subscription.zone,
        topic_order=topics,
        leads=_leads(storage, hits),
        kind=kind,
        schedule=subscription.schedule,
    )


def _leads(storage: Storage, hits: Sequence[HitView]) -> dict[int, str]:
    """Each hit's article's summary: its lead, past the lines its site repeats in other articles."""
    titles = {h.article_id: h.title for h in hits}
    leads = {}
    for article_id, (text, feed_summary, site) in storage.article_leads(titles.keys()).items():
        body = text or feed_summary
        furniture: list[str] = []
        if site:
            lines = line_keys(body)
            repeated = storage.repeated_site_lines(site, lines.keys(), at_least=_FURNITURE_ARTICLES)
            furniture = [lines[k] for k in repeated]
        leads[article_id] = lead(body, title=titles[article_id], furniture=furniture)
    return leads


def owed_hit_ids(storage: Storage, subscriptions: Sequence[SubscriptionConfig], *, now: datetime) -> set[int]:
    """The hits some subscription's next digest or alert would carry: what pruning must keep."""
    return {hit.id for sub in subscriptions for hit in storage.undelivered_hits(sub, until=now)[1]}


def deliver_digest(
    storage: Storage,
    subscription: SubscriptionConfig,
    settings: Settings,
    *,
    now: datetime,
    dry_run: bool = False,
    only_due: bool = False,
) -> DeliveryResult:
    """Send the subscription's periodic digest: the one left in the outbox by a failure or a crash if there
    is one (the same message again, to the channels that have not taken it; with ``only_due``, only those
    whose retry time has come), else a new one of every hit it is owed.

    A new digest is stored with its content and one delivery per channel before any server sees it, and
    marked sent once every channel took it; its hits count as carried from the start, so no other digest
    takes them. A failure leaves the delivery in the outbox with the time of its next attempt and is raised
    as DeliveryError. A crash between a server taking it and the commit makes it go out again, the same
    message with the same Message-ID (and the same X-Monitor-Delivery for a webhook).
    """
    if not dry_run and (pending := storage.outbox(subscription.name, kind=KIND_DIGEST)):
        return _send_pending(storage, subscription, settings, pending, now, only_due=only_due)
    digest = prepare_digest(storage, subscription, now=now)
    if dry_run:
        return DeliveryResult("dry-run", digest.subject, len(digest.hit_ids))
    if not digest.count and not subscription.send_empty:  # what it carried needs no sending, only recording
        _record_empty(storage, digest, now)
        return DeliveryResult(DIGEST_EMPTY, digest.subject, len(digest.hit_ids))
    return _publish(storage, subscription, settings, digest, now)


def alert_wait(
    storage: Storage, subscription: SubscriptionConfig, topic: str, now: datetime
) -> datetime | None:
    """When the next alert of ``topic`` may go out, if the rate limit holds it back now (else None)."""
    recent = storage.alerts_since(subscription.name, topic, now - ALERT_WINDOW)
    if len(recent) < subscription.alerts_per_hour:
        return None
    return recent[len(recent) - subscription.alerts_per_hour] + ALERT_WINDOW


def deliver_alerts(
    storage: Storage,
    subscription: SubscriptionConfig,
    settings: Settings,
    *,
    now: datetime,
    only_due: bool = True,
) -> list[DeliveryResult]:
    """Send each alerting topic's alerts: one in the outbox when its retry time has come, else a short
    alert per story owed since the last, as many as the rate limit allows (the last allowed one carries
    the rest together; with none allowed, the stories wait). Every topic is tried; failures are raised at
    the end as one DeliveryError."""
    results, failures = [], []
    for topic in subscription.alert_topics:
        try:
            results += _deliver_topic_alerts(storage, subscription, settings, topic, now, only_due=only_due)
        except DeliveryError as exc:
            failures.append(exc.reason)
    if failures:
        raise DeliveryError(subscription.name, "; ".join(failures))
    return results


def _deliver_topic_alerts(
    storage: Storage,
    subscription: SubscriptionConfig,
    settings: Settings,
    topic: str,
    now: datetime,
    *,
    only_due: bool,
) -> list[DeliveryResult]:
    pending = storage.outbox(subscription.name, kind=KIND_ALERT, topic=topic)
    if pending:  # a failed alert goes first; the stories after it wait
        if not only_due or any(d.next_attempt_at <= now for d in pending):
            return [_send_pending(storage, subscription, settings, pending, now, only_due=only_due)]
        return []
    allowance = subscription.alerts_per_hour - len(
        storage.alerts_since(subscription.name, topic, now - ALERT_WINDOW)
    )
    if allowance < 1:
        return []
    alert = prepare_alert(storage, subscription, topic, now=now)
    if not alert.hit_ids:
        return []
    if not alert.count:  # only more sources of stories already sent, or stale reposts
        _record_empty(storage, alert, now)
        return []
    results = []
    for part in split_alert(alert, allowance):  # a failure stops here: the rest stays owed
        thread = storage.alert_thread(subscription.name, topic)
        results.append(_publish(storage, subscription, settings, part, now, thread=thread))
    return results


def _record_empty(storage: Storage, digest: Digest, now: datetime) -> None:
    storage.record_digest(
        digest.subscription,
        status=DIGEST_EMPTY,
        window_start=digest.window_start,
        window_end=now,
        hit_ids=digest.hit_ids,
        now=now,
        kind=digest.kind,
        topic=digest.topic,
    )


def _publish(
    storage: Storage,
    subscription: SubscriptionConfig,
    settings: Settings,
    digest: Digest,
    now: datetime,
    *,
    thread: tuple[str, str] | None = None,
) -> DeliveryResult:
    """Store the digest with one delivery per channel, then send them."""
    sender = settings.smtp_sender or ""
    message_id = new_message_id(
        kind=digest.kind, subscription=subscription.name, topic=digest.topic, sender=sender
    )
    document = to_document(digest, id=digest_id(message_id))
    stored_document = dumps(document)
    deliveries = []
    if subscription.recipients:
        message = compose_message(
            document,
            message_id=message_id,
            sender=sender,
            recipients=subscription.recipients,
            sent_at=now,
            sender_name=settings.smtp_sender_name,
            unsubscribe_url=settings.unsubscribe_url,
            thread=thread,
        )
        deliveries.append(("email", message.as_string(policy=SMTP)))
    if subscription.webhook is not None:
        deliveries.append(("webhook", stored_document))
    stored = storage.record_digest(
        subscription.name,
        status=DIGEST_SENDING,
        window_start=digest.window_start,
        window_end=now,
        hit_ids=digest.hit_ids,
        now=now,
        kind=digest.kind,
        topic=digest.topic,
        message_id=message_id,
        document=stored_document,
        deliveries=deliveries,
    )
    pending = [d for d in storage.outbox(subscription.name, kind=digest.kind) if d.digest_id == stored]
    return _send_pending(storage, subscription, settings, pending, now, only_due=False)


def _send_pending(
    storage: Storage,
    subscription: SubscriptionConfig,
    settings: Settings,
    pending: Sequence[OutboxDelivery],
    now: datetime,
    *,
    only_due: bool,
) -> DeliveryResult:
    """Send one digest's waiting deliveries (one outbox entry per channel); each failure is recorded on
    its delivery with its next attempt, and all are raised together."""
    first_digest = pending[0].digest_id
    pending = [d for d in pending if d.digest_id == first_digest]
    failures: list[str] = []
    done = False
    for delivery in pending:
        if only_due and delivery.next_attempt_at > now:
            continue
        try:
            _send(delivery, subscription, settings)
        except (DeliveryError, ConfigError) as exc:
            reason = exc.reason if isinstance(exc, DeliveryError) else str(exc)
            wait = retry_delay(delivery.attempts + 1)
            if isinstance(exc, DeliveryError) and exc.retry_after is not None:
                wait = max(wait, min(RETRY_AFTER_MAX, timedelta(seconds=exc.retry_after)))
            storage.delivery_failed(delivery.id, error=reason, retry_at=now + wait)
            failures.append(f"{delivery.channel}: {reason}")
            continue
        done = storage.delivery_sent(delivery.id, now)
        log.info(
            "%s sent by %s",
            delivery.kind,
            delivery.channel,
            extra={
                "subscription": delivery.subscription,
                "topic": delivery.topic,
                "hits": delivery.hit_count,
            },
        )
    if failures:
        raise DeliveryError(subscription.name, "; ".join(failures))
    first = pending[0]
    status = DIGEST_SENT if done else DIGEST_SENDING
    return DeliveryResult(status, _subject(first), first.hit_count, first.kind, first.topic)


def _send(delivery: OutboxDelivery, subscription: SubscriptionConfig, settings: Settings) -> None:
    if delivery.channel == "email":
        send_message(
            message_from_string(delivery.payload, policy=SMTP), settings, subscription=subscription.name
        )
    elif delivery.channel == "webhook":
        if subscription.webhook is None:
            raise DeliveryError(subscription.name, "webhook: no longer configured in feeds.yaml")
        post_webhook(
            delivery.payload,
            subscription.webhook,
            subscription=subscription.name,
            delivery_id=digest_id(delivery.message_id or str(delivery.digest_id)),
            event=delivery.kind,
        )
    else:
        raise DeliveryError(subscription.name, f"unknown channel {delivery.channel!r}")


def _subject(delivery: OutboxDelivery) -> str:
    if delivery.channel == "email":
        return str(message_from_string(delivery.payload, policy=SMTP)["Subject"])
    return str(loads(delivery.payload).get("subject", ""))


def export_digests(
    storage: Storage,
    subscription: SubscriptionConfig,
    fmt: str,
    *,
    now: datetime,
    limit: int = DEFAULT_ENTRIES,
    self_url: str | None = None,
) -> str:
    """The subscription's latest digests and alerts as an Atom feed (``fmt`` "atom") or JSON ("json")."""
    storage.sync_subscriptions([subscription], now)
    published = storage.published_digests(subscription.name, limit=limit)
    if fmt == "atom":
        return atom_feed(subscription.name, published, now=now, self_url=self_url)
    if fmt == "json":
        return json_export(subscription.name, published, now=now)
    raise ConfigError(f"unknown format {fmt!r} (use atom or json)", key="--format")
