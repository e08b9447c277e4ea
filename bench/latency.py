"""Latency: from an item appearing in a feed to its hit being stored, with 1,000 feeds on a 60 s interval.

Measured: the real daemon (``monitor.scheduler.Daemon``: its 2 s tick starting the polls that are due, the
article stream, the extraction pool), in this process, on a fresh SQLite database (or ``--database-url``),
polling 1,000 feeds every 60 s (a fixed interval, so ±10% jitter) on 100 loopback sites served by
bench/feed_server.py in another process. Every feed starts with 2 items of a real WSJ capture (their pages
are missing, so the feed's text is used); once the first poll of every feed and its articles are done, new
items appear at random times over three intervals, each linking to a real Kremlin page that the topic
"President OR Russia OR Putin" matches. The latency of an item is the time from when it appeared to when
its hit was stored (the hit's ``created_at``); its processing time is from the poll that found it (the
article's ``discovered_at``) to the hit. Target (issue 7): p95 under one interval plus 5 s.

Usage: python bench/latency.py [--quick] [--database-url URL]

The last line printed is one JSON object (``p50_seconds``, ``p95_seconds``, ``interval_seconds``,
``target_p95_under_interval_plus_5s``, ...). ``--quick`` uses 200 feeds on a 10 s interval (set in the
database: feeds.yaml allows 1 minute at least) and takes under 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import resource
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import feed_server
import sqlalchemy as sa

from monitor.config import FeedConfig, MonitorConfig, NetworkConfig, Settings
from monitor.extract import extraction_pool
from monitor.fetch import Fetcher
from monitor.pipeline import Pipeline
from monitor.scheduler import Daemon
from monitor.storage import Storage, make_engine, upgrade
from monitor.storage.articles import ARTICLES, HITS
from monitor.storage.models import Feed

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "corpus"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
TOPIC = "President OR Russia OR Putin"
INITIAL_ITEMS = 2
#: extra seconds the target allows over one interval
TARGET_MARGIN = 5.0
SEED = 20261204


class Plan:
    """What one run does: how many feeds on how many sites, their interval, and when items appear."""

    def __init__(self, quick: bool) -> None:
        self.feeds, self.sites = (200, 20) if quick else (1_000, 100)
        self.interval = 10.0 if quick else 60.0
        #: seconds after the server starts by which the first poll and its articles are done
        self.warmup = 12.0 if quick else 45.0
        #: new items appear over this many seconds after the warm-up
        self.window = 2 * self.interval if quick else 3 * self.interval
        self.items = 60 if quick else 300
        rng = random.Random(SEED)
        #: (feed, seconds after the server started), in the order they appear (the server numbers them so)
        self.schedule = sorted(
            (
                (rng.randrange(self.feeds), round(self.warmup + rng.uniform(0, self.window), 3))
                for _ in range(self.items)
            ),
            key=lambda item: item[1],
        )
        #: the run ends once the last item has had an interval and the margin to be found
        self.duration = self.warmup + self.window + self.interval + TARGET_MARGIN + 3


def start_server(plan: Plan, workdir: Path) -> tuple[subprocess.Popen[str], float, list[str]]:
    schedule = workdir / "schedule.json"
    schedule.write_text(json.dumps(plan.schedule))
    server, started = feed_server.launch(
        feeds=plan.feeds, hosts=plan.sites, items=INITIAL_ITEMS, schedule=schedule
    )
    return server, started["started"], started["feeds"]


def prepare(database_url: str | None, workdir: Path, urls: list[str], interval: float) -> Storage:
    """A fresh database with the feeds on a fixed interval, and the topic."""
    if database_url is None:
        database_url = f"sqlite:///{workdir / 'latency.db'}"
    elif database_url.startswith("postgresql"):
        with sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://")).begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine = make_engine(database_url)
    upgrade(engine)
    storage = Storage(engine)
    now = datetime.now(UTC)
    storage.sync_feeds(
        [FeedConfig(name=f"feed-{n:04d}", url=url, interval="1m") for n, url in enumerate(urls)], now
    )
    seconds = int(interval)
    with engine.begin() as conn:  # below the 1 minute feeds.yaml allows, for --quick
        conn.execute(
            sa.update(Feed).values(
                interval_seconds=seconds, min_interval_seconds=seconds, max_interval_seconds=seconds
            )
        )
    storage.add_topic("latency", TOPIC, 0.0, now)
    return storage


async def run_daemon(storage: Storage, seconds: float) -> None:
    """The daemon for ``seconds``, as `monitor run` builds it (with loopback allowed)."""
    config = MonitorConfig(network=NetworkConfig(allow_private=[LOOPBACK]))
    with extraction_pool() as pool:
        async with Fetcher(config.network) as fetcher:
            daemon = Daemon(Pipeline(storage, fetcher, extractor=pool), storage, config, Settings())
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(seconds, stop.set)
            await daemon.run(stop)


def latencies(storage: Storage, started: float, plan: Plan) -> tuple[list[float], list[float], int]:
    """Per new item whose hit was stored: seconds from appearing to the hit, and from the poll that found
    it to the hit; and how many new items have no hit."""
    appeared = {f"/f{feed}/new/{i}.html": started + at for i, (feed, at) in enumerate(plan.schedule)}
    articles, hits = ARTICLES.c, HITS.c
    query = sa.select(articles.url, articles.discovered_at, hits.created_at).join_from(
        ARTICLES, HITS, hits.article_id == articles.id
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query).all()
    total, processing = [], []
    for url, discovered, stored in rows:
        path = "/" + url.split("/", 3)[3]
        if path in appeared:
            total.append(stored.timestamp() - appeared[path])
            processing.append((stored - discovered).total_seconds())
    return total, processing, len(appeared) - len(total)


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 feeds on a 10 s interval (< 60 s)")
    parser.add_argument("--database-url", help="an empty PostgreSQL database to use instead of SQLite")
    args = parser.parse_args()
    if not (CORPUS / "feeds" / "timeseries" / "wsj_world").is_dir():
        print(f"needs the shared corpus at {CORPUS}; skipped")
        print(json.dumps({"skipped": True}))
        return
    plan = Plan(args.quick)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server, started, urls = start_server(plan, workdir)
        try:
            storage = prepare(args.database_url, workdir, urls, plan.interval)
            remaining = plan.duration - (time.time() - started)
            asyncio.run(run_daemon(storage, remaining))
            total, processing, missed = latencies(storage, started, plan)
            states = storage.article_count()
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait()
    p50, p95 = percentile(total, 0.5), percentile(total, 0.95)
    target = plan.interval + TARGET_MARGIN
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{plan.feeds:,} feeds on {plan.sites} loopback sites, polled every {plan.interval:g} s (±10%) by "
        f"the daemon (tick 2 s); {plan.items} new items over {plan.window:g} s after a {plan.warmup:g} s "
        f"warm-up; topic {TOPIC!r}; {storage.engine.dialect.name}"
    )
    print(
        f"item appears -> hit stored: p50 {p50:.1f} s, p95 {p95:.1f} s, max {max(total):.1f} s over "
        f"{len(total)} items ({missed} without a hit by the end); target p95 under {target:g} s"
    )
    print(
        f"poll that found it -> hit stored: p50 {percentile(processing, 0.5):.2f} s, "
        f"p95 {percentile(processing, 0.95):.2f} s; article states {states}"
    )
    print(f"peak RSS of the daemon's process: {peak:.0f} MB")
    print(
        json.dumps(
            {
                "quick": args.quick,
                "feeds": plan.feeds,
                "interval_seconds": plan.interval,
                "items": len(total),
                "missed": missed,
                "p50_seconds": round(p50, 2),
                "p95_seconds": round(p95, 2),
                "max_seconds": round(max(total), 2),
                "processing_p50_seconds": round(percentile(processing, 0.5), 3),
                "processing_p95_seconds": round(percentile(processing, 0.95), 3),
                "target_p95_under_interval_plus_5s": p95 < target and missed == 0,
                "peak_rss_mb": round(peak, 1),
                "load_average": os.getloadavg()[0],
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
