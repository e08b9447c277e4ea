"""Delivery through an SMTP server that misbehaves on command: down, refusing, silent, or dropping the line
mid-message. Each time the digest waits in the outbox with its hits undelivered, is retried with backoff,
and once the server recovers it arrives exactly once."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from test_digest import NOW, SUB, stored_hits

from monitor.config import MonitorConfig, Settings
from monitor.digest import RETRY_FIRST, retry_delay
from monitor.scheduler import Daemon

from conftest import free_port


class MisbehavingSMTP:
    """An aiosmtpd server whose ``mode`` decides what it does with the next message: "ok" takes it,
    "refuse" answers 451 to MAIL FROM, "reject" answers 554 after the data, "drop" closes the connection
    in the middle of the data."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.messages: list[bytes] = []

    async def handle_MAIL(self, server, session, envelope, address, options):
        if self.mode == "refuse":
            return "451 4.3.0 Mail server temporarily refusing mail"
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mode == "drop":
            server.transport.close()
            return "421 closing"
        if self.mode == "reject":
            return "554 5.6.0 Message rejected"
        self.messages.append(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


class SilentServer:
    """A TCP server that accepts connections and never says a word: an SMTP server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def smtp_server() -> Iterator[tuple[MisbehavingSMTP, int]]:
    handler = MisbehavingSMTP()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


def _daemon(storage, port: int, clock) -> Daemon:
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_sender="monitor@example.org",
        smtp_timeout=0.5,
    )
    return Daemon(None, storage, MonitorConfig(subscriptions=[SUB]), settings, clock=clock)  # type: ignore[arg-type]


@pytest.mark.parametrize("failure", ["down", "refuse", "reject", "drop", "silent"])
def test_a_misbehaving_smtp_server_gets_the_digest_once_it_recovers(storage, smtp_server, failure):
    handler, good_port = smtp_server
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    silent = SilentServer() if failure == "silent" else None
    port = {"down": free_port(), "silent": silent.port if silent else 0}.get(failure, good_port)
    handler.mode = failure if failure in ("refuse", "reject", "drop") else "ok"
    now = NOW + timedelta(hours=1, seconds=30)  # the 07:00 Berlin digest is due
    daemon = _daemon(storage, port, lambda: now)

    try:
        for attempt in (1, 2):  # fails, waits out its backoff, fails again
            assert daemon.due_subscriptions(now) == [SUB]
            asyncio.run(daemon.send_due_digests())
            [pending] = storage.outbox()
            assert pending.attempts == attempt and pending.error and "SMTP 127.0.0.1" in pending.error
            assert pending.next_attempt_at == now + retry_delay(attempt)
            assert daemon.due_subscriptions(now) == []  # backing off, and no second digest is started
            assert not any(h.delivered for h in storage.topic_hits(storage.get_topic("xi-putin").id).values())
            now = pending.next_attempt_at
    finally:
        if silent:
            silent.close()
    assert handler.messages == []

    handler.mode = "ok"
    recovered = _daemon(storage, good_port, lambda: now)
    asyncio.run(recovered.send_due_digests())
    asyncio.run(recovered.send_due_digests())
    assert len(handler.messages) == 1 and storage.outbox() == []
    message = email.message_from_bytes(handler.messages[0], policy=email.policy.default)
    assert message["Subject"].startswith("morning: 3 new stories (xi-putin 2, energy 1)")
    assert all(h.delivered for h in storage.topic_hits(storage.get_topic("xi-putin").id).values())
    assert recovered.due_subscriptions(now + timedelta(hours=1)) == []  # the day's digest is done


def test_a_crash_after_the_server_took_the_digest_resends_the_same_message(storage, smtp_server):
    """The server accepted the message, then the process died before recording it: at least once, and
    the second copy carries the same Message-ID, so mail clients show it once."""
    handler, port = smtp_server
    storage.sync_subscriptions([SUB], NOW - timedelta(days=1))
    stored_hits(storage)
    now = NOW + timedelta(hours=1)
    daemon = _daemon(storage, port, lambda: now)
    original = storage.delivery_sent
    storage.delivery_sent = lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed"))  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        asyncio.run(daemon.send_due_digests())
    storage.delivery_sent = original  # type: ignore[method-assign]
    assert len(handler.messages) == 1 and len(storage.outbox()) == 1

    asyncio.run(_daemon(storage, port, lambda: now + timedelta(seconds=30)).send_due_digests())
    assert len(handler.messages) == 2 and storage.outbox() == []
    first, second = (email.message_from_bytes(m, policy=email.policy.default) for m in handler.messages)
    assert first["Message-ID"] == second["Message-ID"] and first["Subject"] == second["Subject"]


def test_backoff_doubles_up_to_an_hour():
    assert [retry_delay(n) for n in (1, 2, 3)] == [RETRY_FIRST, RETRY_FIRST * 2, RETRY_FIRST * 4]
    assert retry_delay(50) == timedelta(hours=1)
