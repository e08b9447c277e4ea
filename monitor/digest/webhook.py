"""The webhook channel: each digest and alert as a JSON POST (the document, see docs/digest-format.md)."""

from __future__ import annotations

import hashlib
import hmac
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from monitor.config import DEFAULT_USER_AGENT, WebhookConfig
from monitor.errors import DeliveryError

SIGNATURE_HEADER = "X-Monitor-Signature"
DELIVERY_HEADER = "X-Monitor-Delivery"
EVENT_HEADER = "X-Monitor-Event"


def redacted(url: str) -> str:
    """A webhook URL safe to log and show: scheme and host only (chat webhooks carry their secret in the
    path)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…" if parts.path.strip("/") else url


def signature(secret: bytes, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the body, for the receiver to check the request came from us."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def post_webhook(
    body: str, webhook: WebhookConfig, *, subscription: str, delivery_id: str, event: str
) -> None:
    """POST the JSON ``body``; any answer but 2xx, or no answer, is a DeliveryError naming the host.

    ``delivery_id`` goes in X-Monitor-Delivery and stays the same across retries, so a receiver can drop a
    repeat (delivery is at least once).
    """
    url = webhook.target()
    data = body.encode("utf-8")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": DEFAULT_USER_AGENT,
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
    }
    if (secret := webhook.secret()) is not None:
        headers[SIGNATURE_HEADER] = signature(secret, data)
    try:
        response = httpx.post(url, content=data, headers=headers, timeout=webhook.timeout)
    except httpx.HTTPError as exc:
        raise DeliveryError(subscription, f"webhook {redacted(url)}: {exc or type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(
            subscription,
            f"webhook {redacted(url)}: HTTP {response.status_code}",
            retry_after=_retry_after(response.headers.get("Retry-After"), response.headers.get("Date")),
        )


def _retry_after(value: str | None, date: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date measured from the answer's Date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, (parsedate_to_datetime(value) - parsedate_to_datetime(date or "")).total_seconds())
    except (TypeError, ValueError):
        return None
