"""The daemon: schedules in local time across DST, missed digests, a real process stopped by SIGTERM."""

import asyncio
import email
import email.policy
import ipaddress
import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from monitor.config import FeedConfig, MonitorConfig, NetworkConfig, Settings, SubscriptionConfig
from monitor.demo import DEMO_MIN_SCORE, DEMO_QUERY, PLACEHOLDER, SITE
from monitor.fetch import Fetcher
from monitor.pipeline import Pipeline
from monitor.scheduler import Daemon, last_scheduled, next_scheduled
from monitor.storage import Storage, make_engine

from conftest import free_port, serve_kremlin


@pytest.mark.parametrize(
    ("zone", "dst_change"),
    [
        ("Europe/Berlin", datetime(2026, 3, 29, tzinfo=UTC)),
        ("Europe/Berlin", datetime(2026, 10, 25, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 3, 8, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
@pytest.mark.parametrize("at", ["07:00", "02:30"])
def test_one_digest_a_day_across_daylight_saving_changes(zone, dst_change, at):
    sub = SubscriptionConfig(name="s", recipients=["a@example.org"], topics=["t"], time=at, timezone=zone)
    start = dst_change - timedelta(days=3)
    moments = [start + timedelta(minutes=5 * i) for i in range(12 * 24 * 6)]
    due_times = {last_scheduled(sub, now) for now in moments}
    assert all(last_scheduled(sub, now) <= now < next_scheduled(sub, now) for now in moments)
    local_days = sorted(d.astimezone(sub.zone).date() for d in due_times)
    assert len(local_days) == len(set(local_days)) == 7  # exactly one due time per local day, none skipped
    for due in due_times:
        local = due.astimezone(sub.zone)
        assert local.strftime("%H:%M") in (at, "03:30")  # 02:30 does not exist on a spring-forward day


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/Berlin", datetime(2026, 3, 26, tzinfo=UTC)),  # spring forward on the 29th
        ("Europe/Berlin", datetime(2026, 10, 22, tzinfo=UTC)),  # fall back on the 25th
        ("America/New_York", datetime(2026, 3, 5, 12, tzinfo=UTC)),  # spring forward on the 8th
        ("America/New_York", datetime(2026, 10, 29, 12, tzinfo=UTC)),  # fall back on 1 November
    ],
)
def test_the_daemon_sends_one_digest_a_day_across_dst(storage, zone, start):
    """Drive the daemon's digest decision with an injected clock, every 5 minutes through six days
    around a daylight-saving change, at a time that is skipped or repeated on the day of the change."""
    sub = SubscriptionConfig(
        name="s", recipients=["a@example.org"], topics=["t"], time="02:30", timezone=zone
    )
    storage.sync_subscriptions([sub], start)
    daemon = Daemon(None, storage, MonitorConfig(subscriptions=[sub]), Settings())  # type: ignore[arg-type]
    sent = []
    for step in range(6 * 24 * 12):
        now = start + timedelta(minutes=5 * step)
        if daemon.due_subscriptions(now):
            storage.record_digest("s", status="sent", window_start=now, window_end=now, hit_ids=[], now=now)
            sent.append(now.astimezone(sub.zone))
    days = [d.date() for d in sent]
    assert len(sent) == 6 and len(set(days)) == 6 and days == sorted(days)  # one a day, none skipped
    assert {d.strftime("%H:%M") for d in sent} <= {"02:30", "03:30"}  # 03:30 on the spring-forward day


def test_a_digest_missed_while_down_is_sent_at_start(storage, site, smtp):
    sink, port = smtp
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    now = datetime.now(UTC)
    sub = SubscriptionConfig(
        name="morning",
        recipients=["a@example.org"],
        topics=["xi-putin"],
        time=(now - timedelta(hours=1)).astimezone(UTC).strftime("%H:%M"),
        timezone="UTC",
    )
    config = MonitorConfig(
        feeds=[FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml"))],
        subscriptions=[sub],
        network=NetworkConfig(allow_private=[ipaddress.ip_network("127.0.0.0/8")], per_host_spacing=0),
    )
    storage.sync_feeds(config.feeds, now - timedelta(days=2))
    storage.sync_subscriptions(config.subscriptions, now - timedelta(days=2))
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, now - timedelta(days=2))
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=port, smtp_sender="m@example.org", smtp_security="none"
    )

    async def run_daemon_briefly():
        async with Fetcher(config.network) as fetcher:
            pipeline = Pipeline(storage, fetcher)
            await pipeline.run_once()  # hits stored by an earlier run that then went down before 07:00
            stop = asyncio.Event()
            daemon = Daemon(pipeline, storage, config, settings, tick_seconds=3600)
            asyncio.get_running_loop().call_later(1.0, stop.set)
            await daemon.run(stop)

    asyncio.run(run_daemon_briefly())
    assert len(sink.messages) == 1 and b"Xi and Putin" in sink.messages[0]
    asyncio.run(run_daemon_briefly())  # restarting again sends nothing more
    assert len(sink.messages) == 1


def test_monitor_run_polls_and_stops_on_sigterm(db_url, site, tmp_path):
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - name: harbourpost\n    url: {site.url('/harbourpost/atom.xml')}\n"
        "network:\n  allow_private: [127.0.0.0/8]\n  per_host_spacing: 0\n"
    )
    storage = Storage(make_engine(db_url))
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, datetime.now(UTC))
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url, "MONITOR_CONFIG": str(config)}
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "-v", "run", "--tick", "1", "--http", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(storage.hits()) < 2 and time.monotonic() < deadline and daemon.poll() is None:
            time.sleep(0.2)
        assert len(storage.hits()) == 2
        health = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 200 and health.json()["healthy"] is True
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'monitor_feed_polls_total{result="updated"} 1.0' in metrics
        assert 'monitor_hits{topic="xi-putin"} 2.0' in metrics
        assert 'monitor_articles_processed_total{source="page"}' in metrics
        assert 'monitor_stage_seconds_count{stage="extract"}' in metrics
        assert "process_resident_memory_bytes" in metrics
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr
    assert "monitor running" in stderr and "monitor stopped" in stderr
    assert "Traceback" not in stderr
    storage.engine.dispose()


