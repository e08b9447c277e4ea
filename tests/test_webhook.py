"""The webhook channel against a real HTTP server on loopback that fails, then succeeds: the digest waits
in the outbox (for that channel only), is retried with backoff (or the server's Retry-After), and arrives
once with the same body, delivery id and signature."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_digest import NOW, SUB, settings_for, stored_hits

from monitor.config import MonitorConfig, WebhookConfig
from monitor.digest import deliver_digest
from monitor.digest.webhook import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, redacted
from monitor.errors import DeliveryError
from monitor.scheduler import Daemon

from conftest import free_port


class Receiver:
    """An HTTP server on loopback that answers each POST with the next of ``answers`` (status, headers),
    then 200 for good, and keeps every request."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0K3N-secret-path"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver([(503, {"Retry-After": "300"}), (500, {})])
    yield server
    server.close()


def test_a_failing_webhook_is_retried_from_the_outbox_and_gets_the_digest_once(
    storage, smtp, receiver, monkeypatch
):
    sink, port = smtp
    monkeypatch.setenv("MONITOR_TEST_HOOK_SECRET", "s3cret-key")
    sub = SUB.model_copy(
        update={"webhook": WebhookConfig(url=receiver.url, secret_env="MONITOR_TEST_HOOK_SECRET")}
    )
    storage.sync_subscriptions([sub], NOW - timedelta(days=1))
    stored_hits(storage)
    settings = settings_for(port)
    now = NOW + timedelta(hours=1)

    with pytest.raises(DeliveryError, match=r"webhook http://127\.0\.0\.1:\d+/…: HTTP 503") as failed:
        deliver_digest(storage, sub, settings, now=now)
    assert "T0K3N" not in str(failed.value)  # the secret in the URL's path is never shown
    assert len(sink.messages) == 1  # email took it; only the webhook waits
    [waiting] = storage.outbox()
    assert waiting.channel == "webhook" and waiting.next_attempt_at == now + timedelta(seconds=300)
    daemon = Daemon(None, storage, MonitorConfig(subscriptions=[sub]), settings, clock=lambda: now)  # type: ignore[arg-type]
    assert daemon.due_subscriptions(now + timedelta(minutes=2)) == []  # the server asked for 5 minutes

    later = now + timedelta(minutes=5)
    with pytest.raises(DeliveryError, match="HTTP 500"):
        deliver_digest(storage, sub, settings, now=later, only_due=True)
    [waiting] = storage.outbox()
    assert waiting.attempts == 2 and waiting.next_attempt_at == later + timedelta(minutes=4)

    last = later + timedelta(minutes=4)
    daemon.clock = lambda: last
    assert daemon.due_subscriptions(last) == [sub]
    asyncio.run(daemon.send_due_digests())
    assert storage.outbox() == [] and len(sink.messages) == 1 and len(receiver.requests) == 3
    assert storage.last_digests()["morning"].status == "sent"

    bodies = {body for _, _, body in receiver.requests}
    ids = {headers[DELIVERY_HEADER] for _, headers, _ in receiver.requests}
    assert len(bodies) == 1 and len(ids) == 1  # each retry is the same request
    path, headers, body = receiver.requests[-1]
    assert path == "/hooks/T0K3N-secret-path" and headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers[EVENT_HEADER] == "digest"
    expected = "sha256=" + hmac.new(b"s3cret-key", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    document = json.loads(body)
    assert document["version"] == 1 and document["kind"] == "digest" and document["subscription"] == "morning"
    assert document["id"] == headers[DELIVERY_HEADER]
    assert document["counts"] == {"stories": 3, "topics": {"xi-putin": 2, "energy": 1}}
    message = email.message_from_bytes(sink.messages[0], policy=email.policy.default)
    assert document["subject"] == message["Subject"]  # one digest, two channels


def test_a_webhook_only_subscription_and_a_url_from_the_environment(storage, monkeypatch):
    receiver = Receiver([])
    try:
        monkeypatch.setenv("MONITOR_TEST_HOOK_URL", receiver.url)
        sub = SUB.model_copy(
            update={"recipients": [], "webhook": WebhookConfig(url_env="MONITOR_TEST_HOOK_URL")}
        )
        storage.sync_subscriptions([sub], NOW - timedelta(days=1))
        stored_hits(storage)
        result = deliver_digest(storage, sub, settings_for(free_port()), now=NOW + timedelta(hours=1))
        assert result.status == "sent" and len(receiver.requests) == 1
        assert SIGNATURE_HEADER not in receiver.requests[0][1]
    finally:
        receiver.close()


def test_an_unreachable_webhook_is_a_clear_error(storage):
    sub = SUB.model_copy(
        update={
            "recipients": [],
            "webhook": WebhookConfig(url=f"http://127.0.0.1:{free_port()}/hook", timeout=2),
        }
    )
    storage.sync_subscriptions([sub], NOW - timedelta(days=1))
    stored_hits(storage)
    with pytest.raises(DeliveryError, match=r"subscription 'morning'.*webhook http://127\.0\.0\.1:\d+/…"):
        deliver_digest(storage, sub, settings_for(free_port()), now=NOW + timedelta(hours=1))
    [waiting] = storage.outbox()
    assert waiting.attempts == 1 and waiting.error and "webhook" in waiting.error


def test_redacted_keeps_only_scheme_and_host():
    assert redacted("https://hooks.example.org/services/T000/B000/XXXX") == "https://hooks.example.org/…"
    assert redacted("https://user:pw@hooks.example.org/x") == "https://hooks.example.org/…"
    assert redacted("https://hooks.example.org") == "https://hooks.example.org"
