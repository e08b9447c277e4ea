"""The daemon: APScheduler wiring only. Scheduling state lives in the database; the jobs just ask it.

The article stages run for as long as the daemon does (``ArticleStream``). Two periodic jobs feed it and
the mailboxes: a tick that starts polling whatever feeds are due (a feed due between two ticks waits at most
one tick), and a digest check that sends each subscription's digest once its local time (daily, or on its
weekday) has come and no digest was done since, and each alerting topic's alert once a story is owed and
the rate limit allows. Deciding "due" from the database, rather than with cron triggers, makes a digest
missed while the daemon was down go out at start, and keeps daylight-saving changes from skipping or
doubling one (APScheduler 3.11's CronTrigger fires twice in the repeated hour of a fall-back day).
SIGTERM/SIGINT let the articles in hand and a digest being sent finish, then stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import MonitorConfig, Settings, SubscriptionConfig
from monitor.digest import deliver_alerts, deliver_digest, export_digests
from monitor.digest.schedule import last_scheduled
from monitor.digest.schedule import next_scheduled as next_scheduled
from monitor.errors import MonitorError, StorageError
from monitor.http import StatusServer
from monitor.metrics import ALERTS, DIGESTS, REGISTRY, StorageCollector
from monitor.pipeline import ArticleStream, Pipeline, RunReport
from monitor.storage import Storage
from monitor.storage.storage import KIND_DIGEST
from monitor.types import Clock, utc_now

log = logging.getLogger(__name__)

DEFAULT_TICK_SECONDS = 2.0
DIGEST_CHECK_SECONDS = 30
#: after the database failed under the article stream, it starts again after this
STREAM_RESTART_SECONDS = 10.0
#: how often the daemon hands the memory it freed back to the system (see ``release_memory``)
RELEASE_MEMORY_SECONDS = 60.0
#: a digest not done this long after its time makes /healthz fail
DIGEST_GRACE = timedelta(minutes=15)


def release_memory() -> None:
    """Return the C heap's free memory to the system (glibc's malloc_trim; nothing elsewhere). SQLite,
    httpx and numpy allocate from several threads, and glibc keeps what they free in per-thread arenas:
    in bench/memory.py's run (10,000 feeds) a trim gave back 30 to 80 MB."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