def test_healthz_fails_while_a_digest_cannot_be_sent(storage):
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    sub = SubscriptionConfig(name="s", recipients=["a@example.org"], topics=["t"], time="07:00")
    storage.sync_subscriptions([sub], now - timedelta(days=2))
    daemon = Daemon(None, storage, MonitorConfig(subscriptions=[sub]), Settings(), clock=lambda: now)  # type: ignore[arg-type]

    async def check() -> None:
        daemon.scheduler.start(paused=True)
        report = daemon.health()
        assert not report["healthy"] and report["problems"] == [
            "digest 's' due at 2026-11-23 07:00Z not sent"
        ]
        storage.record_digest(
            "s",
            status="sending",
            window_start=now,
            window_end=now,
            hit_ids=[],
            now=now,
            deliveries=[("email", "m")],
        )
        [delivery] = storage.outbox()
        storage.delivery_failed(
            delivery.id, error="SMTP 127.0.0.1:25: refused", retry_at=now + timedelta(minutes=2)
        )
        assert daemon.health()["problems"] == ["digest 's' failing by email: SMTP 127.0.0.1:25: refused"]
        storage.delivery_sent(delivery.id, now)
        assert daemon.health() == {"healthy": True, "problems": [], "checked_at": now}
        daemon.scheduler.shutdown(wait=False)

    asyncio.run(check())


def test_the_cli_writes_while_the_daemon_writes(db_url, site, tmp_path):
    """Daemon and CLI share the database: SQLite in WAL mode with a busy timeout, PostgreSQL as it is."""
    serve_kremlin(site)
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - name: kremlin\n    url: {site.url('/kremlin.atom')}\n"
        f"  - name: selection\n    url: {site.url('/selection.rss')}\n"
        "network:\n  allow_private: [127.0.0.0/8]\n  per_host_spacing: 0\n"
    )
    storage = Storage(make_engine(db_url))
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url, "MONITOR_CONFIG": str(config)}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--tick", "1"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        edits = 0
        deadline = time.monotonic() + 60
        while storage.article_count().get("matched", 0) < 40 and time.monotonic() < deadline:
            now = datetime.now(UTC)
            storage.add_topic(f"t{edits}", "xi AND putin", 0.3, now)  # each is its own write transaction
            storage.edit_topic(f"t{edits}", now, min_score=0.5)
            edits += 1
            time.sleep(0.05)  # a person at the CLI, not a loop that starves every other writer
        matched = storage.article_count().get("matched", 0)
        assert matched >= 40 and edits > 5, storage.unfinished_articles()[:3]
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    problems = [line for line in stderr.splitlines() if "locked" in line or "Error" in line]
    assert daemon.returncode == 0 and "Traceback" not in stderr and not problems, problems
    assert len(storage.topics()) == edits
    storage.engine.dispose()


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_a_weekly_digest_comes_once_a_week_on_its_weekday_across_dst(zone):
    sub = SubscriptionConfig(
        name="s",
        recipients=["a@example.org"],
        topics=["t"],
        schedule="weekly",
        weekday="Sunday",
        time="02:30",
        timezone=zone,
    )
    start = datetime(2026, 3, 1, tzinfo=UTC)  # nine weeks across the spring change of both zones
    moments = [start + timedelta(minutes=30 * i) for i in range(2 * 24 * 7 * 9)]
    due_times = {last_scheduled(sub, now) for now in moments}
    assert all(last_scheduled(sub, now) <= now < next_scheduled(sub, now) for now in moments)
    local = sorted(d.astimezone(sub.zone) for d in due_times)
    assert len(local) == 10 and {d.strftime("%a") for d in local} == {"Sun"}  # 22 Feb … 26 Apr
    assert all(b - a >= timedelta(days=6, hours=23) for a, b in itertools.pairwise(local))


def test_as_it_happens_has_no_periodic_digest_and_alerts_from_the_daemon(storage, smtp):
    from test_digest import NOW, stored_hits

    sink, port = smtp
    sub = SubscriptionConfig(
        name="desk", recipients=["a@example.org"], topics=["xi-putin", "energy"], schedule="as-it-happens"
    )
    assert last_scheduled(sub, NOW) is None and next_scheduled(sub, NOW) is None
    storage.sync_subscriptions([sub], NOW - timedelta(days=1))
    stored_hits(storage)
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=port, smtp_sender="m@example.org", smtp_security="none"
    )
    now = NOW + timedelta(minutes=1)
    daemon = Daemon(None, storage, MonitorConfig(subscriptions=[sub]), settings, clock=lambda: now)  # type: ignore[arg-type]
    assert daemon.due_subscriptions(now) == []
    asyncio.run(daemon.send_due_digests())
    subjects = sorted(
        email.message_from_bytes(m, policy=email.policy.default)["Subject"] for m in sink.messages
    )
    assert subjects == [
        "Alert, energy: Pipeline deal signed",
        'Alert, xi-putin: Talks <script>alert("x")</script> & "summit" Bcc: victim@example.org',
        "Alert, xi-putin: Xi and Putin meet in Beijing",
    ]
    asyncio.run(daemon.send_due_digests())
    assert len(sink.messages) == 3
    assert [p for p in daemon.health()["problems"] if not p.startswith("scheduler")] == []
