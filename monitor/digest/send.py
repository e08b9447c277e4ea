"""Sending a composed message over SMTP (plain, STARTTLS or implicit TLS)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from monitor.config import Settings
from monitor.errors import DeliveryError


def send_message(message: EmailMessage, settings: Settings, *, subscription: str) -> None:
    """Hand the message to the configured SMTP server; any failure is a DeliveryError."""
    if not settings.smtp_enabled:
        raise DeliveryError(
            subscription, "SMTP is not configured (set MONITOR_SMTP_HOST and MONITOR_SMTP_SENDER)"
        )
    host, port = settings.smtp_host or "", settings.smtp_port_or_default
    try:
        client: smtplib.SMTP
        if settings.smtp_security == "tls":
            client = smtplib.SMTP_SSL(
                host, port, timeout=settings.smtp_timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=settings.smtp_timeout)
        with client:
            if settings.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_username and settings.smtp_password:
                client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(subscription, f"SMTP {host}:{port}: {exc}") from None