class Daemon:
    """Runs the stream on a tick and the digests when due, until stopped."""

    def __init__(
        self,
        pipeline: Pipeline,
        storage: Storage,
        config: MonitorConfig,
        settings: Settings,
        *,
        tick_seconds: float = DEFAULT_TICK_SECONDS,
        digest_check_seconds: float = DIGEST_CHECK_SECONDS,
        clock: Clock = utc_now,
        http: tuple[str, int] | None = None,
    ) -> None:
        self.pipeline, self.storage, self.config, self.settings = pipeline, storage, config, settings
        self.tick_seconds, self.digest_check_seconds, self.clock = tick_seconds, digest_check_seconds, clock
        self.http = http
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        #: held while a digest is being delivered, so stopping waits for it
        self._busy = asyncio.Lock()
        self._stream: ArticleStream | None = None
        #: when a job last started or finished (monotonic seconds): how /healthz tells the scheduler lives
        self._heartbeat = time.monotonic()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.storage.sync_subscriptions(self.config.subscriptions, self.clock())
        self.scheduler.add_job(
            self.send_due_digests,
            IntervalTrigger(seconds=self.digest_check_seconds),
            id="digests",
            next_run_time=datetime.now(UTC),  # APScheduler runs on the wall clock
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=self.tick_seconds),
            id="tick",
            next_run_time=datetime.now(UTC),  # APScheduler runs on the wall clock
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            release_memory, IntervalTrigger(seconds=RELEASE_MEMORY_SECONDS), id="memory", coalesce=True
        )
        self.scheduler.start()
        log.warning(
            "monitor running: %d feeds, %d subscriptions",
            len(self.config.feeds),
            len(self.config.subscriptions),
        )
        with contextlib.ExitStack() as serving:
            if self.http is not None:
                REGISTRY.register(collector := StorageCollector(self.storage))
                serving.callback(REGISTRY.unregister, collector)
                server = serving.enter_context(
                    StatusServer(self.http, self.health, REGISTRY, feeds=self.feed)
                )
                log.warning(
                    "serving /healthz, /metrics and /feeds/NAME.atom on http://%s:%d",
                    self.http[0],
                    server.port,
                )
            await self._until(stop, loop)

    async def _until(self, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        streaming = asyncio.create_task(self._stream_articles(stop))
        try:
            await stop.wait()
        finally:
            self.scheduler.pause()
            self.pipeline.stop()
            await self.pipeline.cancel_polls()
            await streaming  # the articles in hand are settled
            async with self._busy:  # and a delivery under way finishes
                self.scheduler.shutdown(wait=False)
                log.warning("monitor stopped")
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _stream_articles(self, stop: asyncio.Event) -> None:
        """The article stages, for as long as the daemon runs; started again after the database failed."""
        while not stop.is_set():
            self._stream = ArticleStream(self.pipeline, RunReport())
            try:
                await self._stream.run()
            except StorageError as exc:
                log.error("article stream stopped, starting again in %g s: %s", STREAM_RESTART_SECONDS, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STREAM_RESTART_SECONDS)
            except Exception:  # a bug must not stop the daemon
                log.exception("article stream failed unexpectedly; starting again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STREAM_RESTART_SECONDS)

    def health(self) -> dict[str, Any]:
        """For /healthz: the database answers, the scheduler runs its jobs, and no digest is overdue (due
        more than DIGEST_GRACE ago and not done, or failing to send)."""
        now = self.clock()
        problems: list[str] = []
        try:
            outbox = self.storage.outbox()
            for sub in self.config.subscriptions:
                scheduled = last_scheduled(sub, now)
                if scheduled is None:
                    continue
                done = self.storage.last_digest_time(sub.name)
                started = self.storage.subscription_started(sub.name)
                if started < scheduled < now - DIGEST_GRACE and (done is None or done < scheduled):
                    problems.append(f"digest {sub.name!r} due at {scheduled:%Y-%m-%d %H:%M}Z not sent")
            problems += [
                f"{d.kind} {d.subscription!r}{f' ({d.topic})' if d.topic else ''} failing by {d.channel}: "
                f"{d.error}"
                for d in outbox
                if d.attempts
            ]
        except MonitorError as exc:
            problems.append(f"database: {exc}")
        idle = time.monotonic() - self._heartbeat
        if not self.scheduler.running or (idle > max(5 * self.tick_seconds, 300) and not self._busy.locked()):
            problems.append(f"scheduler: no job has run for {idle:.0f} s")
        return {"healthy": not problems, "problems": problems, "checked_at": now}

    async def tick(self) -> None:
        """Start polling the feeds that are due; their new articles go into the running stream."""
        self._heartbeat = time.monotonic()
        if self._stream is None:
            return
        try:
            started = self.pipeline.poll_due(self._stream)
        except MonitorError as exc:
            log.error("could not look for due feeds: %s", exc)
            return
        if started:
            log.info("polling %d feeds", started)

    def due_subscriptions(self, now: datetime) -> list[SubscriptionConfig]:
        """Subscriptions with a digest to send now: one in the outbox whose retry time has come, or, with the
        outbox empty, a new one whose time has passed with no digest window ending since."""
        outbox: dict[str, list[datetime]] = {}
        for delivery in self.storage.outbox(kind=KIND_DIGEST):
            outbox.setdefault(delivery.subscription, []).append(delivery.next_attempt_at)
        due = []
        for sub in self.config.subscriptions:
            if (pending := outbox.get(sub.name)) is not None:
                if min(pending) <= now:
                    due.append(sub)
                continue
            scheduled = last_scheduled(sub, now)
            if scheduled is None or self.storage.subscription_started(sub.name) >= scheduled:
                continue
            done = self.storage.last_digest_time(sub.name)
            if done is None or done < scheduled:
                due.append(sub)
        return due

    async def send_due_digests(self) -> None:
        """Deliver every due digest and alert; a failure stays in the outbox and is retried with backoff."""
        async with self._busy:
            self._heartbeat = time.monotonic()
            for sub in self.due_subscriptions(self.clock()):
                try:
                    result = await asyncio.to_thread(
                        deliver_digest, self.storage, sub, self.settings, now=self.clock(), only_due=True
                    )
                except MonitorError as exc:
                    DIGESTS.labels("failed").inc()
                    log.error("digest not sent, will retry: %s", exc, extra={"subscription": sub.name})
                    continue
                DIGESTS.labels(result.status).inc()
                log.info("digest %s", result.status, extra={"subscription": sub.name, "hits": result.hits})
            for sub in self.config.subscriptions:
                if sub.alert_topics:
                    await self._send_alerts(sub)

    async def _send_alerts(self, sub: SubscriptionConfig) -> None:
        try:
            results = await asyncio.to_thread(
                deliver_alerts, self.storage, sub, self.settings, now=self.clock()
            )
        except MonitorError as exc:
            ALERTS.labels("failed").inc()
            log.error("alert not sent, will retry: %s", exc, extra={"subscription": sub.name})
            return
        for result in results:
            ALERTS.labels(result.status).inc()
            log.info(
                "alert %s",
                result.status,
                extra={"subscription": sub.name, "topic": result.topic, "hits": result.hits},
            )

    def feed(self, name: str, fmt: str, self_url: str | None) -> str | None:
        """For the HTTP endpoint: a subscription's digests as Atom or JSON, or None if it does not exist."""
        sub = self.config.subscription(name)
        if sub is None:
            return None
        return export_digests(self.storage, sub, fmt, now=self.clock(), self_url=self_url)
