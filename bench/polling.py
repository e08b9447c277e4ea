"""Polling speed: a full poll cycle of 10,000 feeds, 90% of them answering 304, against a bare httpx loop.

Measured: monitor's poll stage (``Pipeline.poll_feeds`` over every feed: conditional GET through the
fetcher with its limits and address checks; feedparser on the 10% that changed, in the process pool the
daemon parses and extracts in; the new state and new entries of every feed recorded in the database) on a
fresh SQLite database (or ``--database-url``), after one first cycle that gave every feed its ETag and
entries. The feeds are served by bench/feed_server.py in another process: real WSJ World News captures cut
to 10 items, each feed's items its own, on 1,000 loopback sites; every tenth feed changes between any two
requests (a new capture, new items in), the others answer 304.

The floor: a bare httpx loop (one AsyncClient, the same concurrency as monitor's fetcher) sending the same
requests (the same URLs, the same If-None-Match) and reading the answers, measured just before and just
after the poll cycle; the mean of the two is the floor. The ratio is the poll cycle's feeds/s over the
floor's. Target (issue 7): at least 0.7.

Usage: python bench/polling.py [--quick] [--feeds N] [--database-url URL]

The last line printed is one JSON object with the figures (``feeds_per_s``, ``floor_feeds_per_s``,
``ratio``, ``target_at_least_0_7_of_bare_loop``, ...). ``--quick`` polls 1,000 feeds on 100 sites and takes
well under 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import subprocess
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import feed_server
import httpx
import sqlalchemy as sa

from monitor.config import FeedConfig, NetworkConfig
from monitor.extract import extraction_pool
from monitor.fetch import Fetcher
from monitor.pipeline import Pipeline
from monitor.pool import ProcessPool
from monitor.storage import Storage, make_engine, upgrade

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "corpus"
TARGET_RATIO = 0.7
ITEMS = 10
CHANGING_EVERY = 10
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def start_server(feeds: int, hosts: int) -> tuple[subprocess.Popen[str], list[str]]:
    server, started = feed_server.launch(feeds=feeds, hosts=hosts, items=ITEMS, changing_every=CHANGING_EVERY)
    return server, started["feeds"]


def fresh_storage(database_url: str | None, workdir: Path) -> Storage:
    if database_url is None:
        database_url = f"sqlite:///{workdir / 'polling.db'}"
    elif database_url.startswith("postgresql"):
        with sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://")).begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine = make_engine(database_url)
    upgrade(engine)
    return Storage(engine)


async def poll_cycle(
    storage: Storage, network: NetworkConfig, pool: ProcessPool
) -> tuple[float, float, Counter[str]]:
    """One poll of every feed by monitor's poll stage, parsing in ``pool`` as the daemon does: (wall seconds,
    CPU seconds of this process, outcomes by status)."""
    async with Fetcher(network) as fetcher:
        pipeline = Pipeline(storage, fetcher, extractor=pool)
        feeds = storage.all_feeds_for_poll()
        started, cpu = time.perf_counter(), time.process_time()
        outcomes = await pipeline.poll_feeds(feeds)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return seconds, cpu, Counter(o.status for o in outcomes)


async def bare_loop(
    requests: list[tuple[str, str | None]], concurrency: int
) -> tuple[float, float, Counter[int]]:
    """The same requests from a bare httpx client with the same concurrency: (wall s, CPU s, statuses)."""
    statuses: Counter[int] = Counter()
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=20, trust_env=False) as client:

        async def get(url: str, etag: str | None) -> None:
            async with limit:
                response = await client.get(url, headers={"If-None-Match": etag} if etag else {})
                statuses[response.status_code] += 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(get(url, etag) for url, etag in requests))
        return time.perf_counter() - started, time.process_time() - cpu, statuses


def current_requests(storage: Storage) -> list[tuple[str, str | None]]:
    """Each feed's URL and the ETag a conditional GET would send now, in polling order."""
    return [(f.url, f.etag) for f in storage.all_feeds_for_poll()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 feeds on 100 sites (< 60 s)")
    parser.add_argument("--feeds", type=int, help="how many feeds (default 10,000; --quick 1,000)")
    parser.add_argument("--database-url", help="an empty PostgreSQL database to use instead of SQLite")
    args = parser.parse_args()
    if not (CORPUS / "feeds" / "timeseries" / "wsj_world").is_dir():
        print(f"needs the shared corpus at {CORPUS}; skipped")
        print(json.dumps({"skipped": True}))
        return
    count = args.feeds or (1_000 if args.quick else 10_000)
    hosts = max(1, count // 10)
    network = NetworkConfig(allow_private=[LOOPBACK])
    started = time.perf_counter()
    server, urls = start_server(count, hosts)
    try:
        with tempfile.TemporaryDirectory() as workdir, extraction_pool() as pool:
            storage = fresh_storage(args.database_url, Path(workdir))
            storage.sync_feeds(
                [FeedConfig(name=f"feed-{n:05d}", url=url) for n, url in enumerate(urls)], datetime.now(UTC)
            )
            first, _, first_outcomes = asyncio.run(poll_cycle(storage, network, pool))
            print(
                f"{count:,} feeds on {hosts:,} loopback sites ({ITEMS} items each, every {CHANGING_EVERY}th "
                f"changing between requests), {storage.engine.dialect.name}; monitor's fetcher: concurrency "
                f"{network.concurrency}, {network.per_host_concurrency} per site, "
                f"{network.per_host_spacing} s apart per site"
            )
            print(
                f"first cycle (every feed new): {first:.1f} s = {count / first:,.0f} feeds/s, "
                f"{dict(first_outcomes)}, {storage.article_count()} articles discovered"
            )
            requests = current_requests(storage)
            floor_before, floor_cpu_before, statuses = asyncio.run(bare_loop(requests, network.concurrency))
            seconds, cpu, outcomes = asyncio.run(poll_cycle(storage, network, pool))
            requests_after = current_requests(storage)
            floor_after, floor_cpu_after, _ = asyncio.run(bare_loop(requests_after, network.concurrency))
            articles = storage.article_count()
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait()
    floor = (floor_before + floor_after) / 2
    floor_cpu = (floor_cpu_before + floor_cpu_after) / 2
    rate, floor_rate = count / seconds, count / floor
    ratio = rate / floor_rate
    print(
        f"poll cycle: {seconds:.2f} s = {rate:,.0f} feeds/s ({dict(outcomes)}); CPU {cpu:.2f} s "
        f"({cpu / count * 1000:.2f} ms a feed)"
    )
    print(
        f"floor:      {floor:.2f} s = {floor_rate:,.0f} feeds/s, the mean of {floor_before:.2f} s before and "
        f"{floor_after:.2f} s after (a bare httpx loop, the same requests: {dict(statuses)}); CPU "
        f"{floor_cpu / count * 1000:.2f} ms a feed"
    )
    print(f"ratio:      {ratio:.2f} (target at least {TARGET_RATIO})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB; {articles} articles in the database")
    results = {
        "quick": args.quick,
        "feeds": count,
        "sites": hosts,
        "database": "postgresql" if args.database_url else "sqlite",
        "feeds_per_s": round(rate, 1),
        "floor_feeds_per_s": round(floor_rate, 1),
        "floor_seconds_before_after": [round(floor_before, 2), round(floor_after, 2)],
        "ratio": round(ratio, 3),
        "target_at_least_0_7_of_bare_loop": ratio >= TARGET_RATIO,
        "cpu_ms_per_feed": round(cpu / count * 1000, 3),
        "floor_cpu_ms_per_feed": round(floor_cpu / count * 1000, 3),
        "outcomes": dict(outcomes),
        "first_cycle_feeds_per_s": round(count / first, 1),
        "peak_rss_mb": round(peak, 1),
        "load_average": os.getloadavg()[0],
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
