"""Digests: which hits a subscription is owed, rendered and delivered exactly once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_string
from email.policy import SMTP
from functools import partial

from monitor.config import Settings, SubscriptionConfig
from monitor.digest.build import Digest, build_digest
from monitor.digest.render import compose_message, render_html, render_text
from monitor.digest.send import send_message
from monitor.errors import DeliveryError
from monitor.storage import OutboxDigest, Storage
from monitor.storage.storage import DIGEST_EMPTY, DIGEST_SENDING, DIGEST_SENT

__all__ = [
    "DeliveryResult",
    "Digest",
    "deliver_digest",
    "owed_hit_ids",
    "prepare_digest",
    "render_html",
    "render_text",
    "retry_delay",
]

log = logging.getLogger(__name__)

#: after a failed send, the digest is retried after this, doubling with each failure up to RETRY_MAX
RETRY_FIRST = timedelta(minutes=2)
RETRY_MAX = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    #: "sent", "empty" (nothing to send and the subscription does not want empty digests) or "dry-run"
    status: str
    subject: str
    #: the hits it carries
    hits: int


def retry_delay(failures: int) -> timedelta:
    """How long a digest waits after its ``failures``-th failed send."""
    return min(RETRY_MAX, RETRY_FIRST * (1 << min(failures - 1, 10)))


def prepare_digest(storage: Storage, subscription: SubscriptionConfig, *, now: datetime) -> Digest:
    """The digest the subscription would get now: every hit it is owed and no digest carries yet."""
    storage.sync_subscriptions([subscription], now)
    start, hits = storage.undelivered_hits(subscription, until=now)
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
        topic_order=subscription.topics,
    )


def owed_hit_ids(storage: Storage, subscriptions: Sequence[SubscriptionConfig], *, now: datetime) -> set[int]:
    """The hits some subscription's next digest would carry: what pruning must keep."""
    return {hit.id for sub in subscriptions for hit in storage.undelivered_hits(sub, until=now)[1]}


def deliver_digest(
    storage: Storage,
    subscription: SubscriptionConfig,
    settings: Settings,
    *,
    now: datetime,
    dry_run: bool = False,
) -> DeliveryResult:
    """Send the subscription's digest: the one left in the outbox by a failure or a crash if there is one
    (the same message again), else a new one of every hit it is owed.

    A new digest is stored with its message before the SMTP server sees it, and marked sent once the server
    took it; its hits count as delivered only then. A failure leaves it in the outbox with the time of its
    next attempt and is raised as DeliveryError. A crash between the server taking it and the commit makes
    it go out again with the same Message-ID, which mail clients recognise as the same message.
    """
    if not dry_run and (pending := storage.outbox(subscription.name)):
        return _send(storage, pending[0], settings, now)
    digest = prepare_digest(storage, subscription, now=now)
    if dry_run:
        return DeliveryResult("dry-run", digest.subject, len(digest.hit_ids))
    record = partial(
        storage.record_digest, subscription.name, window_start=digest.window_start, window_end=now, now=now
    )
    if not digest.count and not subscription.send_empty:  # what it carried needs no sending, only recording
        record(status=DIGEST_EMPTY, hit_ids=digest.hit_ids)
        return DeliveryResult(DIGEST_EMPTY, digest.subject, len(digest.hit_ids))
    message = compose_message(digest, sender=settings.smtp_sender or "", recipients=subscription.recipients)
    text = message.as_string(policy=SMTP)
    message_id = str(message["Message-ID"])
    digest_id = record(status=DIGEST_SENDING, hit_ids=digest.hit_ids, message_id=message_id, message=text)
    outgoing = OutboxDigest(
        id=digest_id,
        subscription=subscription.name,
        message=text,
        message_id=message_id,
        hit_count=len(digest.hit_ids),
        attempts=0,
        error=None,
        next_attempt_at=now,
    )
    return _send(storage, outgoing, settings, now)


def _send(storage: Storage, digest: OutboxDigest, settings: Settings, now: datetime) -> DeliveryResult:
    message = message_from_string(digest.message, policy=SMTP)
    try:
        send_message(message, settings, subscription=digest.subscription)
    except DeliveryError as exc:
        storage.digest_failed(digest.id, error=exc.reason, retry_at=now + retry_delay(digest.attempts + 1))
        raise
    storage.digest_sent(digest.id, now)
    log.info("digest sent", extra={"subscription": digest.subscription, "hits": digest.hit_count})
    return DeliveryResult(DIGEST_SENT, str(message["Subject"]), digest.hit_count)
