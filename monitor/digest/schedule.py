"""When a subscription's periodic digest is due: daily or weekly at a local time, decided as instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from monitor.config import SubscriptionConfig


def _scheduled_on(subscription: SubscriptionConfig, day: date) -> datetime | None:
    """The digest's moment on a local day, if the subscription has one that day."""
    if subscription.schedule == "weekly" and day.weekday() != subscription.weekday_number:
        return None
    return datetime.combine(day, subscription.time, tzinfo=subscription.zone)


def last_scheduled(subscription: SubscriptionConfig, now: datetime) -> datetime | None:
    """The most recent moment, at or before ``now``, at which the subscription's digest was due (daily, or
    weekly on its weekday); None for as-it-happens, which has no periodic digest.

    Wall-clock times are resolved by zoneinfo: a time repeated on a fall-back day means its first occurrence,
    a time skipped on a spring-forward day means the same offset as before the change (an hour later).
    """
    if not subscription.periodic:
        return None
    local_day = now.astimezone(subscription.zone).date()
    for back in range(8):
        due = _scheduled_on(subscription, local_day - timedelta(days=back))
        # compared as instants: ``now`` is UTC (same-zone datetimes compare as wall times)
        if due is not None and due.astimezone(UTC) <= now:
            return due.astimezone(now.tzinfo)
    raise AssertionError("a daily or weekly schedule is due within eight days")


def next_scheduled(subscription: SubscriptionConfig, now: datetime) -> datetime | None:
    """The first moment after ``now`` at which the subscription's digest is due (resolved like
    :func:`last_scheduled`); None for as-it-happens."""
    if not subscription.periodic:
        return None
    local_day = now.astimezone(subscription.zone).date()
    for ahead in range(9):
        due = _scheduled_on(subscription, local_day + timedelta(days=ahead))
        if due is not None and due.astimezone(UTC) > now:
            return due.astimezone(now.tzinfo)
    raise AssertionError("a daily or weekly schedule is due within eight days")
