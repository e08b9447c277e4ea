"""Digests: which hits a subscription is owed, rendered and delivered exactly once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from monitor.config import Settings, SubscriptionConfig
from monitor.digest.build import Digest, build_digest
from monitor.digest.render import compose_message, render_html, render_text
from monitor.digest.send import send_message
from monitor.errors import DeliveryError
from monitor.storage import Storage
from monitor.storage.storage import DIGEST_EMPTY, DIGEST_FAILED, DIGEST_SENT

__all__ = ["DeliveryResult", "Digest", "deliver_digest", "prepare_digest", "render_html", "render_text"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    digest: Digest
    #: "sent", "empty" (nothing to send and the subscription does not want empty digests) or "dry-run"
    status: str


def prepare_digest(storage: Storage, subscription: SubscriptionConfig, *, now: datetime) -> Digest:
    """The digest the subscription would get now: every hit it is owed and has not been sent."""
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


def deliver_digest(
    storage: Storage,
    subscription: SubscriptionConfig,
    settings: Settings,
    *,
    now: datetime,
    dry_run: bool = False,
) -> DeliveryResult:
    """Build, send and record a digest. Its hits count as delivered only once the SMTP server took it;
    a failure is recorded as a failed digest (its hits stay owed) and raised as DeliveryError."""
    digest = prepare_digest(storage, subscription, now=now)
    if dry_run:
        return DeliveryResult(digest, "dry-run")
    record = partial(
        storage.record_digest, subscription.name, window_start=digest.window_start, window_end=now, now=now
    )
    if not digest.count and not subscription.send_empty:  # what it carried needs no sending, only recording
        record(status=DIGEST_EMPTY, hit_ids=digest.hit_ids)
        return DeliveryResult(digest, DIGEST_EMPTY)
    message = compose_message(digest, sender=settings.smtp_sender or "", recipients=subscription.recipients)
    try:
        send_message(message, settings, subscription=subscription.name)
    except DeliveryError as exc:
        record(status=DIGEST_FAILED, hit_ids=[], error=exc.reason)
        raise
    record(status=DIGEST_SENT, hit_ids=digest.hit_ids, message_id=message["Message-ID"])
    log.info("digest sent", extra={"subscription": subscription.name, "hits": digest.count})
    return DeliveryResult(digest, DIGEST_SENT)
